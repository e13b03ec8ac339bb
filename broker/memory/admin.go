package memory

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll"
)

// Topics lists topics as described by longpoll.TopicLister. Topics are
// spread over shards by hash, so there is no order to walk: each page visits
// every topic, one shard at a time under its read lock, and keeps the first
// limit names after after in a bounded heap, O(topics·log limit) a page.
// Appends, the hot path, pay nothing for it; an ordered index would put a
// lock over the whole broker on every topic created or forgotten, for a
// listing that an operator asks for now and then. A topic whose messages
// have all expired is not listed.
func (b *Broker) Topics(ctx context.Context, prefix, after string, limit int) ([]longpoll.TopicInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.closed.Load() {
		return nil, longpoll.ErrClosed
	}
	if limit < 1 {
		return nil, nil
	}
	cutoff := b.cutoff(b.now())
	var h infoHeap
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		for name, l := range sh.topics {
			if name <= after || !strings.HasPrefix(name, prefix) {
				continue
			}
			if len(h) == limit && name >= h[0].Topic {
				continue
			}
			info, ok := l.info(cutoff)
			if !ok {
				continue
			}
			if len(h) < limit {
				heap.Push(&h, info)
			} else {
				h[0] = info
				heap.Fix(&h, 0)
			}
		}
		sh.mu.RUnlock()
	}
	if b.closed.Load() {
		return nil, longpoll.ErrClosed
	}
	slices.SortFunc(h, func(x, y longpoll.TopicInfo) int { return strings.Compare(x.Topic, y.Topic) })
	return h, nil
}

// info describes l for Topics; ok is false when no message is retained.
// Bytes is kept as messages come and go; only messages expired by age
// and not dropped yet are counted off here, one by one.
func (l *topicLog) info(cutoff time.Time) (longpoll.TopicInfo, bool) {
	live := l.live()
	v := l.visible(cutoff)
	if v == len(live) {
		return longpoll.TopicInfo{}, false
	}
	data := l.data
	for i := range v {
		data -= int64(len(live[i].Data))
	}
	return longpoll.TopicInfo{
		Topic:       l.name,
		Epoch:       l.epoch,
		Head:        l.head,
		Oldest:      l.firstSeq() + uint64(v),
		Retained:    uint64(len(live) - v),
		Bytes:       uint64(data),
		LastPublish: l.last,
	}, true
}

// infoHeap is a max-heap of topics by name: its root is the first to go
// when a smaller name turns up.
type infoHeap []longpoll.TopicInfo

func (h infoHeap) Len() int           { return len(h) }
func (h infoHeap) Less(i, j int) bool { return h[i].Topic > h[j].Topic }
func (h infoHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *infoHeap) Push(x any)        { *h = append(*h, x.(longpoll.TopicInfo)) }
func (h *infoHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// DeleteTopic drops topic's log as described by longpoll.TopicDeleter and
// wakes its watchers, outside the broker's locks. A log whose messages have
// all expired but that the janitor has not forgotten yet still counts as
// one: DeleteTopic reports true for it.
func (b *Broker) DeleteTopic(ctx context.Context, topic string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	sh := &b.shards[b.shardIndex(topic)]
	sh.mu.Lock()
	if b.closed.Load() {
		sh.mu.Unlock()
		return false, longpoll.ErrClosed
	}
	l := sh.topics[topic]
	if l == nil {
		sh.mu.Unlock()
		return false, nil
	}
	delete(sh.topics, topic)
	b.topics.Add(-1)
	b.totalBytes.Add(-l.bytes)
	watchers := sh.watchers[topic]
	sh.mu.Unlock()

	for _, w := range watchers {
		if !w.stopped.Load() {
			w.wake(topic)
		}
	}
	return true, nil
}

// adminState holds the revocations and heartbeats, which live and die
// with the Broker like its logs. Its lock is apart from the shards'.
type adminState struct {
	mu          sync.Mutex
	closed      bool
	revocations map[string]longpoll.Revocation
	// revWatchers is copied on write: Revoke calls the watchers of the
	// slice it took under the lock after unlocking.
	revWatchers []*revWatcher
	nodes       map[string]nodeEntry
}

type revWatcher struct {
	fn      func(longpoll.Revocation)
	stopped atomic.Bool
}

type nodeEntry struct {
	rec     longpoll.NodeRecord
	expires time.Time
}

func (a *adminState) init() {
	a.revocations = make(map[string]longpoll.Revocation)
	a.nodes = make(map[string]nodeEntry)
}

func (a *adminState) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	a.revocations, a.nodes, a.revWatchers = nil, nil, nil
}

