package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/protocol"

	goredis "github.com/redis/go-redis/v9"

	"github.com/longpoll/longpoll"
)

var (
	_ longpoll.Broker = (*Broker)(nil)
	_ longpoll.Pinger = (*Broker)(nil)
)

// Broker is the Redis longpoll.Broker. Open one with Open; the zero Broker
// is not usable.
type Broker struct {
	cfg     config
	rdb     goredis.UniversalClient
	cluster *goredis.ClusterClient // nil for a single Redis
	single  *goredis.Client        // nil in Cluster
	desc    string
	subs    *subscriber

	closed    atomic.Bool
	closeOnce sync.Once

	// afterCheck, when set, runs between the check of a batch spanning
	// Cluster slots and its appends: a test kills a node there.
	afterCheck func()
}

// Open connects to the Redis named by rawURL:
//
//	redis://[[user]:password@]host:port[/db][?option=value...]
//	rediss://...                         (TLS)
//	redis://host:port?cluster=true[&addr=host2:port2...]   (Redis Cluster)
//
// The options of go-redis's ParseURL (dial_timeout, pool_size, ...) are
// accepted too. Open does not wait for Redis: a Redis that is down makes
// calls fail with protocol.ErrUnavailable until it is back.
func Open(rawURL string, opts ...Option) (*Broker, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: store URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redis: store URL %q: the scheme must be redis or rediss", u.Redacted())
	}
	q := u.Query()
	cluster := false
	if v := q.Get("cluster"); v != "" {
		if cluster, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("redis: store URL %q: cluster=%q: want true or false", u.Redacted(), v)
		}
	}
	q.Del("cluster")
	explicit := func(name string) bool { return q.Has(name) }
	u.RawQuery = q.Encode()

	b := &Broker{cfg: cfg, desc: "redis " + u.Redacted()}
	if cluster {
		o, err := goredis.ParseClusterURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("redis: store URL %q: %w", u.Redacted(), err)
		}
		if !explicit("dial_timeout") {
			o.DialTimeout = cfg.dialTimeout
		}
		if !explicit("read_timeout") {
			o.ReadTimeout = cfg.timeout
		}
		if !explicit("write_timeout") {
			o.WriteTimeout = cfg.timeout
		}
		if !explicit("pool_timeout") {
			o.PoolTimeout = cfg.timeout
		}
		o.ContextTimeoutEnabled = true
		o.DialerRetries = 1
		o.DisableIdentity = true
		b.cluster = goredis.NewClusterClient(o)
		b.rdb = b.cluster
		b.desc += " (cluster)"
	} else {
		o, err := goredis.ParseURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("redis: store URL %q: %w", u.Redacted(), err)
		}
		if !explicit("dial_timeout") {
			o.DialTimeout = cfg.dialTimeout
		}
		if !explicit("read_timeout") {
			o.ReadTimeout = cfg.timeout
		}
		if !explicit("write_timeout") {
			o.WriteTimeout = cfg.timeout
		}
		if !explicit("pool_timeout") {
			o.PoolTimeout = cfg.timeout
		}
		if !explicit("max_retries") {
			// One retry covers a pooled connection that died with a
			// restarted Redis; appends are safe to retry (see token).
			o.MaxRetries = 1
		}
		o.ContextTimeoutEnabled = true
		o.DialerRetries = 1
		o.DisableIdentity = true
		b.single = goredis.NewClient(o)
		b.rdb = b.single
	}
	b.subs = newSubscriber(b)
	return b, nil
}

// String describes the broker for logs, without the password.
func (b *Broker) String() string { return b.desc }

// Keys and channel of a topic; see scripts.go.
func (b *Broker) keys(topic string) (m, l, i string) {
	base := b.cfg.prefix + "{" + topic + "}:"
	return base + "m", base + "l", base + "i"
}

func (b *Broker) channel(topic string) string { return b.cfg.prefix + "{" + topic + "}:w" }

func (b *Broker) tombstoneKey(topic string) string { return b.cfg.prefix + "{" + topic + "}:d" }

// indexKey is the key of the topic index that holds topic: the one index
// on a single Redis, its slot's in Cluster.
func (b *Broker) indexKey(topic string) string {
	if b.cluster == nil {
		return b.cfg.prefix + "topics"
	}
	return b.slotIndexKey(keySlot(topic))
}

func (b *Broker) slotIndexKey(slot int) string {
	return b.cfg.prefix + "{" + slotTag(slot) + "}:topics"
}

// slotMapKey is the bitmap of the Cluster slots that have had a topic
// index.
func (b *Broker) slotMapKey() string { return b.cfg.prefix + "{topics}:slots" }

