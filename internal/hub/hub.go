// Package hub tracks which held poll waits for which topics, so that an
// append to a topic wakes exactly that topic's waiters.
//
// Topics are spread over shards, each with its own mutex: a wake-up locks
// only its topic's shard, and its cost grows with that topic's waiters
// alone. A Waiter is a one-slot channel; waking never blocks the caller.
//
// A waiter is either a channel, for a poll held by its own goroutine, or a
// Parked record, for a poll parked by an event-loop transport with no
// goroutine: a wake-up claims every parked waiter of the topic under the
// shard lock and hands them, as one batch, to the hub's Deliver function
// after the lock is released.
//
// The hub knows nothing of HTTP or of brokers: it is told how to start and
// stop watching a topic, and it is told when a topic has news.
package hub

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Parked is a waiter with no goroutine of its own.
type Parked interface {
	// Claim is called under a shard lock when one of the waiter's topics
	// has news. It must not block. It reports whether the caller should
	// hand the waiter to Deliver; a waiter claimed once reports false
	// until it is armed again.
	Claim() bool
}

// DeliverFunc receives the parked waiters that a wake-up claimed. It is
// called without any hub lock held and owns the slice.
type DeliverFunc func(batch []Parked)

const shardCount = 256

// WatchFunc starts watching topic for appends, calling Hub.Wake for each,
// and returns a function that stops it. The hub calls it when the first
// waiter registers on a topic and calls stop when the last one leaves.
type WatchFunc func(topic string) (stop func())

// Hub is the registry of waiters. The zero Hub is not usable; call New.
type Hub struct {
	seed    maphash.Seed
	watch   WatchFunc
	deliver DeliverFunc
	linger  time.Duration
	sweeps  atomic.Bool // a sweep is scheduled
	shards  [shardCount]shard
}

type shard struct {
	mu     sync.Mutex
	topics map[string]*waitSet
	idle   []string // topics whose set emptied, for the sweep to look at
	// waited counts the topics with at least one waiter; written under
	// mu where a set gains its first waiter or loses its last, read by
	// Topics without it.
	waited atomic.Int64
}

// waitSet is one topic's waiters. Entries are unordered; removal swaps the
// last entry into the freed slot and tells the moved waiter its new index.
type waitSet struct {
	entries []entry
	// ready is closed once the broker watch for this topic is active, so a
	// waiter that joins a set being created does not read the log before
	// wake-ups are guaranteed.
	ready chan struct{}
	stop  func()
	// With a linger, an emptied set stays, with its watch, for the
	// re-polls that follow a delivery: sweeps counts the sweeps it has
	// been empty through, and listed says it is in its shard's idle list.
	sweeps uint8
	listed bool
}

type entry struct {
	w *Waiter
	k int // index of this topic in w.topics
}

// Waiter is one held poll's registration.
type Waiter struct {
	// C receives a value when one of the waiter's topics has news. It has
	// room for one signal: several wake-ups before the waiter looks are
	// folded into one.
	C      chan struct{}
	parked Parked // instead of C, for RegisterParked
	topics []string
	idx    []int  // idx[k] is the waiter's index in topics[k]'s entries
	idx1   [1]int // idx's array for a single topic
}

func (w *Waiter) setTopics(topics []string) {
	w.topics = topics
	if len(topics) == 1 {
		w.idx = w.idx1[:]
	} else {
		w.idx = make([]int, len(topics))
	}
}

// New returns a Hub that calls watch for each topic that gains its first
// waiter. watch may be nil when wake-ups come from elsewhere.
func New(watch WatchFunc) *Hub {
	h := &Hub{seed: maphash.MakeSeed(), watch: watch}
	for i := range h.shards {
		h.shards[i].topics = make(map[string]*waitSet)
	}
	return h
}

func (h *Hub) shard(topic string) *shard {
	return &h.shards[maphash.String(h.seed, topic)%shardCount]
}

// Register adds a waiter for topics, which must hold no duplicates. When it
// returns, every append to those topics that has not yet become visible to
// readers will signal the waiter's channel: a caller that registers and
// then reads the log cannot miss a message.
func (h *Hub) Register(topics []string) *Waiter {
	w := &Waiter{C: make(chan struct{}, 1)}
	w.setTopics(topics)
	h.register(w)
	return w
}

// SetLinger keeps a topic that loses its last waiter, and its watch,
// for between d and 2d, so that waiters that leave and come straight
// back (the re-polls after a delivery) do not stop and restart the
// watch each time. Call it before the first Register. Zero, the default,
// stops the watch at once.
func (h *Hub) SetLinger(d time.Duration) { h.linger = d }

// SetDeliver sets the function that receives claimed parked waiters. Call
// it before the first RegisterParked.
func (h *Hub) SetDeliver(d DeliverFunc) { h.deliver = d }

