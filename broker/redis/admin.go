package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/longpoll/longpoll"
)

// The admin API's capabilities (longpoll.TopicLister and its siblings);
// scripts.go shows the keys they keep.
var (
	_ longpoll.TopicLister  = (*Broker)(nil)
	_ longpoll.TopicDeleter = (*Broker)(nil)
	_ longpoll.Revoker      = (*Broker)(nil)
	_ longpoll.NodeRegistry = (*Broker)(nil)
)

// Topics lists topics as described by longpoll.TopicLister, from the
// topic index that every append adds its topics to. A topic whose log
// expired is dropped from the index when a listing meets it, and the page
// is filled from further names. A topic last appended to by a version of
// this package that kept no index is listed from its next append.
//
// One page is a ZRANGEBYLEX of the index (in Cluster, of the indexes of
// the slots marked in the slot map, by one script per master, merged; see
// indexRange), then one pipeline of a script per listed topic; the pruning
// of expired topics may add rounds. What a listing prunes stays pruned,
// so a listing that times out after many expired topics leaves the next
// one less to do.
func (b *Broker) Topics(ctx context.Context, prefix, after string, limit int) ([]longpoll.TopicInfo, error) {
	limit = max(limit, 1)
	lo := "-"
	if prefix != "" {
		lo = "[" + prefix
	}
	if after != "" && after >= prefix {
		lo = "(" + after
	}
	hi := "+"
	if s, ok := successor(prefix); ok {
		hi = "(" + s
	}
	var out []longpoll.TopicInfo
	err := b.call(ctx, "topics", func(ctx context.Context) error {
		out = nil
		from := lo
		for len(out) < limit {
			want := limit - len(out)
			names, err := b.indexRange(ctx, from, hi, want)
			if err != nil {
				return err
			}
			infos, err := b.topicInfos(ctx, names)
			if err != nil {
				return err
			}
			out = append(out, infos...)
			if len(names) < want {
				break
			}
			from = "(" + names[len(names)-1]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// successor is the least string above every string that starts with p,
// if there is one (p is not empty nor all 0xff bytes).
func successor(p string) (string, bool) {
	s := []byte(p)
	for len(s) > 0 && s[len(s)-1] == 0xff {
		s = s[:len(s)-1]
	}
	if len(s) == 0 {
		return "", false
	}
	s[len(s)-1]++
	return string(s), true
}

// indexRange returns the first count names of the topic indexes between
// the ZRANGEBYLEX bounds lo and hi, in byte order.
//
// On a single Redis that is one ZRANGEBYLEX. In Cluster a name is in the
// index of its slot alone, so the index of every slot marked in the slot
// map is read, a few names each, by one script per master (indexScript);
// then again, with twice as many, for the slots whose last name read is
// below the count-th name found so far (they may hold names before it),
// until none is. The names kept never exceed count plus one round's, and
// the merge is done here, in byte order (Lua compares strings by the
// server's locale).
func (b *Broker) indexRange(ctx context.Context, lo, hi string, count int) ([]string, error) {
	active, fetch := []int{0}, indexFetcher(b.fetchSingle)
	if b.cluster != nil {
		var err error
		if active, err = b.markedSlots(ctx); err != nil {
			return nil, err
		}
		if len(active) == 0 {
			return nil, nil
		}
		fetch = b.fetchCluster
	}
	batch := max(1, (count+len(active)-1)/len(active))
	cursor := map[int]string{} // the last name read of each index
	var names []string
	for len(active) > 0 {
		from := make([]string, len(active))
		for k, i := range active {
			from[k] = lo
			if c, ok := cursor[i]; ok {
				from[k] = "(" + c
			}
		}
		got, err := fetch(ctx, active, from, hi, batch)
		if err != nil {
			return nil, err
		}
		var more []int
		for k, i := range active {
			names = append(names, got[k]...)
			if len(got[k]) == batch {
				cursor[i] = got[k][batch-1]
				more = append(more, i)
			}
		}
		slices.Sort(names)
		if len(names) >= count {
			names = names[:count]
			last := names[count-1]
			more = slices.DeleteFunc(more, func(i int) bool { return cursor[i] >= last })
		}
		active = more
		batch = min(2*batch, count)
	}
	return names, nil
}

// An indexFetcher reads up to batch names of each index active[k] (an
// index's number: 0 on a single Redis, its slot in Cluster) from the bound
// from[k] up to hi.
type indexFetcher func(ctx context.Context, active []int, from []string, hi string, batch int) ([][]string, error)

func (b *Broker) fetchSingle(ctx context.Context, _ []int, from []string, hi string, batch int) ([][]string, error) {
	got, err := b.rdb.ZRangeByLex(ctx, b.cfg.prefix+"topics", &goredis.ZRangeBy{Min: from[0], Max: hi, Count: int64(batch)}).Result()
	return [][]string{got}, err
}

// markedSlots reads the slot map: the slots that have had a topic index.
func (b *Broker) markedSlots(ctx context.Context) ([]int, error) {
	bits, err := b.rdb.Get(ctx, b.slotMapKey()).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var marked []int
	for i, c := range bits {
		for j := range 8 {
			if s := 8*i + j; c&(0x80>>j) != 0 && s < slots {
				marked = append(marked, s)
			}
		}
	}
	return marked, nil
}

// fetchCluster reads the indexes of the slots active with one indexScript
// call per master, concurrently. The masters are those of go-redis's view
// of the cluster: a slot that moved meanwhile fails the call with MOVED
// (ErrUnavailable), and go-redis reloads its view.
func (b *Broker) fetchCluster(ctx context.Context, active []int, from []string, hi string, batch int) ([][]string, error) {
	type node struct {
		client *goredis.Client
		idx    []int // indexes into active
	}
	var nodes []*node
	byAddr := map[string]*node{}
	for k, s := range active {
		c, err := b.cluster.MasterForKey(ctx, b.slotIndexKey(s))
		if err != nil {
			return nil, err
		}
		n := byAddr[c.Options().Addr]
		if n == nil {
			n = &node{client: c}
			byAddr[c.Options().Addr] = n
			nodes = append(nodes, n)
		}
		n.idx = append(n.idx, k)
	}
	got := make([][]string, len(active))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for m, n := range nodes {
		wg.Go(func() { errs[m] = b.fetchNode(ctx, n.client, active, from, hi, batch, n.idx, got) })
	}
	wg.Wait()
	return got, errors.Join(errs...)
}

// fetchNode runs indexScript on node, the master of the slots active[k]
// for k in idx, and stores each slot's names in got[k].
func (b *Broker) fetchNode(ctx context.Context, node *goredis.Client, active []int, from []string, hi string, batch int, idx []int, got [][]string) error {
	args := make([]any, 0, 3+2*len(idx))
	args = append(args, b.cfg.prefix, hi, batch)
	for _, k := range idx {
		args = append(args, slotTag(active[k]), from[k])
	}
	res, err := indexScript.Run(ctx, node, []string{b.slotIndexKey(active[idx[0]])}, args...).StringSlice()
	if err != nil {
		return err
	}
	for _, k := range idx {
		if len(res) == 0 {
			return errors.New("index script returned too few values")
		}
		n, err := strconv.Atoi(res[0])
		if err != nil || n < 0 || n > len(res)-1 {
			return fmt.Errorf("index script: count %q", res[0])
		}
		got[k], res = res[1:1+n], res[1+n:]
	}
	return nil
}

// topicInfos runs infoScript for each of names in one pipeline, and
// returns those that have a log.
func (b *Broker) topicInfos(ctx context.Context, names []string) ([]longpoll.TopicInfo, error) {
	calls := make([]scriptCall, len(names))
	for k, t := range names {
		m, l, i := b.keys(t)
		calls[k] = scriptCall{keys: []string{m, l, i, b.indexKey(t)},
			args: []any{b.nowArg(), b.maxAgeMicros(), MessageOverhead, t}}
	}
	cmds, err := b.runPipelined(ctx, infoScript, calls)
	if err != nil {
		return nil, err
	}
	var out []longpoll.TopicInfo
	for k, cmd := range cmds {
		res, err := cmd.StringSlice()
		if err != nil {
			return nil, err
		}
		if len(res) == 0 {
			continue
		}
		if len(res) != 6 {
			return nil, fmt.Errorf("info script returned %d values", len(res))
		}
		var v [6]uint64
		for j, s := range res {
			if v[j], err = strconv.ParseUint(s, 10, 64); err != nil {
				return nil, fmt.Errorf("info script: value %d %q: %w", j, s, err)
			}
		}
		ti := longpoll.TopicInfo{Topic: names[k], Epoch: v[0], Head: v[1], Retained: v[3], Bytes: v[4]}
		if v[3] > 0 {
			ti.Oldest = v[2]
			ti.LastPublish = time.UnixMicro(int64(v[5])).UTC()
		}
		out = append(out, ti)
	}
	return out, nil
}

type scriptCall struct {
	keys []string
	args []any
}

// runPipelined runs script once per call in one pipeline: EVALSHA, then
// EVAL in a second pipeline for the calls whose node did not have the
// script cached.
func (b *Broker) runPipelined(ctx context.Context, script *goredis.Script, calls []scriptCall) ([]*goredis.Cmd, error) {
	cmds := make([]*goredis.Cmd, len(calls))
	run := func(idx []int, sha bool) error {
		_, err := b.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, k := range idx {
				if sha {
					cmds[k] = script.EvalSha(ctx, p, calls[k].keys, calls[k].args...)
				} else {
					cmds[k] = script.Eval(ctx, p, calls[k].keys, calls[k].args...)
				}
			}
			return nil
		})
		return err
	}
	all := make([]int, len(calls))
	for k := range all {
		all[k] = k
	}
	if len(all) == 0 {
		return nil, nil
	}
	err := run(all, true)
	var missing []int
	for k, c := range cmds {
		if goredis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		err = run(missing, false)
	}
	if err != nil {
		return nil, err
	}
	return cmds, nil
}

// DeleteTopic deletes topic's log as described by longpoll.TopicDeleter,
// in one script: its keys go, its epoch stays in a tombstone (for MaxAge)
// so that the next append's new epoch differs from it (and, drawn at
// random over 64 bits, from every earlier one), it leaves the topic index,
// and the topic's channel wakes its watchers on every node.
func (b *Broker) DeleteTopic(ctx context.Context, topic string) (bool, error) {
	pub := "PUBLISH"
	if b.cluster != nil {
		pub = "SPUBLISH"
	}
	ttl := (b.cfg.maxAge + time.Second).Milliseconds()
	var had bool
	err := b.call(ctx, "delete topic", func(ctx context.Context) error {
		m, l, i := b.keys(topic)
		n, err := deleteScript.Run(ctx, b.rdb, []string{m, l, i, b.tombstoneKey(topic), b.indexKey(topic)},
			topic, b.channel(topic), pub, ttl).Int()
		had = n == 1
		return err
	})
	if err != nil {
		return false, err
	}
	b.subs.wakeLocal(topic)
	return had, nil
}

// Keys and channel of the store's own records; see scripts.go.
func (b *Broker) revocationsKey() string     { return b.cfg.prefix + "{revocations}:subjects" }
func (b *Broker) revocationsChannel() string { return b.cfg.prefix + "{revocations}:announce" }
func (b *Broker) nodeKeys() (expiry, info string) {
	return b.cfg.prefix + "{nodes}:expiry", b.cfg.prefix + "{nodes}:info"
}

// revocationsSub names the revocations' subscription among the topics':
// no topic name holds a brace.
const revocationsSub = "{revocations}"

// Revoke stores r as described by longpoll.Revoker, in one script that
// keeps the later Before and the later Expires of r and the subject's
// stored revocation, and announces the result to every node's
// WatchRevocations. Times are kept to the microsecond.
func (b *Broker) Revoke(ctx context.Context, r longpoll.Revocation) error {
	pub := "PUBLISH"
	if b.cluster != nil {
		pub = "SPUBLISH"
	}
	return b.call(ctx, "revoke", func(ctx context.Context) error {
		return revokeScript.Run(ctx, b.rdb, []string{b.revocationsKey()}, r.Subject,
			strconv.FormatInt(r.Before.UnixMicro(), 10), strconv.FormatInt(r.Expires.UnixMicro(), 10),
			b.revocationsChannel(), pub).Err()
	})
}

// Revocations returns the revocations in force (Expires after Redis's
// clock), sorted by subject, and deletes the expired ones.
func (b *Broker) Revocations(ctx context.Context) ([]longpoll.Revocation, error) {
	var out []longpoll.Revocation
	err := b.call(ctx, "revocations", func(ctx context.Context) error {
		res, err := revocationsScript.Run(ctx, b.rdb, []string{b.revocationsKey()}, b.nowArg()).StringSlice()
		if err != nil {
			return err
		}
		if len(res)%2 != 0 {
			return fmt.Errorf("revocations script returned %d values", len(res))
		}
		out = make([]longpoll.Revocation, 0, len(res)/2)
		for k := 0; k < len(res); k += 2 {
			r, err := parseRevocation(res[k+1] + "," + res[k])
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b longpoll.Revocation) int { return cmp.Compare(a.Subject, b.Subject) })
	return out, nil
}

// parseRevocation parses "<before µs>,<expires µs>,<subject>".
func parseRevocation(s string) (longpoll.Revocation, error) {
	before, rest, ok1 := strings.Cut(s, ",")
	expires, subject, ok2 := strings.Cut(rest, ",")
	bu, err1 := strconv.ParseInt(before, 10, 64)
	eu, err2 := strconv.ParseInt(expires, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return longpoll.Revocation{}, fmt.Errorf("redis: malformed revocation %q in Redis", s)
	}
	return longpoll.Revocation{Subject: subject, Before: time.UnixMicro(bu).UTC(), Expires: time.UnixMicro(eu).UTC()}, nil
}

// WatchRevocations calls fn with each revocation stored by any node from
// now on, until stop is called, as the subscription of the revocations'
// channel on the broker's pub/sub connection (the one of its slot's master
// in Cluster). fn gets the revocation as stored: the later Before and
// Expires of the subject's.
//
// Announcements sent while the subscription is down (before Redis
// confirmed it, or while the connection is lost) are missed, so once it is
// active again the stored revocations are read and fn is called with each
// of them: fn may get a revocation more than once, and ones stored before
// the watch began. That read runs on a goroutine of its own, retried until
// it succeeds or stop.
func (b *Broker) WatchRevocations(fn func(longpoll.Revocation)) (stop func()) {
	rw := &revocationWatch{b: b, fn: fn}
	rw.ctx, rw.cancel = context.WithCancel(b.subs.ctx)
	w := &watcher{
		wake: func(string) { rw.resync() },
		message: func(payload string) {
			r, err := parseRevocation(payload)
			if err != nil {
				b.cfg.log.Error("redis: a malformed revocation announced", "error", err)
				return
			}
			if rw.ctx.Err() == nil {
				fn(r)
			}
		},
	}
	unwatch := b.subs.watchChannel(revocationsSub, "revocations", b.revocationsChannel(), w)
	var once sync.Once
	return func() {
		once.Do(func() {
			rw.cancel()
			unwatch()
		})
	}
}

// revocationWatch re-reads the stored revocations for one watcher; reads
// asked for while one runs are one more read after it.
type revocationWatch struct {
	b      *Broker
	fn     func(longpoll.Revocation)
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	running bool
	again   bool
}

func (rw *revocationWatch) resync() {
	rw.mu.Lock()
	if rw.running {
		rw.again = true
		rw.mu.Unlock()
		return
	}
	rw.running = true
	rw.mu.Unlock()
	if !rw.b.subs.spawn(rw.run) {
		rw.mu.Lock()
		rw.running = false
		rw.mu.Unlock()
	}
}

func (rw *revocationWatch) run() {
	delay := 50 * time.Millisecond
	for rw.ctx.Err() == nil {
		rs, err := rw.b.Revocations(rw.ctx)
		if err == nil {
			for _, r := range rs {
				if rw.ctx.Err() != nil {
					break
				}
				rw.fn(r)
			}
			delay = 50 * time.Millisecond
			rw.mu.Lock()
			if !rw.again {
				rw.running = false
				rw.mu.Unlock()
				return
			}
			rw.again = false
			rw.mu.Unlock()
			continue
		}
		if errors.Is(err, longpoll.ErrClosed) {
			break
		}
		rw.b.cfg.log.Warn("redis: reading the revocations after a lost subscription failed; retrying", "error", err)
		t := time.NewTimer(delay)
		select {
		case <-rw.ctx.Done():
		case <-t.C:
		}
		t.Stop()
		delay = min(2*delay, 2*time.Second)
	}
	rw.mu.Lock()
	rw.running = false
	rw.mu.Unlock()
}

// Heartbeat records node's heartbeat as described by
// longpoll.NodeRegistry. The heartbeat is stamped, and its ttl judged, by
// Redis's clock, so nodes with skewed clocks agree on who is alive.
func (b *Broker) Heartbeat(ctx context.Context, node string, info json.RawMessage, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redis: heartbeat: ttl %v: must be positive", ttl)
	}
	z, h := b.nodeKeys()
	return b.call(ctx, "heartbeat", func(ctx context.Context) error {
		return heartbeatScript.Run(ctx, b.rdb, []string{z, h}, b.nowArg(), node, []byte(info),
			max(ttl.Microseconds(), 1)).Err()
	})
}

// Nodes returns the nodes whose heartbeat is in force, sorted by name,
// and drops the others.
func (b *Broker) Nodes(ctx context.Context) ([]longpoll.NodeRecord, error) {
	z, h := b.nodeKeys()
	var out []longpoll.NodeRecord
	err := b.call(ctx, "nodes", func(ctx context.Context) error {
		res, err := nodesScript.Run(ctx, b.rdb, []string{z, h}, b.nowArg()).StringSlice()
		if err != nil {
			return err
		}
		if len(res)%2 != 0 {
			return fmt.Errorf("nodes script returned %d values", len(res))
		}
		out = make([]longpoll.NodeRecord, 0, len(res)/2)
		for k := 0; k < len(res); k += 2 {
			seen, info, ok := strings.Cut(res[k+1], ",")
			us, err := strconv.ParseInt(seen, 10, 64)
			if !ok || err != nil {
				return fmt.Errorf("redis: malformed heartbeat of node %q in Redis", res[k])
			}
			out = append(out, longpoll.NodeRecord{Node: res[k], Info: json.RawMessage(info), Seen: time.UnixMicro(us).UTC()})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b longpoll.NodeRecord) int { return cmp.Compare(a.Node, b.Node) })
	return out, nil
}
