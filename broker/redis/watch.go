package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// subscriber runs the broker's wake-ups: one Redis subscription per topic
// that this node watches (SSUBSCRIBE in Cluster), and one for the
// revocations' channel while WatchRevocations is used, held on one pub/sub
// connection per Redis node, each read by one goroutine.
//
// Locks: a connection's wmu orders every command written on it and every
// change of its PubSub; s.mu guards all the state. wmu may be taken before
// s.mu, never after. No network I/O happens under s.mu.
type subscriber struct {
	b *Broker

	mu     sync.RWMutex
	topics map[string]*topicSub
	conns  map[string]*subConn // by node address; "" for a single Redis
	closed bool

	done chan struct{}
	kick chan struct{} // asks the janitor to route unrouted topics now
	wg   sync.WaitGroup
	// ctx is the subscriber's lifecycle: close cancels it, so that the
	// calls of goroutines started with spawn end at once.
	ctx    context.Context
	cancel context.CancelFunc
}

type watcher struct {
	// wake is called after a message (unless message is set) and when
	// messages may have been missed (the subscription was lost).
	wake func(topic string)
	// message, when set, receives each message's payload instead of wake.
	message func(payload string)
	stopped atomic.Bool
}

// topicSub is one watched (or lingering) topic. Its fields are guarded by
// subscriber.mu.
type topicSub struct {
	// topic names it in subscriber.topics: a topic's name, or a name in
	// braces (which no topic may hold) for the store's own channels.
	topic, channel string
	// tag is the channel's hash tag, which gives its Cluster slot.
	tag string
	// watchers is copied on write, so wakers can call it outside the lock.
	watchers []*watcher
	// idleSince is when the last watcher stopped; zero while watched.
	idleSince time.Time
	conn      *subConn // nil until routed to a connection
	routing   bool     // a route call is under way
	active    bool     // Redis confirmed the subscription on conn's PubSub
	ready     chan struct{}
	// lost: the subscription went inactive after being active, so
	// wake-ups may have been missed: wake the watchers when it is back.
	lost bool
}

func newSubscriber(b *Broker) *subscriber {
	s := &subscriber{
		b:      b,
		topics: make(map[string]*topicSub),
		conns:  make(map[string]*subConn),
		done:   make(chan struct{}),
		kick:   make(chan struct{}, 1),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.janitor()
	return s
}

func (s *subscriber) watch(topic string, wake func(string)) func() {
	return s.watchChannel(topic, topic, s.b.channel(topic), &watcher{wake: wake})
}

// watchChannel adds w to the subscription of channel, named topic in
// s.topics, whose hash tag is tag.
func (s *subscriber) watchChannel(topic, tag, channel string, w *watcher) func() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return func() {}
	}
	ts := s.topics[topic]
	if ts == nil {
		ts = &topicSub{topic: topic, tag: tag, channel: channel, ready: make(chan struct{})}
		s.topics[topic] = ts
	}
	ts.idleSince = time.Time{}
	ts.watchers = append(slices.Clip(ts.watchers), w)
	route := ts.conn == nil && !ts.routing
	ts.routing = ts.routing || route
	s.mu.Unlock()

	if route {
		s.route(ts)
	}
	s.mu.RLock()
	ready := ts.ready
	// While the connection is known to be down (or the topic's node could
	// not be found), waiting is pointless: the watcher is woken when the
	// subscription becomes active.
	wait := !ts.active && (ts.routing || ts.conn != nil && !ts.conn.failing)
	s.mu.RUnlock()
	if wait {
		t := time.NewTimer(s.b.cfg.subscribeTimeout)
		select {
		case <-ready:
		case <-t.C:
			s.b.cfg.log.Warn("redis subscription not confirmed in time", "topic", topic, "timeout", s.b.cfg.subscribeTimeout)
		case <-s.done:
		}
		t.Stop()
	}
	s.mu.Lock()
	if !ts.active {
		// Returning unsubscribed: wake the watcher once the subscription
		// is active, for appends it may have missed until then.
		ts.lost = true
	}
	s.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			w.stopped.Store(true)
			s.mu.Lock()
			defer s.mu.Unlock()
			ws := make([]*watcher, 0, len(ts.watchers))
			for _, o := range ts.watchers {
				if o != w {
					ws = append(ws, o)
				}
			}
			ts.watchers = ws
			if len(ws) == 0 {
				ts.idleSince = time.Now()
			}
		})
	}
}

// route puts ts on the connection of the node serving its channel. On
// failure ts stays unrouted and the janitor tries again.
func (s *subscriber) route(ts *topicSub) {
	c, err := s.connFor(ts.channel)
	if err != nil {
		s.b.cfg.log.Warn("redis: cannot find the node of a topic", "topic", ts.topic, "error", err)
		s.mu.Lock()
		ts.routing = false
		s.mu.Unlock()
		return
	}
	c.add(ts)
}

