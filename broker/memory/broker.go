package memory

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/protocol"

	"github.com/longpoll/longpoll"
)

// shardCount is a power of two, at most 256 (shardSet has 256 bits).
const shardCount = 256

// Broker is the in-memory longpoll.Broker. Create it with New; the zero
// Broker is not usable.
type Broker struct {
	cfg    config
	seed   maphash.Seed
	shards [shardCount]shard

	// topics and totalBytes count what every shard holds. Appends reserve
	// their share before writing, so concurrent appends to different
	// shards cannot pass the limits together.
	topics     atomic.Int64
	totalBytes atomic.Int64

	// Epochs are a bijective mix of epochBase plus a counter, so no two
	// logs of one Broker, deleted or forgotten ones included, share an
	// epoch, and a restarted broker's epochs are as good as random.
	epochBase uint64
	epochSeq  atomic.Uint64

	admin adminState

	closed    atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

var (
	_ longpoll.Broker       = (*Broker)(nil)
	_ longpoll.Pinger       = (*Broker)(nil)
	_ longpoll.TopicLister  = (*Broker)(nil)
	_ longpoll.TopicDeleter = (*Broker)(nil)
	_ longpoll.Revoker      = (*Broker)(nil)
	_ longpoll.NodeRegistry = (*Broker)(nil)
)

type shard struct {
	mu     sync.RWMutex
	topics map[string]*topicLog
	// watchers of a topic are kept apart from its log so that watching
	// neither creates a topic nor counts toward MaxTopics. Each slice is
	// copied on write: an append takes it under the lock and calls its
	// watchers after unlocking.
	watchers map[string][]*watcher
	_        [64]byte // keep neighbouring shards' locks off one cache line
}

type watcher struct {
	wake    func(topic string)
	stopped atomic.Bool
}

// New returns a Broker with the given options and starts its janitor; Close
// stops it. New panics if an option has an invalid value.
func New(opts ...Option) *Broker {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		panic(err)
	}
	b := &Broker{cfg: cfg, seed: maphash.MakeSeed(), epochBase: rand.Uint64(), done: make(chan struct{})}
	b.admin.init()
	for i := range b.shards {
		b.shards[i].topics = make(map[string]*topicLog)
		b.shards[i].watchers = make(map[string][]*watcher)
	}
	b.wg.Add(1)
	go b.janitor()
	return b
}

func (b *Broker) shardIndex(topic string) int {
	return int(maphash.String(b.seed, topic) % shardCount)
}

func (b *Broker) now() time.Time {
	// Drop the monotonic reading: Time is a wall-clock stamp, compared
	// with == and stored by other brokers without it.
	return b.cfg.now().Round(0).UTC()
}

func (b *Broker) cutoff(now time.Time) time.Time { return now.Add(-b.cfg.maxAge) }

// plan is what an Append does to one topic, worked out under the lock
// before anything is written.
type plan struct {
	topic string
	shard *shard
	log   *topicLog // nil: the append creates it
	epoch uint64
	seq   uint64    // seq of the last message planned so far
	time  time.Time // Time of the messages appended now
	// ids holds the IDs first seen in this batch, for batches of more than
	// one publication.
	ids   map[string]uint64
	count int   // messages appended
	added int64 // their size
	// drop is how many messages, counting the retained ones and then the
	// appended ones, retention drops from the front; dropped is their size.
	drop     int
	dropped  int64
	watchers []*watcher
}