// RegisterParked is Register for a waiter with no channel: wake-ups call
// p.Claim, and the waiters claimed go to the Deliver function.
func (h *Hub) RegisterParked(topics []string, p Parked) *Waiter {
	w := new(Waiter)
	h.RegisterParkedIn(w, topics, p)
	return w
}

// RegisterParkedIn is RegisterParked into a Waiter the caller keeps,
// perhaps inside p itself, which saves an allocation per poll. w must be
// zero or unregistered.
func (h *Hub) RegisterParkedIn(w *Waiter, topics []string, p Parked) {
	*w = Waiter{parked: p}
	w.setTopics(topics)
	h.register(w)
}

func (h *Hub) register(w *Waiter) {
	topics := w.topics
	for k, t := range topics {
		s := h.shard(t)
		s.mu.Lock()
		ws := s.topics[t]
		created := ws == nil
		if ws != nil {
			ws.sweeps = 0 // back in use, if it was lingering
		}
		if created {
			ws = &waitSet{ready: make(chan struct{})}
			s.topics[t] = ws
		}
		w.idx[k] = len(ws.entries)
		ws.entries = append(ws.entries, entry{w, k})
		if len(ws.entries) == 1 {
			s.waited.Add(1)
		}
		s.mu.Unlock()
		if created {
			// Start the watch outside the shard lock: it may wait on the
			// broker (a remote subscription), and wakes for other topics of
			// this shard must not wait behind it.
			var stop func()
			if h.watch != nil {
				stop = h.watch(t)
			}
			s.mu.Lock()
			ws.stop = stop
			s.mu.Unlock()
			close(ws.ready)
		} else {
			<-ws.ready
		}
	}
}

// Unregister removes w from every topic it waits on. A topic whose last
// waiter leaves stops being watched.
func (h *Hub) Unregister(w *Waiter) {
	for k, t := range w.topics {
		s := h.shard(t)
		s.mu.Lock()
		ws := s.topics[t]
		i := w.idx[k]
		last := len(ws.entries) - 1
		if i != last {
			moved := ws.entries[last]
			ws.entries[i] = moved
			moved.w.idx[moved.k] = i
		}
		ws.entries[last] = entry{}
		ws.entries = ws.entries[:last]
		if last == 0 {
			s.waited.Add(-1)
		}
		var stop func()
		switch {
		case last > 0:
		case h.linger > 0:
			if !ws.listed {
				ws.listed = true
				s.idle = append(s.idle, t)
			}
		default:
			// Every waiter's Register returned after ready was closed, so
			// the watch is running and stop is set.
			delete(s.topics, t)
			stop = ws.stop
		}
		s.mu.Unlock()
		if last == 0 && h.linger > 0 && !h.sweeps.Load() && h.sweeps.CompareAndSwap(false, true) {
			time.AfterFunc(h.linger, h.sweep)
		}
		if stop != nil {
			stop()
		}
	}
}

// sweep ends the sets that stayed empty through a whole linger, and
// schedules itself again while any set is lingering.
func (h *Hub) sweep() {
	var stops []func()
	more := false
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		keep := s.idle[:0]
		for _, t := range s.idle {
			ws := s.topics[t]
			switch {
			case ws == nil:
			case len(ws.entries) > 0: // in use again
				ws.listed = false
			case ws.sweeps == 0:
				ws.sweeps = 1
				keep = append(keep, t)
			default:
				delete(s.topics, t)
				stops = append(stops, ws.stop)
			}
		}
		clear(s.idle[len(keep):])
		s.idle = keep
		more = more || len(keep) > 0
		s.mu.Unlock()
	}
	for _, stop := range stops {
		if stop != nil {
			stop()
		}
	}
	h.sweeps.Store(false)
	if more && h.sweeps.CompareAndSwap(false, true) {
		time.AfterFunc(h.linger, h.sweep)
	}
}

// Wake signals every waiter of topic. It never blocks on a waiter.
func (h *Hub) Wake(topic string) {
	var batch []Parked
	s := h.shard(topic)
	s.mu.Lock()
	if ws := s.topics[topic]; ws != nil {
		for _, e := range ws.entries {
			if p := e.w.parked; p != nil {
				if p.Claim() {
					if batch == nil {
						batch = make([]Parked, 0, len(ws.entries))
					}
					batch = append(batch, p)
				}
				continue
			}
			select {
			case e.w.C <- struct{}{}:
			default:
			}
		}
	}
	s.mu.Unlock()
	if len(batch) > 0 {
		h.deliver(batch)
	}
}

// Waiting returns the number of waiters on topic now.
func (h *Hub) Waiting(topic string) int {
	s := h.shard(topic)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ws := s.topics[topic]; ws != nil {
		return len(ws.entries)
	}
	return 0
}

// Topics returns the number of topics with at least one waiter now. It
// adds up a count per shard, kept as topics gain their first waiter and
// lose their last: it scans no topic.
func (h *Hub) Topics() int {
	n := int64(0)
	for i := range h.shards {
		n += h.shards[i].waited.Load()
	}
	return int(n)
}