func (s *subscriber) connFor(channel string) (*subConn, error) {
	addr, client := "", s.b.single
	if s.b.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.timeout)
		defer cancel()
		node, err := s.b.cluster.MasterForKey(ctx, channel)
		if err != nil {
			return nil, err
		}
		addr, client = node.Options().Addr, node
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("broker closed")
	}
	c := s.conns[addr]
	if c == nil {
		c = &subConn{s: s, addr: addr, client: client,
			topics: make(map[string]*topicSub), pending: make(map[string]int)}
		s.conns[addr] = c
		s.wg.Add(1)
		go c.run()
	}
	return c, nil
}

// wakeLocal wakes the watchers of topic on this node, after an append by
// this node: faster than the round trip through Redis.
func (s *subscriber) wakeLocal(topic string) {
	s.mu.RLock()
	var ws []*watcher
	if ts := s.topics[topic]; ts != nil {
		ws = ts.watchers
	}
	s.mu.RUnlock()
	wakeAll(topic, ws)
}

func wakeAll(topic string, ws []*watcher) {
	for _, w := range ws {
		if !w.stopped.Load() {
			w.wake(topic)
		}
	}
}

// deliver hands a message of topic's channel to its watchers.
func deliver(topic, payload string, ws []*watcher) {
	for _, w := range ws {
		switch {
		case w.stopped.Load():
		case w.message != nil:
			w.message(payload)
		default:
			w.wake(topic)
		}
	}
}

// spawn runs fn in a goroutine that close waits for, unless the
// subscriber is closed; it reports whether it did. fn ends when s.ctx is
// done.
func (s *subscriber) spawn(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Go(fn)
	return true
}

// healthy reports an error while a pub/sub connection is down.
func (s *subscriber) healthy() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.conns {
		if c.failing {
			name := c.addr
			if name == "" {
				name = "redis"
			}
			return fmt.Errorf("pub/sub connection to %s is down", name)
		}
	}
	return nil
}

// janitor unsubscribes topics that lingered unwatched for the linger time
// and routes topics that could not be routed yet.
func (s *subscriber) janitor() {
	defer s.wg.Done()
	every := min(max(s.b.cfg.linger/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.kick:
		}
		now := time.Now()
		type gone struct {
			ts *topicSub
			c  *subConn
		}
		var expired []gone
		var unrouted []*topicSub
		s.mu.Lock()
		for name, ts := range s.topics {
			switch {
			case len(ts.watchers) == 0 && !ts.idleSince.IsZero() && !now.Before(ts.idleSince.Add(s.b.cfg.linger)):
				delete(s.topics, name)
				expired = append(expired, gone{ts, ts.conn})
			case ts.conn == nil && !ts.routing:
				ts.routing = true
				unrouted = append(unrouted, ts)
			}
		}
		s.mu.Unlock()
		for _, g := range expired {
			if g.c != nil {
				g.c.remove(g.ts)
			}
		}
		for _, ts := range unrouted {
			s.route(ts)
		}
	}
}

func (s *subscriber) kickJanitor() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *subscriber) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	var pss []*goredis.PubSub
	for _, c := range s.conns {
		if c.ps != nil {
			pss = append(pss, c.ps)
		}
	}
	s.mu.Unlock()
	close(s.done)
	s.cancel()
	for _, ps := range pss {
		_ = ps.Close()
	}
	s.wg.Wait()
}

// subConn is one pub/sub connection to one Redis node and the goroutine
// that reads it.
type subConn struct {
	s      *subscriber
	addr   string
	client *goredis.Client

	wmu sync.Mutex
	// Guarded by s.mu, changed with wmu held too:
	ps      *goredis.PubSub // nil while down
	topics  map[string]*topicSub
	pending map[string]int // commands written per channel and not yet confirmed
	failing bool           // the connection broke, or the last dial failed
}

func (c *subConn) sharded() bool { return c.s.b.cluster != nil }

func (c *subConn) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.s.b.cfg.dialTimeout+c.s.b.cfg.timeout)
}

func (c *subConn) subscribe(ps *goredis.PubSub, channels ...string) error {
	ctx, cancel := c.ctx()
	defer cancel()
	if c.sharded() {
		return ps.SSubscribe(ctx, channels...)
	}
	return ps.Subscribe(ctx, channels...)
}

func (c *subConn) unsubscribe(ps *goredis.PubSub, channel string) error {
	ctx, cancel := c.ctx()
	defer cancel()
	if c.sharded() {
		return ps.SUnsubscribe(ctx, channel)
	}
	return ps.Unsubscribe(ctx, channel)
}

