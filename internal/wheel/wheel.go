// Package wheel is the deadline wheel of parked polls: records sorted into
// slots of one tick by deadline, over a few shards each with its own lock
// and one timer that runs only while the shard holds records. A record is
// expired within one tick after its deadline; adding and removing one
// costs a lock and a slice append or store, with no allocation once its
// slot has grown.
//
// The wheel keeps its bookkeeping in the record itself (an Entry it
// embeds), so that a held poll costs no more than its record.
package wheel

import (
	"sync"
	"sync/atomic"
	"time"
)

// Tick is the wheel's resolution: a record is expired within one Tick
// after its deadline.
const Tick = 50 * time.Millisecond

const shards = 4

// Item is what a Wheel holds: a pointer to a record that keeps an Entry.
type Item interface {
	comparable
	// WheelEntry returns the record's Entry; the same one every time.
	WheelEntry() *Entry
	// Expire is called once the record's deadline has passed. It reports
	// false when the record could not be expired now (someone else is
	// answering it): the wheel looks again one tick later, unless Ended.
	Expire() bool
	// Ended reports whether the record is finished, so that the wheel
	// need not look at it again.
	Ended() bool
}

// Entry is the wheel's bookkeeping in a record. Set Deadline before Add;
// the rest belongs to the wheel, under its shard's lock.
type Entry struct {
	// Deadline is when the record expires, in Unix nanoseconds.
	Deadline   int64
	slot, ix   int32
	shard      uint8
	registered bool
}

// Wheel holds records until their deadlines. The zero Wheel is ready for
// records whose deadlines lie at most Span ahead once Span is set.
type Wheel[P Item] struct {
	// Span is the longest time from Add to a deadline; set it before the
	// first Add. A deadline further ahead expires early, one revolution
	// short.
	Span   time.Duration
	shards [shards]shard[P]
	next   atomic.Uint32
}

type shard[P Item] struct {
	mu    sync.Mutex
	slots [][]P // a ring: slot i holds deadlines in ticks ≡ i; the zero P for a record removed
	n     int   // records held
	done  int64 // every tick up to this one has been expired
	timer *time.Timer
	fires int // how many times the timer fired, for tests
}

func tickOf(ns int64) int64 { return ns / int64(Tick) }

// untilTick is how long after ns the next tick begins. Every shard's timer
// fires at a tick's start, so that one wake-up of the runtime serves them
// all, not one each.
func untilTick(ns int64) time.Duration {
	return time.Duration(int64(Tick) - ns%int64(Tick))
}

// Add puts p in the wheel until its Entry's Deadline.
func (w *Wheel[P]) Add(p P) {
	i := w.next.Add(1) % shards
	sh := &w.shards[i]
	e := p.WheelEntry()
	sh.mu.Lock()
	e.shard = uint8(i)
	if sh.slots == nil {
		sh.slots = make([][]P, int(w.Span/Tick)+3)
	}
	if sh.n == 0 {
		now := time.Now().UnixNano()
		sh.done = tickOf(now) - 1
		if sh.timer == nil {
			sh.timer = time.AfterFunc(untilTick(now), sh.fire)
		} else {
			sh.timer.Reset(untilTick(now))
		}
	}
	sh.insert(p, e)
	sh.mu.Unlock()
}

// insert files p by its deadline; a deadline already past goes into the
// next tick's slot.
func (sh *shard[P]) insert(p P, e *Entry) {
	t := max(tickOf(e.Deadline), sh.done+1)
	i := int32(t % int64(len(sh.slots)))
	e.registered, e.slot, e.ix = true, i, int32(len(sh.slots[i]))
	if sh.slots[i] == nil {
		// A slot keeps its array from one revolution to the next; its
		// first is made room for 16 records at once rather than grown
		// from 1 by appends.
		sh.slots[i] = make([]P, 0, 16)
	}
	sh.slots[i] = append(sh.slots[i], p)
	sh.n++
}

// Remove takes p out of the wheel, if it is still there. p must have been
// added.
func (w *Wheel[P]) Remove(p P) {
	e := p.WheelEntry()
	sh := &w.shards[e.shard] // set by Add, before anyone else could see p
	sh.mu.Lock()
	if e.registered {
		// A hole, not a swap with the slot's last record: that would
		// touch another record, most often not in cache. The slot is
		// emptied when its tick passes, so holes last one revolution.
		var zero P
		sh.slots[e.slot][e.ix] = zero
		sh.n--
		e.registered = false
	}
	sh.mu.Unlock()
}

// Move gives p, which was added, the deadline d: it is filed again if it
// is in the wheel; if it is being expired (taken out, its Expire not yet
// returned), a record whose Expire fails is filed again by d.
func (w *Wheel[P]) Move(p P, d int64) {
	e := p.WheelEntry()
	sh := &w.shards[e.shard]
	sh.mu.Lock()
	if e.registered {
		var zero P
		sh.slots[e.slot][e.ix] = zero
		sh.n--
		e.Deadline = d
		sh.insert(p, e)
	} else {
		e.Deadline = d
	}
	sh.mu.Unlock()
}

// fire expires the records of every tick that has wholly passed.
func (sh *shard[P]) fire() {
	last := tickOf(time.Now().UnixNano()) - 1
	var due []P
	var zero P
	sh.mu.Lock()
	sh.fires++
	for t := sh.done + 1; t <= last && t <= sh.done+int64(len(sh.slots)); t++ {
		i := t % int64(len(sh.slots))
		for _, p := range sh.slots[i] {
			if p != zero {
				p.WheelEntry().registered = false
				due = append(due, p)
				sh.n--
			}
		}
		clear(sh.slots[i])
		sh.slots[i] = sh.slots[i][:0]
	}
	sh.done = max(sh.done, last)
	sh.mu.Unlock()
	for _, p := range due {
		if !p.Expire() {
			// Being answered: look again next tick unless it has ended.
			sh.mu.Lock()
			if !p.Ended() {
				sh.insert(p, p.WheelEntry())
			}
			sh.mu.Unlock()
		}
	}
	sh.mu.Lock()
	if sh.n > 0 {
		sh.timer.Reset(untilTick(time.Now().UnixNano()))
	}
	sh.mu.Unlock()
}

// All returns every record in the wheel.
func (w *Wheel[P]) All() []P {
	var out []P
	var zero P
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		for _, s := range sh.slots {
			for _, p := range s {
				if p != zero {
					out = append(out, p)
				}
			}
		}
		sh.mu.Unlock()
	}
	return out
}
