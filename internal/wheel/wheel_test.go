package wheel

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rec is a record the tests put in the wheel.
type rec struct {
	e       Entry
	name    string
	mu      sync.Mutex
	expired []time.Time // when Expire was called
	refuse  int         // how many Expire calls to refuse
	ended   atomic.Bool
}

func (r *rec) WheelEntry() *Entry { return &r.e }

func (r *rec) Expire() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expired = append(r.expired, time.Now())
	if r.refuse > 0 {
		r.refuse--
		return false
	}
	r.ended.Store(true)
	return true
}

func (r *rec) Ended() bool { return r.ended.Load() }

func (r *rec) calls() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.expired)
}

func newRec(name string, d time.Duration) *rec {
	return &rec{name: name, e: Entry{Deadline: time.Now().Add(d).UnixNano()}}
}

func TestUntilTick(t *testing.T) {
	base := 1_000_000 * int64(Tick)
	for _, tc := range []struct {
		ns   int64
		want time.Duration
	}{
		{base, Tick}, // at a tick's start: the next one
		{base + 1, Tick - 1},
		{base + int64(Tick) - 1, 1},
		{base + int64(Tick)/2, Tick / 2},
	} {
		if got := untilTick(tc.ns); got != tc.want {
			t.Errorf("untilTick(base+%d) = %v, want %v", tc.ns-base, got, tc.want)
		}
		if tickOf(tc.ns+int64(untilTick(tc.ns))) != tickOf(tc.ns)+1 {
			t.Errorf("base+%d: the timer does not fire at the next tick's start", tc.ns-base)
		}
	}
}

// TestExpiresWithinATickAfterTheDeadline: every record is expired once,
// not before its deadline and less than two ticks after it (the tick that
// holds the deadline must wholly pass, then the timer fires).
func TestExpiresWithinATickAfterTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w Wheel[*rec]
		w.Span = 10 * time.Second
		var recs []*rec
		for _, d := range []time.Duration{0, time.Millisecond, 49 * time.Millisecond, 50 * time.Millisecond,
			120 * time.Millisecond, time.Second, 3*time.Second + 7*time.Millisecond, 10 * time.Second} {
			recs = append(recs, newRec(d.String(), d))
			w.Add(recs[len(recs)-1])
			time.Sleep(3 * time.Millisecond) // records added at different points of a tick
		}
		time.Sleep(11 * time.Second)
		for _, r := range recs {
			calls := r.calls()
			if len(calls) != 1 {
				t.Errorf("%s: expired %d times, want once", r.name, len(calls))
				continue
			}
			late := calls[0].Sub(time.Unix(0, r.e.Deadline))
			if late < 0 || late >= 2*Tick {
				t.Errorf("%s: expired %v after its deadline, want within [0, %v)", r.name, late, 2*Tick)
			}
		}
		if got := w.All(); len(got) != 0 {
			t.Errorf("%d records left in the wheel", len(got))
		}
	})
}

// TestRemovedIsNotExpired: a record removed before its deadline is never
// expired, and All no longer returns it.
func TestRemovedIsNotExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w Wheel[*rec]
		w.Span = time.Second
		a, b := newRec("a", 200*time.Millisecond), newRec("b", 200*time.Millisecond)
		w.Add(a)
		w.Add(b)
		if got := w.All(); len(got) != 2 {
			t.Fatalf("All: %d records, want 2", len(got))
		}
		w.Remove(a)
		w.Remove(a) // a second Remove is harmless
		if got := w.All(); len(got) != 1 || got[0] != b {
			t.Fatalf("All after Remove: %v", got)
		}
		time.Sleep(time.Second)
		if n := len(a.calls()); n != 0 {
			t.Errorf("removed record expired %d times", n)
		}
		if n := len(b.calls()); n != 1 {
			t.Errorf("kept record expired %d times, want once", n)
		}
	})
}