// Append appends pubs as described by longpoll.Broker. It stores a copy of
// each Data, so the caller may reuse its buffers.
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

	// Group the publications by topic. A single publication, the common
	// case, needs no allocation for it.
	var onePlan [1]plan
	var oneIdx [1]int
	plans, planOf := onePlan[:0], oneIdx[:]
	var index map[string]int
	if len(pubs) > 1 {
		planOf = make([]int, len(pubs))
		if len(pubs) > 8 {
			index = make(map[string]int)
		}
	}
	var locks shardSet
	for i := range pubs {
		topic := pubs[i].Topic
		k := -1
		if index != nil {
			if j, ok := index[topic]; ok {
				k = j
			}
		} else {
			for j := range plans {
				if plans[j].topic == topic {
					k = j
					break
				}
			}
		}
		if k < 0 {
			k = len(plans)
			si := b.shardIndex(topic)
			locks.add(si)
			plans = append(plans, plan{topic: topic, shard: &b.shards[si]})
			if index != nil {
				index[topic] = k
			}
		}
		planOf[i] = k
	}

	locks.lock(b)
	receipts, err := b.appendLocked(pubs, plans, planOf)
	locks.unlock(b)
	if err != nil {
		return nil, err
	}

	for i := range plans {
		p := &plans[i]
		for _, w := range p.watchers {
			if !w.stopped.Load() {
				w.wake(p.topic)
			}
		}
	}
	return receipts, nil
}

// appendLocked does Append's work with every shard of plans locked.
func (b *Broker) appendLocked(pubs []longpoll.Publication, plans []plan, planOf []int) ([]longpoll.Receipt, error) {
	if b.closed.Load() {
		return nil, longpoll.ErrClosed
	}
	now := b.now()
	cutoff := b.cutoff(now)
	newTopics := 0
	for i := range plans {
		p := &plans[i]
		p.log = p.shard.topics[p.topic]
		if p.log == nil {
			newTopics++
			p.epoch = b.newEpoch()
			p.time = now
			continue
		}
		// Expired messages are invisible already; dropping them first frees
		// their room and their IDs for this append.
		b.totalBytes.Add(-p.log.expire(cutoff))
		p.epoch = p.log.epoch
		p.seq = p.log.head
		p.time = now
		if p.log.last.After(now) {
			p.time = p.log.last
		}
	}

	receipts := make([]longpoll.Receipt, len(pubs))
	for i := range pubs {
		pub := &pubs[i]
		p := &plans[planOf[i]]
		r := &receipts[i]
		r.Topic, r.Epoch = pub.Topic, p.epoch
		if pub.ID != "" {
			seq, dup := p.ids[pub.ID]
			if !dup && p.log != nil {
				seq, dup = p.log.ids[pub.ID]
			}
			if dup {
				r.Seq, r.Duplicate = seq, true
				continue
			}
		}
		p.seq++
		r.Seq = p.seq
		p.count++
		p.added += msgSize(pub.Topic, pub.ID, pub.Data)
		if pub.ID != "" && len(pubs) > 1 {
			if p.ids == nil {
				p.ids = make(map[string]uint64)
			}
			p.ids[pub.ID] = r.Seq
		}
	}

	var delta int64
	for i := range plans {
		p := &plans[i]
		b.planDrops(p, pubs, planOf, receipts, i)
		delta += p.added - p.dropped
	}
	if newTopics > 0 {
		if n := b.topics.Add(int64(newTopics)); n > b.cfg.maxTopics {
			b.topics.Add(-int64(newTopics))
			return nil, fmt.Errorf("memory: the broker holds %d topics: %w", b.cfg.maxTopics, protocol.ErrStoreFull)
		}
	}
	if n := b.totalBytes.Add(delta); delta > 0 && n > b.cfg.maxTotalBytes {
		b.totalBytes.Add(-delta)
		b.topics.Add(-int64(newTopics))
		return nil, fmt.Errorf("memory: the broker holds %d bytes: %w", b.cfg.maxTotalBytes, protocol.ErrStoreFull)
	}

	// Nothing can fail from here on.
	for i := range pubs {
		if receipts[i].Duplicate {
			continue
		}
		pub := &pubs[i]
		p := &plans[planOf[i]]
		if p.log == nil {
			p.log = &topicLog{name: strings.Clone(p.topic), epoch: p.epoch}
			p.shard.topics[p.log.name] = p.log
		}
		l := p.log
		l.push(protocol.Message{
			Topic: l.name,
			Seq:   receipts[i].Seq,
			Time:  p.time,
			ID:    pub.ID,
			Data:  bytes.Clone(pub.Data),
		})
		if pub.ID != "" {
			if l.ids == nil {
				l.ids = make(map[string]uint64)
			}
			l.ids[pub.ID] = receipts[i].Seq
		}
	}
	for i := range plans {
		p := &plans[i]
		if p.count == 0 {
			continue
		}
		l := p.log
		l.head = p.seq
		l.last = p.time
		l.bytes += p.added
		l.dropFront(p.drop)
		p.watchers = p.shard.watchers[p.topic]
	}
	return receipts, nil
}