// add subscribes ts on this connection; if the connection is down, the
// next connect subscribes it.
func (c *subConn) add(ts *topicSub) {
	s := c.s
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s.mu.Lock()
	ts.routing = false
	if s.topics[ts.topic] != ts || s.closed {
		s.mu.Unlock()
		return // it expired meanwhile
	}
	if s.conns[c.addr] != c {
		// The connection gave up (its node left the cluster) after
		// route found it: leave ts to the janitor.
		s.mu.Unlock()
		s.kickJanitor()
		return
	}
	ts.conn = c
	c.topics[ts.channel] = ts
	ps := c.ps
	if ps != nil {
		c.pending[ts.channel]++
	}
	s.mu.Unlock()
	if ps != nil {
		if err := c.subscribe(ps, ts.channel); err != nil {
			// The reader sees the connection fail too and resets it.
			_ = ps.Close()
		}
	}
}

// remove unsubscribes ts, unless a newer subscription of its channel took
// its place on this connection.
func (c *subConn) remove(ts *topicSub) {
	s := c.s
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s.mu.Lock()
	if c.topics[ts.channel] != ts {
		s.mu.Unlock()
		return
	}
	delete(c.topics, ts.channel)
	ps := c.ps
	if ps != nil {
		c.pending[ts.channel]++
	}
	s.mu.Unlock()
	if ps != nil {
		if err := c.unsubscribe(ps, ts.channel); err != nil {
			_ = ps.Close()
		}
	}
}

func (c *subConn) run() {
	defer c.s.wg.Done()
	for {
		ps := c.connect()
		if ps == nil {
			return
		}
		err := c.receive(ps)
		if c.closed() {
			_ = ps.Close()
			return
		}
		c.s.b.cfg.log.Warn("redis pub/sub connection lost; waking every watched topic", "node", c.addr, "error", err)
		c.reset(ps)
	}
}

func (c *subConn) closed() bool {
	select {
	case <-c.s.done:
		return true
	default:
		return false
	}
}