// prune forgets the revocations and heartbeats that ran out by now.
func (a *adminState) prune(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for s, r := range a.revocations {
		if !r.Expires.After(now) {
			delete(a.revocations, s)
		}
	}
	for n, e := range a.nodes {
		if !e.expires.After(now) {
			delete(a.nodes, n)
		}
	}
}

// Revoke stores r as described by longpoll.Revoker, to the nanosecond, and
// calls every revocation watcher with the revocation as stored: r merged
// with the subject's earlier one. A revocation that has run out is
// forgotten by the janitor.
func (b *Broker) Revoke(ctx context.Context, r longpoll.Revocation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.Subject = strings.Clone(r.Subject)
	r.Before = r.Before.Round(0).UTC()
	r.Expires = r.Expires.Round(0).UTC()
	a := &b.admin
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return longpoll.ErrClosed
	}
	if old, ok := a.revocations[r.Subject]; ok && old.Expires.After(b.now()) {
		if old.Before.After(r.Before) {
			r.Before = old.Before
		}
		if old.Expires.After(r.Expires) {
			r.Expires = old.Expires
		}
	}
	a.revocations[r.Subject] = r
	watchers := a.revWatchers
	a.mu.Unlock()

	for _, w := range watchers {
		if !w.stopped.Load() {
			w.fn(r)
		}
	}
	return nil
}

// Revocations returns the revocations in force, sorted by subject.
func (b *Broker) Revocations(ctx context.Context) ([]longpoll.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a := &b.admin
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, longpoll.ErrClosed
	}
	now := b.now()
	var rs []longpoll.Revocation
	for _, r := range a.revocations {
		if r.Expires.After(now) {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(x, y longpoll.Revocation) int { return strings.Compare(x.Subject, y.Subject) })
	return rs, nil
}

// WatchRevocations calls fn on the revoking goroutine, outside the
// broker's locks, after each Revoke until stop is called. After Close it
// returns a stop that does nothing.
func (b *Broker) WatchRevocations(fn func(longpoll.Revocation)) (stop func()) {
	a := &b.admin
	w := &revWatcher{fn: fn}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return func() {}
	}
	a.revWatchers = append(slices.Clip(a.revWatchers), w)
	a.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			w.stopped.Store(true)
			a.mu.Lock()
			defer a.mu.Unlock()
			a.revWatchers = slices.DeleteFunc(slices.Clone(a.revWatchers), func(o *revWatcher) bool { return o == w })
		})
	}
}

// Heartbeat records node, with a copy of info and the broker's clock as
// Seen, for ttl, which must be positive.
func (b *Broker) Heartbeat(ctx context.Context, node string, info json.RawMessage, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("memory: Heartbeat(%q) with ttl %v: must be positive", node, ttl)
	}
	a := &b.admin
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return longpoll.ErrClosed
	}
	now := b.now()
	node = strings.Clone(node)
	a.nodes[node] = nodeEntry{
		rec:     longpoll.NodeRecord{Node: node, Info: bytes.Clone(info), Seen: now},
		expires: now.Add(ttl),
	}
	return nil
}

// Nodes returns the nodes whose ttl has not run out by the broker's clock,
// sorted by name; each Info is the caller's own copy.
func (b *Broker) Nodes(ctx context.Context) ([]longpoll.NodeRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a := &b.admin
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, longpoll.ErrClosed
	}
	now := b.now()
	var ns []longpoll.NodeRecord
	for _, e := range a.nodes {
		if e.expires.After(now) {
			rec := e.rec
			rec.Info = bytes.Clone(rec.Info)
			ns = append(ns, rec)
		}
	}
	slices.SortFunc(ns, func(x, y longpoll.NodeRecord) int { return cmp.Compare(x.Node, y.Node) })
	return ns, nil
}
