package longpoll

import (
	"testing"
	"testing/synctest"
)

func TestGateHoldsPollsWhileAFanoutIsWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g gate
		// poll starts a poll that waits at the gate; its channel closes
		// once the poll is let through.
		poll := func() chan struct{} {
			passed := make(chan struct{})
			go func() {
				g.wait()
				close(passed)
			}()
			synctest.Wait()
			return passed
		}
		through := func(ch chan struct{}) bool {
			synctest.Wait()
			select {
			case <-ch:
				return true
			default:
				return false
			}
		}

		if !through(poll()) {
			t.Fatal("a poll waited with no fan-out being written")
		}
		g.enter()
		g.enter() // two fan-outs at once
		held := poll()
		if through(held) {
			t.Fatal("a poll started while a fan-out was being written")
		}
		g.leave()
		if through(held) {
			t.Fatal("a poll started while the second fan-out was being written")
		}
		g.leave()
		if !through(held) {
			t.Fatal("the poll was not let through after the fan-outs")
		}
		// The gate closes again for a new fan-out.
		g.enter()
		again := poll()
		if through(again) {
			t.Fatal("the gate did not close for a new fan-out")
		}
		g.leave()
		if !through(again) {
			t.Fatal("the poll was not let through after the new fan-out")
		}
	})
}