// nowArg is the clock argument of the scripts: 0 asks for Redis's TIME.
func (b *Broker) nowArg() string {
	if b.cfg.now == nil {
		return "0"
	}
	return strconv.FormatInt(b.cfg.now().UnixMicro(), 10)
}

func (b *Broker) maxAgeMicros() string {
	return strconv.FormatInt(max(b.cfg.maxAge.Microseconds(), 1), 10)
}

// call runs fn with the broker's timeout and maps its error: the caller's
// own cancellation as is, an out-of-memory Redis to ErrStoreFull, anything
// else that means "Redis cannot serve now" to ErrUnavailable.
func (b *Broker) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return longpoll.ErrClosed
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	err := fn(cctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if b.closed.Load() {
		return longpoll.ErrClosed
	}
	return mapError(op, err)
}

func mapError(op string, err error) error {
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		switch {
		case strings.HasPrefix(msg, "OOM"):
			return fmt.Errorf("redis: %s: %w: %w", op, protocol.ErrStoreFull, err)
		case strings.HasPrefix(msg, "LOADING"), strings.HasPrefix(msg, "BUSY"),
			strings.HasPrefix(msg, "MASTERDOWN"), strings.HasPrefix(msg, "CLUSTERDOWN"),
			strings.HasPrefix(msg, "TRYAGAIN"), strings.HasPrefix(msg, "READONLY"),
			strings.HasPrefix(msg, "MOVED"), strings.HasPrefix(msg, "ASK"),
			strings.HasPrefix(msg, "NOREPLICAS"), strings.HasPrefix(msg, "ERR max number of clients"):
			return fmt.Errorf("redis: %s: %w: %w", op, protocol.ErrUnavailable, err)
		}
		// A reply Redis should never give: a bug, not an outage.
		return fmt.Errorf("redis: %s: %w", op, err)
	}
	if errors.Is(err, goredis.ErrClosed) {
		return longpoll.ErrClosed
	}
	return fmt.Errorf("redis: %s: %w: %w", op, protocol.ErrUnavailable, err)
}

// group is the publications of one script call: topics of one slot (or of
// the whole batch on a single Redis), in the order they first appear.
type group struct {
	topics []string
	pubs   map[string][]int // topic -> indexes into the batch, in order
	slot   int
}

// Append appends pubs as described by longpoll.Broker. On a single Redis
// it is all or nothing; in Cluster a batch spanning slots is checked on
// every slot, then appended slot by slot (see the package doc for the one
// case that leaves it appended in part).
func (b *Broker) Append(ctx context.Context, pubs []longpoll.Publication) ([]longpoll.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.closed.Load() {
		return nil, longpoll.ErrClosed
	}
	if len(pubs) == 0 {
		return nil, nil
	}
	groups := b.group(pubs)
	token := newToken()
	receipts := make([]longpoll.Receipt, len(pubs))

	if len(groups) > 1 {
		err := b.call(ctx, "append", func(ctx context.Context) error {
			return b.forEach(ctx, groups, func(ctx context.Context, g *group) error {
				m, _, _ := b.keys(g.topics[0])
				return checkScript.Run(ctx, b.rdb, []string{m}).Err()
			})
		})
		if err != nil {
			return nil, err
		}
		if b.afterCheck != nil {
			b.afterCheck()
		}
	}
	var done atomic.Int32
	err := b.call(ctx, "append", func(ctx context.Context) error {
		return b.forEach(ctx, groups, func(ctx context.Context, g *group) error {
			if err := b.appendGroup(ctx, g, pubs, token, receipts); err != nil {
				return err
			}
			done.Add(1)
			return nil
		})
	})
	if err != nil {
		if n := done.Load(); n > 0 {
			b.cfg.log.Error("a batch spanning Redis Cluster slots was appended in part",
				"slots", len(groups), "appended", n, "error", err)
			return nil, fmt.Errorf("redis: append: %d of the batch's %d slots were appended (%w): %w", n, len(groups), longpoll.ErrPartialAppend, err)
		}
		return nil, err
	}
	for _, g := range groups {
		for _, t := range g.topics {
			b.subs.wakeLocal(t)
		}
	}
	return receipts, nil
}