// planDrops works out which messages retention drops when plan k appends
// its messages: the fewest from the front that leave at most MaxMessages
// and MaxBytes, always keeping the newest.
func (b *Broker) planDrops(p *plan, pubs []longpoll.Publication, planOf []int, receipts []longpoll.Receipt, k int) {
	if p.count == 0 {
		return // nothing is appended, so nothing is dropped
	}
	var live []protocol.Message
	var total int64
	if p.log != nil {
		live, total = p.log.live(), p.log.bytes
	}
	count := len(live) + p.count
	total += p.added
	next := 0 // the next publication to look at once live is exhausted
	for (count > b.cfg.maxMessages || total > b.cfg.maxBytes) && count > 1 {
		var size int64
		if p.drop < len(live) {
			m := &live[p.drop]
			size = msgSize(m.Topic, m.ID, m.Data)
		} else {
			// The batch alone overflows the topic: its own first messages go.
			for planOf[next] != k || receipts[next].Duplicate {
				next++
			}
			size = msgSize(pubs[next].Topic, pubs[next].ID, pubs[next].Data)
			next++
		}
		p.drop++
		p.dropped += size
		count--
		total -= size
	}
}

// newEpoch returns an epoch no log of b had before.
func (b *Broker) newEpoch() uint64 {
	for {
		if e := mix64(b.epochBase + b.epochSeq.Add(1)); e != 0 {
			return e
		}
	}
}

// mix64 is SplitMix64's finalizer, a bijection: distinct inputs give
// distinct epochs.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Read returns messages of topic after from, as described by
// longpoll.Broker. The messages are copies; their Data is shared and must
// not be modified.
func (b *Broker) Read(ctx context.Context, topic string, from protocol.Position, limit int) (longpoll.Page, error) {
	if err := ctx.Err(); err != nil {
		return longpoll.Page{}, err
	}
	if b.closed.Load() {
		return longpoll.Page{}, longpoll.ErrClosed
	}
	limit = max(limit, 0)
	cutoff := b.cutoff(b.now())
	sh := &b.shards[b.shardIndex(topic)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()

	l := sh.topics[topic]
	if l == nil {
		if from == (protocol.Position{}) {
			return longpoll.Page{}, nil
		}
		return longpoll.Page{Gap: &protocol.Gap{Topic: topic, Reason: protocol.GapReset}}, nil
	}

	v := l.visible(cutoff)
	visible := l.live()[v:]
	oldest := l.firstSeq() + uint64(v) // head+1 when nothing is visible

	var page longpoll.Page
	after := from.Seq // read the messages with a seq above it
	switch {
	case from == protocol.Position{}:
	case from.Epoch != l.epoch || from.Seq > l.head:
		page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapReset}
		after = oldest - 1
	}
	if after+1 < oldest {
		page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapExpired, Missed: oldest - 1 - after}
		after = oldest - 1
	}

	visible = visible[after+1-oldest:]
	if n := min(limit, len(visible)); n > 0 {
		page.Messages = make([]protocol.Message, n)
		copy(page.Messages, visible)
		page.Next = protocol.Position{Epoch: l.epoch, Seq: page.Messages[n-1].Seq}
	} else if page.Gap != nil {
		page.Next = protocol.Position{Epoch: l.epoch, Seq: after}
	} else {
		page.Next = from
	}
	return page, nil
}

