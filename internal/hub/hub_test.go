package hub

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func signaled(w *Waiter) bool {
	select {
	case <-w.C:
		return true
	default:
		return false
	}
}

func TestWakeOnlyThatTopic(t *testing.T) {
	h := New(nil)
	a := h.Register([]string{"a", "b"})
	c := h.Register([]string{"c"})
	h.Wake("b")
	if !signaled(a) || signaled(c) {
		t.Fatal("wake of b must signal a's waiter alone")
	}
	h.Wake("b")
	h.Wake("a")
	if !signaled(a) || signaled(a) {
		t.Fatal("several wakes must fold into one signal")
	}
	h.Unregister(a)
	h.Wake("a")
	if signaled(a) || h.Waiting("a") != 0 || h.Waiting("c") != 1 {
		t.Fatal("unregistered waiter still signaled or counted")
	}
	h.Unregister(c)
}

// watches counts, per topic, the watches a hub starts and stops.
type watches struct {
	mu           sync.Mutex
	starts, stop map[string]int
}

func newWatches() *watches {
	return &watches{starts: map[string]int{}, stop: map[string]int{}}
}

func (w *watches) watch(topic string) func() {
	w.mu.Lock()
	w.starts[topic]++
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.stop[topic]++
		w.mu.Unlock()
	}
}

// count returns topic's starts and stops so far.
func (w *watches) count(topic string) (starts, stops int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.starts[topic], w.stop[topic]
}

// active returns the topics being watched, with how many watches each.
func (w *watches) active() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := map[string]int{}
	for t, n := range w.starts {
		if n -= w.stop[t]; n != 0 {
			a[t] = n
		}
	}
	return a
}

func TestWatchLifecycle(t *testing.T) {
	wc := newWatches()
	h := New(wc.watch)
	ws := make([]*Waiter, 10)
	for i := range ws {
		ws[i] = h.Register([]string{"x", fmt.Sprint("own", i)})
	}
	if active := wc.active(); active["x"] != 1 || active["own3"] != 1 {
		t.Fatalf("watches %v: want one per topic", active)
	}
	// Remove in an order that exercises swap-delete.
	for _, i := range []int{3, 0, 9, 5, 1, 2, 8, 4, 7} {
		h.Unregister(ws[i])
		if h.Waiting("x") == 0 {
			t.Fatal("x lost its remaining waiter")
		}
	}
	h.Wake("x")
	if !signaled(ws[6]) {
		t.Fatal("the last waiter of x was not signaled after swaps")
	}
	h.Unregister(ws[6])
	for topic, n := range wc.active() {
		t.Fatalf("topic %s still watched (%d) with no waiter", topic, n)
	}
}

func TestConcurrentRegisterWake(t *testing.T) {
	h := New(func(string) func() { return func() {} })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				w := h.Register([]string{"shared", fmt.Sprint("t", (g+i)%17)})
				h.Wake("shared")
				if !signaled(w) {
					t.Error("a waiter registered before a wake was not signaled")
					return
				}
				h.Unregister(w)
			}
		}()
	}
	wg.Wait()
	if n := h.Waiting("shared"); n != 0 {
		t.Fatalf("%d waiters left", n)
	}
}

func BenchmarkWake(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("waiters=%d", n), func(b *testing.B) {
			h := New(nil)
			ws := make([]*Waiter, n)
			for i := range ws {
				ws[i] = h.Register([]string{"t"})
			}
			b.ReportAllocs()
			for b.Loop() {
				h.Wake("t")
				for _, w := range ws {
					<-w.C
				}
			}
		})
	}
}

func BenchmarkRegisterUnregister(b *testing.B) {
	h := New(func(string) func() { return func() {} })
	others := h.Register([]string{"t"}) // keep the topic's set alive
	defer h.Unregister(others)
	topics := []string{"t"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Unregister(h.Register(topics))
		}
	})
}

// TestLinger: with a linger, a topic that loses its last waiter keeps its
// watch until a whole linger has passed with no waiter, and a waiter that
// comes back meanwhile finds it in place.
func TestLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		wc := newWatches()
		h := New(wc.watch)
		h.SetLinger(time.Second)
		starts := func(topic string) int { n, _ := wc.count(topic); return n }
		stops := func(topic string) int { _, n := wc.count(topic); return n }
		// Leave and come back, again and again, within the linger: one watch.
		for range 5 {
			w := h.Register([]string{"a"})
			h.Unregister(w)
			time.Sleep(300 * time.Millisecond)
		}
		w := h.Register([]string{"a"})
		h.Wake("a")
		if !signaled(w) || starts("a") != 1 || stops("a") != 0 {
			t.Fatalf("after re-polls: %d starts, %d stops, want 1 and 0", starts("a"), stops("a"))
		}
		h.Unregister(w)
		other := h.Register([]string{"b"})
		h.Unregister(other)
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if stops("a") != 0 {
			t.Fatal("the watch stopped before a whole linger with no waiter")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if stops("a") != 1 || stops("b") != 1 || h.Waiting("a") != 0 {
			t.Fatalf("after the linger: stops %v, want one per topic", wc.stop)
		}
		// Coming back after the end starts a new watch.
		w = h.Register([]string{"a"})
		if starts("a") != 2 {
			t.Fatalf("%d starts, want 2", starts("a"))
		}
		h.Unregister(w)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if stops("a") != 2 {
			t.Fatalf("%d stops, want 2", stops("a"))
		}
	})
}