// forEach runs fn for every group, concurrently when there are several,
// and returns the first error.
func (b *Broker) forEach(ctx context.Context, groups []*group, fn func(context.Context, *group) error) error {
	if len(groups) == 1 {
		return fn(ctx, groups[0])
	}
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() { errs[i] = fn(ctx, g) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (b *Broker) group(pubs []longpoll.Publication) []*group {
	var groups []*group
	bySlot := map[int]*group{}
	for i := range pubs {
		t := pubs[i].Topic
		slot := 0
		if b.cluster != nil {
			slot = keySlot(t)
		}
		g := bySlot[slot]
		if g == nil {
			g = &group{pubs: map[string][]int{}, slot: slot}
			bySlot[slot] = g
			groups = append(groups, g)
		}
		if _, ok := g.pubs[t]; !ok {
			g.topics = append(g.topics, t)
		}
		g.pubs[t] = append(g.pubs[t], i)
	}
	return groups
}

func (b *Broker) appendGroup(ctx context.Context, g *group, pubs []longpoll.Publication, token string, receipts []longpoll.Receipt) error {
	pub := "PUBLISH"
	if b.cluster != nil {
		pub = "SPUBLISH"
	}
	ttl := (b.cfg.maxAge + time.Second).Milliseconds()
	keys := make([]string, 0, 1+4*len(g.topics))
	keys = append(keys, b.indexKey(g.topics[0]))
	marked := "1"
	if b.cluster != nil {
		marked = "0"
	}
	args := make([]any, 0, 10+4*len(g.topics)+2*len(pubs))
	args = append(args, token, b.nowArg(), b.cfg.maxMessages, b.cfg.maxBytes, b.maxAgeMicros(),
		ttl, MessageOverhead, pub, len(g.topics), marked)
	for _, t := range g.topics {
		m, l, i := b.keys(t)
		keys = append(keys, m, l, i, b.tombstoneKey(t))
		idx := g.pubs[t]
		args = append(args, t, strconv.FormatUint(newEpoch(), 10), b.channel(t), len(idx))
		for _, k := range idx {
			args = append(args, pubs[k].ID, []byte(pubs[k].Data))
		}
	}
	res, err := appendScript.Run(ctx, b.rdb, keys, args...).StringSlice()
	if err == nil && len(res) == 1 && res[0] == "mark" {
		// The slot's first topic index: mark the slot, then append.
		if err := b.rdb.SetBit(ctx, b.slotMapKey(), int64(g.slot), 1).Err(); err != nil {
			return err
		}
		args[9] = "1"
		res, err = appendScript.Run(ctx, b.rdb, keys, args...).StringSlice()
	}
	if err != nil {
		return err
	}
	if len(res) != 3*len(g.topics) {
		return fmt.Errorf("append script returned %d values for %d topics", len(res), len(g.topics))
	}
	for k, t := range g.topics {
		epoch, err := strconv.ParseUint(res[3*k], 10, 64)
		if err != nil {
			return fmt.Errorf("append script: epoch %q: %w", res[3*k], err)
		}
		if res[3*k+2] == "1" {
			b.cfg.log.Warn("the id index of a topic did not match its messages (lost, or written by an older version): rebuilt from them",
				"topic", t)
		}
		seqs := strings.Split(res[3*k+1], ",")
		idx := g.pubs[t]
		if len(seqs) != len(idx) {
			return fmt.Errorf("append script: %d receipts for %d publications", len(seqs), len(idx))
		}
		for j, i := range idx {
			s, dup := strings.CutPrefix(seqs[j], "-")
			seq, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("append script: seq %q: %w", seqs[j], err)
			}
			receipts[i] = longpoll.Receipt{Topic: t, Epoch: epoch, Seq: seq, Duplicate: dup}
		}
	}
	return nil
}

// Read returns messages of topic after from, as described by
// longpoll.Broker.
func (b *Broker) Read(ctx context.Context, topic string, from protocol.Position, limit int) (longpoll.Page, error) {
	var page longpoll.Page
	err := b.call(ctx, "read", func(ctx context.Context) error {
		var err error
		page, err = b.read(ctx, topic, from, max(limit, 0))
		return err
	})
	if err != nil {
		return longpoll.Page{}, err
	}
	return page, nil
}

// logState is what the read script says of a topic's log.
type logState struct {
	exists      bool
	epoch       uint64
	head, first uint64
	gap         string
	missed      uint64
	after       uint64
	elements    []string
}

func (b *Broker) readScript(ctx context.Context, topic string, from protocol.Position, limit int) (logState, error) {
	m, l, i := b.keys(topic)
	res, err := readScript.Run(ctx, b.rdb, []string{m, l, i},
		b.nowArg(), b.maxAgeMicros(), MessageOverhead, topic,
		strconv.FormatUint(from.Epoch, 10), strconv.FormatUint(from.Seq, 10), limit).StringSlice()
	if err != nil {
		return logState{}, err
	}
	if len(res) == 0 {
		return logState{}, nil
	}
	if len(res) < 6 {
		return logState{}, fmt.Errorf("read script returned %d values", len(res))
	}
	st := logState{exists: true, gap: res[3], elements: res[6:]}
	for k, p := range []*uint64{&st.epoch, &st.head, &st.first, nil, &st.missed, &st.after} {
		if p == nil {
			continue
		}
		if *p, err = strconv.ParseUint(res[k], 10, 64); err != nil {
			return logState{}, fmt.Errorf("read script: value %d %q: %w", k, res[k], err)
		}
	}
	return st, nil
}

func (b *Broker) read(ctx context.Context, topic string, from protocol.Position, limit int) (longpoll.Page, error) {
	st, err := b.readScript(ctx, topic, from, limit)
	if err != nil {
		return longpoll.Page{}, err
	}
	var page longpoll.Page
	if !st.exists {
		if from != (protocol.Position{}) {
			page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapReset}
		}
		return page, nil
	}
	switch st.gap {
	case "reset":
		page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapReset}
	case "expired":
		page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapExpired, Missed: st.missed}
	}
	if len(st.elements) > 0 {
		page.Messages = make([]protocol.Message, len(st.elements))
		for k, el := range st.elements {
			m, err := decode(topic, st.after+1+uint64(k), el)
			if err != nil {
				return longpoll.Page{}, err
			}
			page.Messages[k] = m
		}
		page.Next = protocol.Position{Epoch: st.epoch, Seq: st.after + uint64(len(st.elements))}
	} else if page.Gap != nil {
		page.Next = protocol.Position{Epoch: st.epoch, Seq: st.after}
	} else {
		page.Next = from
	}
	return page, nil
}