// Stat describes topic's log as described by longpoll.Broker.
func (b *Broker) Stat(ctx context.Context, topic string) (longpoll.TopicStat, error) {
	if err := ctx.Err(); err != nil {
		return longpoll.TopicStat{}, err
	}
	if b.closed.Load() {
		return longpoll.TopicStat{}, longpoll.ErrClosed
	}
	cutoff := b.cutoff(b.now())
	sh := &b.shards[b.shardIndex(topic)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	l := sh.topics[topic]
	if l == nil {
		return longpoll.TopicStat{}, nil
	}
	st := longpoll.TopicStat{Epoch: l.epoch, Head: l.head}
	if v := l.visible(cutoff); v < len(l.buf)-l.off {
		st.Oldest = l.firstSeq() + uint64(v)
	}
	return st, nil
}

// Watch calls wake(topic) after every append to topic until stop is called;
// see longpoll.Broker. wake is called on the appending goroutine, after the
// append is visible and outside the broker's locks, so it must not block.
// The topic need not exist. After Close, Watch returns a stop that does
// nothing.
func (b *Broker) Watch(topic string, wake func(topic string)) (stop func()) {
	sh := &b.shards[b.shardIndex(topic)]
	w := &watcher{wake: wake}
	sh.mu.Lock()
	if b.closed.Load() {
		sh.mu.Unlock()
		return func() {}
	}
	old := sh.watchers[topic]
	ws := make([]*watcher, len(old), len(old)+1)
	copy(ws, old)
	sh.watchers[strings.Clone(topic)] = append(ws, w)
	sh.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			// Appends that took the watcher list before the removal check
			// this flag, so wake-ups stop now rather than after them.
			w.stopped.Store(true)
			sh.mu.Lock()
			defer sh.mu.Unlock()
			old := sh.watchers[topic]
			ws := make([]*watcher, 0, len(old))
			for _, o := range old {
				if o != w {
					ws = append(ws, o)
				}
			}
			if len(ws) == 0 {
				delete(sh.watchers, topic)
			} else if sh.watchers != nil {
				sh.watchers[topic] = ws
			}
		})
	}
}

// Ping reports longpoll.ErrClosed after Close, and nil before: the store is
// the process's memory.
func (b *Broker) Ping(context.Context) error {
	if b.closed.Load() {
		return longpoll.ErrClosed
	}
	return nil
}

// Close stops the janitor, waits for it, and lets go of every topic.
// Every call after the first, to any method, returns longpoll.ErrClosed.
func (b *Broker) Close() error {
	err := longpoll.ErrClosed
	b.closeOnce.Do(func() {
		err = nil
		b.closed.Store(true)
		close(b.done)
		b.wg.Wait()
		// Appends and Watches check closed under their shard's lock, so
		// none writes to these maps once they are gone.
		for i := range b.shards {
			sh := &b.shards[i]
			sh.mu.Lock()
			sh.topics, sh.watchers = nil, nil
			sh.mu.Unlock()
		}
		b.topics.Store(0)
		b.totalBytes.Store(0)
		b.admin.close()
	})
	return err
}

func (b *Broker) janitor() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.reclaimInterval)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
			b.reclaim()
		}
	}
}

// reclaim frees the memory of expired messages and forgets the topics that
// have no message left and no watcher. It locks one shard at a time.
func (b *Broker) reclaim() {
	cutoff := b.cutoff(b.now())
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for name, l := range sh.topics {
			b.totalBytes.Add(-l.expire(cutoff))
			// A log is empty only once its newest message expired, that is
			// MaxAge after its last append.
			if len(l.buf) == l.off && len(sh.watchers[name]) == 0 {
				delete(sh.topics, name)
				b.topics.Add(-1)
				continue
			}
			l.shrink()
		}
		sh.mu.Unlock()
	}
	b.admin.prune(b.now())
}

// shardSet is a set of shard indexes, locked in increasing order so that
// appends spanning shards cannot deadlock.
type shardSet [shardCount / 64]uint64

func (s *shardSet) add(i int) { s[i/64] |= 1 << (i % 64) }

func (s *shardSet) lock(b *Broker) {
	for w, bitsLeft := range s {
		for bitsLeft != 0 {
			j := bits.TrailingZeros64(bitsLeft)
			bitsLeft &^= 1 << j
			b.shards[w*64+j].mu.Lock()
		}
	}
}

func (s *shardSet) unlock(b *Broker) {
	for w, bitsLeft := range s {
		for bitsLeft != 0 {
			j := bits.TrailingZeros64(bitsLeft)
			bitsLeft &^= 1 << j
			b.shards[w*64+j].mu.Unlock()
		}
	}
}
