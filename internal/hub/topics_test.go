package hub

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestTopicsCountsWaitedTopics: Topics counts a topic from its first
// waiter to its last, whether it lingers after or not, and for parked
// waiters as for channels.
func TestTopicsCountsWaitedTopics(t *testing.T) {
	for _, linger := range []time.Duration{0, time.Second} {
		synctest.Test(t, func(t *testing.T) {
			h := New(nil)
			h.SetLinger(linger)
			h.SetDeliver(func([]Parked) {})
			if n := h.Topics(); n != 0 {
				t.Fatalf("fresh hub: %d", n)
			}
			a := h.Register([]string{"a", "b"})
			b := h.Register([]string{"b"})
			p := h.RegisterParked([]string{"c"}, claimAll{})
			if n := h.Topics(); n != 3 {
				t.Fatalf("a, b, c waited: %d", n)
			}
			h.Unregister(a)
			if n := h.Topics(); n != 2 {
				t.Fatalf("b, c waited: %d", n)
			}
			h.Unregister(b)
			h.Unregister(p)
			if n := h.Topics(); n != 0 {
				t.Fatalf("none waited: %d", n)
			}
			a = h.Register([]string{"a"}) // back, perhaps into a lingering set
			if n := h.Topics(); n != 1 {
				t.Fatalf("a waited again: %d", n)
			}
			h.Unregister(a)
			time.Sleep(3 * linger) // the sweeps end the lingering sets
			synctest.Wait()
			if n := h.Topics(); n != 0 {
				t.Fatalf("after the sweep: %d", n)
			}
		})
	}
}

type claimAll struct{}

func (claimAll) Claim() bool { return true }