// TestRefusedExpiryIsRetriedEachTick: a record that cannot be expired now
// is looked at again one tick later, until it expires or ends.
func TestRefusedExpiryIsRetriedEachTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w Wheel[*rec]
		w.Span = time.Second
		r := newRec("r", 100*time.Millisecond)
		r.refuse = 3
		w.Add(r)
		time.Sleep(time.Second)
		calls := r.calls()
		if len(calls) != 4 {
			t.Fatalf("Expire called %d times, want 4 (3 refused)", len(calls))
		}
		for i := 1; i < len(calls); i++ {
			if d := calls[i].Sub(calls[i-1]); d != Tick {
				t.Errorf("retry %d came %v after the one before, want %v", i, d, Tick)
			}
		}

		// A record that ends while refusing is dropped, not retried.
		q := newRec("q", 100*time.Millisecond)
		q.refuse = 1000
		w.Add(q)
		time.Sleep(200 * time.Millisecond)
		q.ended.Store(true)
		n := len(q.calls())
		time.Sleep(time.Second)
		if got := len(q.calls()); got > n+1 {
			t.Errorf("an ended record was retried %d more times", got-n)
		}
	})
}

// fires is how many times the shards' timers have fired.
func (w *Wheel[P]) fires() int {
	n := 0
	for i := range w.shards {
		w.shards[i].mu.Lock()
		n += w.shards[i].fires
		w.shards[i].mu.Unlock()
	}
	return n
}

// TestTimerStopsWhenEmpty: a shard's timer runs only while it holds
// records: an empty wheel's timers do not fire, and adding again restarts
// them.
func TestTimerStopsWhenEmpty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w Wheel[*rec]
		w.Span = time.Second
		for round := range 3 {
			before := w.fires()
			r := newRec("r", 300*time.Millisecond)
			w.Add(r)
			time.Sleep(500 * time.Millisecond)
			if len(r.calls()) != 1 {
				t.Fatalf("round %d: not expired after an idle spell", round)
			}
			busy := w.fires() - before
			if busy == 0 || busy > 10 {
				t.Fatalf("round %d: %d fires for one record over 500ms, want 1 to 10", round, busy)
			}
			time.Sleep(5 * time.Second) // idle: no record, no fire
			if idle := w.fires() - before - busy; idle != 0 {
				t.Fatalf("round %d: the timers fired %d times with the wheel empty", round, idle)
			}
		}
	})
}

// TestMove: a record moved to an earlier or a later deadline expires once,
// within a tick after its new deadline, not at its old one; a record
// moved while it is being expired and refuses is filed again by its new
// deadline.
func TestMove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w Wheel[*rec]
		w.Span = 10 * time.Second
		start := time.Now()
		sooner, later := newRec("sooner", 5*time.Second), newRec("later", time.Second)
		w.Add(sooner)
		w.Add(later)
		w.Move(sooner, start.Add(time.Second).UnixNano())
		w.Move(later, start.Add(3*time.Second).UnixNano())
		// Refused at its first deadline, and moved before the next tick.
		refused := newRec("refused", 2*time.Second)
		refused.refuse = 1
		w.Add(refused)
		// Refused by the tick that ends at 2.05 s, filed again for the
		// one that ends at 2.1 s: moved between the two.
		time.Sleep(2*time.Second + Tick + Tick/2)
		w.Move(refused, start.Add(4*time.Second).UnixNano())
		time.Sleep(5 * time.Second)
		for _, c := range []struct {
			r    *rec
			want time.Duration
		}{{sooner, time.Second}, {later, 3 * time.Second}, {refused, 4 * time.Second}} {
			calls := c.r.calls()
			last := calls[len(calls)-1].Sub(start)
			if late := last - c.want; late < 0 || late >= 2*Tick {
				t.Errorf("%s: expired at %v, want within [%v, %v)", c.r.name, last, c.want, c.want+2*Tick)
			}
		}
		if n := len(sooner.calls()) + len(later.calls()); n != 2 {
			t.Errorf("moved records expired %d times in all, want once each", n)
		}
		if n := len(refused.calls()); n != 2 {
			t.Errorf("the refused record was asked %d times, want twice (refused, then at its new deadline)", n)
		}
	})
}