// connect dials until it has a PubSub with every topic of the connection
// subscribed (the confirmations are read by receive), or the broker closes.
func (c *subConn) connect() *goredis.PubSub {
	delay := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if c.closed() {
			return nil
		}
		ps, err := c.dial()
		if err == nil {
			if attempt > 0 {
				c.s.b.cfg.log.Info("redis pub/sub connection back", "node", c.addr)
			}
			return ps
		}
		if c.closed() {
			return nil
		}
		if c.retire() {
			return nil
		}
		if attempt == 0 {
			c.s.b.cfg.log.Warn("redis pub/sub connection failed; retrying", "node", c.addr, "error", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-c.s.done:
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

func (c *subConn) dial() (*goredis.PubSub, error) {
	s := c.s
	c.wmu.Lock()
	defer c.wmu.Unlock()
	ctx, cancel := c.ctx()
	defer cancel()
	var ps *goredis.PubSub
	if c.sharded() {
		ps = c.client.SSubscribe(ctx)
	} else {
		ps = c.client.Subscribe(ctx)
	}
	// A PING connects it even with nothing to subscribe yet.
	if err := ps.Ping(ctx); err != nil {
		_ = ps.Close()
		c.setFailing()
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ps.Close()
		return nil, errors.New("closed")
	}
	groups := map[int][]string{}
	for ch, ts := range c.topics {
		k := 0
		if c.sharded() {
			k = keySlot(ts.tag) // one SSUBSCRIBE may not span slots
		}
		groups[k] = append(groups[k], ch)
	}
	c.pending = make(map[string]int, len(c.topics))
	for ch := range c.topics {
		c.pending[ch] = 1
	}
	c.ps = ps
	c.failing = false
	s.mu.Unlock()
	for _, chs := range groups {
		for chunk := range slices.Chunk(chs, 256) {
			if err := c.subscribe(ps, chunk...); err != nil {
				s.mu.Lock()
				c.ps = nil
				c.failing = true
				s.mu.Unlock()
				_ = ps.Close()
				return nil, err
			}
		}
	}
	return ps, nil
}

// retire removes a Cluster connection that carries no topic from the
// subscriber, so that a node gone from the cluster is not dialled forever
// (nor reported down by Ping). It reports whether it did.
func (c *subConn) retire() bool {
	s := c.s
	if !c.sharded() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(c.topics) > 0 || s.conns[c.addr] != c {
		return false
	}
	delete(s.conns, c.addr)
	return true
}

func (c *subConn) setFailing() {
	c.s.mu.Lock()
	c.failing = true
	c.s.mu.Unlock()
}

// reset forgets ps after it failed: every topic of the connection turns
// inactive and its watchers are woken, since wake-ups may have been lost;
// they are woken again once the subscription is back.
func (c *subConn) reset(ps *goredis.PubSub) {
	s := c.s
	c.wmu.Lock()
	s.mu.Lock()
	if c.ps == ps {
		c.ps = nil
	}
	c.pending = make(map[string]int)
	c.failing = true
	type wake struct {
		topic string
		ws    []*watcher
	}
	var wakes []wake
	for ch, ts := range c.topics {
		if ts.active {
			ts.active = false
			ts.ready = make(chan struct{})
		}
		ts.lost = true
		wakes = append(wakes, wake{ts.topic, ts.watchers})
		if c.sharded() {
			// Its slot may have a new master by now: route it again.
			delete(c.topics, ch)
			ts.conn = nil
		}
	}
	s.mu.Unlock()
	c.wmu.Unlock()
	_ = ps.Close()
	for _, w := range wakes {
		wakeAll(w.topic, w.ws)
	}
	if c.sharded() {
		s.b.cluster.ReloadState(context.Background())
		s.kickJanitor()
	}
}

// receive reads ps until it fails, pinging it when it stays silent.
func (c *subConn) receive(ps *goredis.PubSub) error {
	s := c.s
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(context.Background(), s.b.cfg.healthInterval)
		if err != nil {
			if c.closed() {
				return err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				c.wmu.Lock()
				ctx, cancel := c.ctx()
				err = ps.Ping(ctx)
				cancel()
				c.wmu.Unlock()
				if err == nil {
					continue
				}
			}
			var rerr goredis.Error
			if errors.As(err, &rerr) && c.moved(rerr) {
				continue
			}
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *goredis.Message:
			s.mu.RLock()
			var ws []*watcher
			topic := ""
			if ts := c.topics[m.Channel]; ts != nil {
				ws, topic = ts.watchers, ts.topic
			}
			s.mu.RUnlock()
			deliver(topic, m.Payload, ws)
		case *goredis.Subscription:
			c.confirmed(m)
		}
	}
}

// confirmed handles Redis's reply to a (un)subscribe of one channel.
// Commands on one connection are answered in order, so once a channel has
// no command pending, Redis's state for it is that of the last one sent.
func (c *subConn) confirmed(m *goredis.Subscription) {
	s := c.s
	s.mu.Lock()
	was := c.pending[m.Channel]
	if was > 1 {
		c.pending[m.Channel] = was - 1
	} else {
		delete(c.pending, m.Channel)
	}
	ts := c.topics[m.Channel]
	var wake []*watcher
	switch m.Kind {
	case "subscribe", "ssubscribe":
		if was <= 1 && ts != nil && !ts.active {
			ts.active = true
			close(ts.ready)
			if ts.lost {
				ts.lost = false
				wake = ts.watchers
			}
		}
	case "unsubscribe", "sunsubscribe":
		if was == 0 && ts != nil {
			// Redis dropped the subscription by itself: in Cluster, the
			// slot moved to another node. Route the topic again.
			delete(c.topics, m.Channel)
			ts.conn = nil
			if ts.active {
				ts.active = false
				ts.ready = make(chan struct{})
			}
			ts.lost = true
			wake = ts.watchers
			if c.s.b.cluster != nil {
				c.s.b.cluster.ReloadState(context.Background())
			}
		}
	}
	unrouted := ts != nil && ts.conn == nil
	s.mu.Unlock()
	if ts != nil {
		wakeAll(ts.topic, wake)
	}
	if unrouted {
		s.kickJanitor()
	}
}

// moved handles a MOVED reply to an SSUBSCRIBE: the slot is served by
// another node, so its topics are routed again. It reports whether err was
// one.
func (c *subConn) moved(err goredis.Error) bool {
	f := strings.Fields(err.Error())
	if len(f) < 3 || (f[0] != "MOVED" && f[0] != "ASK") || c.s.b.cluster == nil {
		return false
	}
	c.s.b.cluster.ReloadState(context.Background())
	s := c.s
	type wake struct {
		topic string
		ws    []*watcher
	}
	var wakes []wake
	s.mu.Lock()
	for ch, ts := range c.topics {
		if fmt.Sprint(keySlot(ts.tag)) != f[1] {
			continue
		}
		delete(c.topics, ch)
		delete(c.pending, ch)
		ts.conn = nil
		if ts.active {
			ts.active = false
			ts.ready = make(chan struct{})
		}
		ts.lost = true
		wakes = append(wakes, wake{ts.topic, ts.watchers})
	}
	s.mu.Unlock()
	for _, w := range wakes {
		wakeAll(w.topic, w.ws)
	}
	s.kickJanitor()
	return true
}
