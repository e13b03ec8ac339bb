package longpoll

import (
	"sync"
	"sync/atomic"
)

// fanoutGate is the size of a group of polls whose replies go out before
// any new poll starts.
const fanoutGate = 256

// gate holds back the start of new parked polls while a large fan-out's
// replies are being written, as an event loop that writes every waiter
// of a publish before it reads the next request would: on a busy core the
// re-polls of the first subscribers served would otherwise share it with
// the writes to the rest, and the last subscriber would get its message
// later. It covers only the writes, which never block, so a slow broker
// read cannot hold polls back. The fan-out scenarios of longpoll bench
// measure its effect (docs/performance.md).
type gate struct {
	active atomic.Int32
	mu     sync.Mutex
	done   chan struct{} // closed when active returns to 0
}

func (g *gate) enter() {
	g.mu.Lock()
	if g.active.Add(1) == 1 {
		g.done = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *gate) leave() {
	g.mu.Lock()
	if g.active.Add(-1) == 0 {
		close(g.done)
	}
	g.mu.Unlock()
}

// wait returns once no large fan-out is being written: at once, with an
// atomic load, when none is.
func (g *gate) wait() {
	if g.active.Load() == 0 {
		return
	}
	g.mu.Lock()
	done, n := g.done, g.active.Load()
	g.mu.Unlock()
	if n > 0 {
		<-done
	}
}