// decode parses a list element: "<time µs>,<len(id)>,<id><data>".
func decode(topic string, seq uint64, el string) (protocol.Message, error) {
	bad := func() (protocol.Message, error) {
		return protocol.Message{}, fmt.Errorf("redis: topic %q seq %d: malformed message in Redis", topic, seq)
	}
	ts, rest, ok := strings.Cut(el, ",")
	if !ok {
		return bad()
	}
	n, rest, ok := strings.Cut(rest, ",")
	if !ok {
		return bad()
	}
	us, err1 := strconv.ParseInt(ts, 10, 64)
	idLen, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil || idLen < 0 || idLen > len(rest) {
		return bad()
	}
	return protocol.Message{
		Topic: topic,
		Seq:   seq,
		Time:  time.UnixMicro(us).UTC(),
		ID:    rest[:idLen],
		Data:  []byte(rest[idLen:]),
	}, nil
}

// Stat describes topic's log as described by longpoll.Broker.
func (b *Broker) Stat(ctx context.Context, topic string) (longpoll.TopicStat, error) {
	var ts longpoll.TopicStat
	err := b.call(ctx, "stat", func(ctx context.Context) error {
		st, err := b.readScript(ctx, topic, protocol.Position{}, 0)
		if err != nil || !st.exists {
			return err
		}
		ts = longpoll.TopicStat{Epoch: st.epoch, Head: st.head}
		if st.first <= st.head {
			ts.Oldest = st.first
		}
		return nil
	})
	if err != nil {
		return longpoll.TopicStat{}, err
	}
	return ts, nil
}

// Watch calls wake(topic) after every append to topic by any node until
// stop is called; see longpoll.Broker and the package doc. It returns once
// Redis confirmed the topic's subscription, or after SubscribeTimeout, or
// at once while the pub/sub connection is down: the watcher is then woken
// when the subscription becomes active, and its reads in the meantime fail
// with ErrUnavailable if Redis is down.
func (b *Broker) Watch(topic string, wake func(topic string)) (stop func()) {
	return b.subs.watch(topic, wake)
}

// Ping reports whether Redis answers (every master in Cluster) and the
// pub/sub connections are up; an error wraps protocol.ErrUnavailable.
func (b *Broker) Ping(ctx context.Context) error {
	return b.call(ctx, "ping", func(ctx context.Context) error {
		if b.cluster != nil {
			if err := b.cluster.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
				return c.Ping(ctx).Err()
			}); err != nil {
				return err
			}
		} else if err := b.single.Ping(ctx).Err(); err != nil {
			return err
		}
		return b.subs.healthy()
	})
}

// Close stops the pub/sub connections and their goroutines, waits for
// them, and closes the Redis client. Every call after the first, to any
// method, returns longpoll.ErrClosed.
func (b *Broker) Close() error {
	err := longpoll.ErrClosed
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.subs.close()
		err = b.rdb.Close()
	})
	return err
}

func newEpoch() uint64 {
	for {
		if e := mrand.Uint64(); e != 0 {
			return e
		}
	}
}

func newToken() string {
	var t [16]byte
	_, _ = rand.Read(t[:])
	return hex.EncodeToString(t[:])
}
