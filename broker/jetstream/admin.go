package jetstream

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/longpoll/longpoll"
)

var (
	_ longpoll.TopicLister  = (*Broker)(nil)
	_ longpoll.TopicDeleter = (*Broker)(nil)
	_ longpoll.Revoker      = (*Broker)(nil)
	_ longpoll.NodeRegistry = (*Broker)(nil)
)

// Topics lists topics as described by longpoll.TopicLister. The names
// come from the stream's subject counts (one request, or several pages
// of it, for every topic of the stream), sorted here; each listed topic
// is then described from its records, as Stat does.
func (b *Broker) Topics(ctx context.Context, prefix, after string, limit int) ([]longpoll.TopicInfo, error) {
	var out []longpoll.TopicInfo
	err := b.call(ctx, "topics", func(ctx context.Context) error {
		info, err := b.stream.Info(ctx, natsjs.WithSubjectFilter(b.prefix+".t.>"))
		if err != nil {
			return err
		}
		names := make([]string, 0, len(info.State.Subjects))
		for subj := range info.State.Subjects {
			i := strings.LastIndexByte(subj, '.')
			name, err := DecodeTopic(subj[i+1:])
			if err != nil || !strings.HasPrefix(name, prefix) || name <= after {
				continue
			}
			names = append(names, name)
		}
		slices.Sort(names)
		// Describe the names a page's worth at a time, concurrently;
		// those whose log went meanwhile make room for the next ones.
		for len(out) < limit && len(names) > 0 {
			batch := names[:min(len(names), limit-len(out))]
			names = names[len(batch):]
			infos := make([]longpoll.TopicInfo, len(batch))
			has := make([]bool, len(batch))
			errs := make([]error, len(batch))
			sem := make(chan struct{}, describeConcurrency)
			var wg sync.WaitGroup
			for k, name := range batch {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					infos[k], has[k], errs[k] = b.describe(ctx, name)
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return err
			}
			for k := range batch {
				if has[k] {
					out = append(out, infos[k])
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// describeConcurrency bounds the topics Topics describes at once.
const describeConcurrency = 16

// describe returns what Topics lists of topic, and false if it has no log.
func (b *Broker) describe(ctx context.Context, topic string) (longpoll.TopicInfo, bool, error) {
	h, err := b.lastRecord(ctx, b.topicSubject(topic))
	if err != nil || h == nil {
		return longpoll.TopicInfo{}, false, err
	}
	v := b.view(topic, h, b.cfg.now())
	recs, oldest, err := b.collect(ctx, v, 1, 0)
	if err != nil {
		return longpoll.TopicInfo{}, false, err
	}
	ti := longpoll.TopicInfo{Topic: topic, Epoch: h.epoch, Head: h.last()}
	if oldest == 0 {
		return ti, true, nil
	}
	r := recs[0]
	before := r.dataBefore
	for _, e := range r.msgs[:oldest-r.first] {
		before += uint64(len(e.data))
	}
	ti.Oldest = oldest
	ti.Retained = h.last() - oldest + 1
	ti.Bytes = h.dataEnd() - before
	ti.LastPublish = h.time
	return ti, true, nil
}

// DeleteTopic deletes topic's log as described by longpoll.TopicDeleter:
// its subject is purged from the stream, and its ids from the index. The
// next append finds no record and draws a new random epoch; the topic's
// wake-up subject wakes its watchers on every node.
func (b *Broker) DeleteTopic(ctx context.Context, topic string) (bool, error) {
	var had bool
	err := b.call(ctx, "delete topic", func(ctx context.Context) error {
		n, err := b.purge(ctx, b.name, b.topicSubject(topic))
		if err != nil {
			return err
		}
		had = n > 0
		_, err = b.purge(ctx, b.name+"_IDS", b.prefix+".i."+EncodeTopic(topic)+".>")
		return err
	})
	if err != nil {
		return false, err
	}
	b.wake(topic)
	return had, nil
}

// purge purges subject from stream and returns how many messages went.
// (nats.go's Stream.Purge does not return the count.)
func (b *Broker) purge(ctx context.Context, stream, subject string) (uint64, error) {
	req, _ := json.Marshal(map[string]string{"filter": subject})
	msg, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+stream, req)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Success bool             `json:"success"`
		Purged  uint64           `json:"purged"`
		Error   *natsjs.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("purge reply: %w", err)
	}
	if resp.Error != nil {
		return 0, resp.Error
	}
	return resp.Purged, nil
}

// Revocation keys are "s" and the subject in unpadded base64url, which
// KV keys allow whatever the subject holds; values are "<before
// µs>,<expires µs>".
func revocationKey(subject string) string {
	return "s" + base64.RawURLEncoding.EncodeToString([]byte(subject))
}

func parseRevocation(key string, value []byte) (longpoll.Revocation, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(key, "s"))
	before, expires, ok := strings.Cut(string(value), ",")
	bu, err1 := strconv.ParseInt(before, 10, 64)
	eu, err2 := strconv.ParseInt(expires, 10, 64)
	if !strings.HasPrefix(key, "s") || err != nil || !ok || err1 != nil || err2 != nil {
		return longpoll.Revocation{}, fmt.Errorf("jetstream: malformed revocation %q=%q", key, value)
	}
	return longpoll.Revocation{Subject: string(raw), Before: time.UnixMicro(bu).UTC(), Expires: time.UnixMicro(eu).UTC()}, nil
}

func revocationValue(r longpoll.Revocation) []byte {
	return fmt.Appendf(nil, "%d,%d", r.Before.UnixMicro(), r.Expires.UnixMicro())
}

// Revoke stores r as described by longpoll.Revoker: a compare-and-set
// loop on the subject's key keeps the later Before and the later Expires.
func (b *Broker) Revoke(ctx context.Context, r longpoll.Revocation) error {
	key := revocationKey(r.Subject)
	return b.call(ctx, "revoke", func(ctx context.Context) error {
		for {
			e, err := b.revocations.Get(ctx, key)
			if errors.Is(err, natsjs.ErrKeyNotFound) {
				_, err = b.revocations.Create(ctx, key, revocationValue(r))
				if isWrongLast(err) {
					continue
				}
				return err
			}
			if err != nil {
				return err
			}
			old, err := parseRevocation(key, e.Value())
			if err != nil {
				return err
			}
			merged := old
			if r.Before.After(merged.Before) {
				merged.Before = r.Before
			}
			if r.Expires.After(merged.Expires) {
				merged.Expires = r.Expires
			}
			if merged == old {
				return nil
			}
			_, err = b.revocations.Update(ctx, key, revocationValue(merged), e.Revision())
			if isWrongLast(err) {
				continue
			}
			return err
		}
	})
}

// entries reads every current entry of kv.
func entries(ctx context.Context, kv natsjs.KeyValue) ([]natsjs.KeyValueEntry, error) {
	w, err := kv.WatchAll(ctx, natsjs.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	var out []natsjs.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("watcher closed")
			}
			if e == nil {
				return out, nil
			}
			out = append(out, e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Revocations returns the revocations in force, sorted by subject, and
// deletes the expired ones.
func (b *Broker) Revocations(ctx context.Context) ([]longpoll.Revocation, error) {
	var out []longpoll.Revocation
	err := b.call(ctx, "revocations", func(ctx context.Context) error {
		es, err := entries(ctx, b.revocations)
		if err != nil {
			return err
		}
		now := b.cfg.now()
		out = out[:0]
		for _, e := range es {
			r, err := parseRevocation(e.Key(), e.Value())
			if err != nil {
				return err
			}
			if !r.Expires.After(now) {
				_ = b.revocations.Purge(ctx, e.Key(), natsjs.LastRevision(e.Revision()))
				continue
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

// WatchRevocations calls fn with each revocation stored by any node from
// now on, until stop is called, from a key-value watch (an ordered
// consumer). A watch that cannot be created, or ends, or whose connection
// was lost, is created again, delivering every stored revocation: fn may
// get a revocation more than once.
func (b *Broker) WatchRevocations(fn func(longpoll.Revocation)) (stop func()) {
	ctx, cancel := context.WithCancel(b.ctx)
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		cancel()
		return func() {}
	}
	b.wg.Add(1)
	b.mu.Unlock()
	started := make(chan struct{})
	go func() {
		defer b.wg.Done()
		b.watchRevocations(ctx, fn, started)
	}()
	select {
	case <-started:
	case <-time.After(b.cfg.timeout):
	}
	var once sync.Once
	return func() { once.Do(cancel) }
}

func (b *Broker) watchRevocations(ctx context.Context, fn func(longpoll.Revocation), started chan struct{}) {
	opts := []natsjs.WatchOpt{natsjs.UpdatesOnly(), natsjs.IgnoreDeletes()}
	delay := 50 * time.Millisecond
	for ctx.Err() == nil {
		b.mu.Lock()
		recon := b.recon
		b.mu.Unlock()
		w, err := b.revocations.WatchAll(ctx, opts...)
		if started != nil {
			close(started)
			started = nil
		}
		if err != nil {
			b.cfg.log.Warn("jetstream: watching revocations failed; retrying", "error", err)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			delay = min(2*delay, 2*time.Second)
			opts = []natsjs.WatchOpt{natsjs.IgnoreDeletes()}
			continue
		}
		delay = 50 * time.Millisecond
		b.deliverRevocations(ctx, w, fn, recon)
		_ = w.Stop()
		opts = []natsjs.WatchOpt{natsjs.IgnoreDeletes()}
	}
}

// deliverRevocations passes w's revocations to fn until ctx is done, w
// ends, or recon is closed: the connection was lost, and nats.go's
// ordered consumer would take seconds of missed heartbeats to notice.
func (b *Broker) deliverRevocations(ctx context.Context, w natsjs.KeyWatcher, fn func(longpoll.Revocation), recon <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-recon:
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			r, err := parseRevocation(e.Key(), e.Value())
			if err != nil {
				b.cfg.log.Error("jetstream: a malformed revocation", "error", err)
				continue
			}
			if ctx.Err() == nil {
				fn(r)
			}
		}
	}
}

// Node keys are "n" and the node's name in unpadded base64url; values are
// "<ttl µs>," and the node's info. The entry's time, set by the server,
// is the heartbeat's Seen.
func nodeKey(node string) string { return "n" + base64.RawURLEncoding.EncodeToString([]byte(node)) }

// Heartbeat records node's heartbeat as described by
// longpoll.NodeRegistry. A ttl longer than NodesTTL is cut to it.
func (b *Broker) Heartbeat(ctx context.Context, node string, info json.RawMessage, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("jetstream: heartbeat: ttl %v: must be positive", ttl)
	}
	v := append(strconv.AppendInt(nil, max(ttl.Microseconds(), 1), 10), ',')
	v = append(v, info...)
	return b.call(ctx, "heartbeat", func(ctx context.Context) error {
		_, err := b.nodes.Put(ctx, nodeKey(node), v)
		return err
	})
}

// Nodes returns the nodes whose heartbeat is in force, sorted by name,
// and deletes the others. A heartbeat's Seen is the server's time of it,
// and its ttl is judged against this node's clock.
func (b *Broker) Nodes(ctx context.Context) ([]longpoll.NodeRecord, error) {
	var out []longpoll.NodeRecord
	err := b.call(ctx, "nodes", func(ctx context.Context) error {
		es, err := entries(ctx, b.nodes)
		if err != nil {
			return err
		}
		now := b.cfg.now()
		out = out[:0]
		for _, e := range es {
			name, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(e.Key(), "n"))
			ttl, info, ok := strings.Cut(string(e.Value()), ",")
			us, err2 := strconv.ParseInt(ttl, 10, 64)
			if err != nil || !ok || err2 != nil {
				return fmt.Errorf("jetstream: malformed heartbeat %q", e.Key())
			}
			seen := e.Created().UTC()
			if !seen.Add(time.Duration(us) * time.Microsecond).After(now) {
				_ = b.nodes.Purge(ctx, e.Key(), natsjs.LastRevision(e.Revision()))
				continue
			}
			out = append(out, longpoll.NodeRecord{Node: string(name), Info: json.RawMessage(info), Seen: seen})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b longpoll.NodeRecord) int { return cmp.Compare(a.Node, b.Node) })
	return out, nil
}
