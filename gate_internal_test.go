package longpoll

import (
	"testing"
	"testing/synctest"
)

func TestGateHoldsPollsWhileAFanoutIsWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g gate
		g.wait() // none active: returns at once

		g.enter()
		g.enter() // two fan-outs at once
		passed := make(chan struct{})
		go func() {
			g.wait()
			close(passed)
		}()
		synctest.Wait()
		select {
		case <-passed:
			t.Fatal("a poll started while a fan-out was being written")
		default:
		}
		g.leave()
		synctest.Wait()
		select {
		case <-passed:
			t.Fatal("a poll started while the second fan-out was being written")
		default:
		}
		g.leave()
		synctest.Wait()
		select {
		case <-passed:
		default:
			t.Fatal("the poll was not let through after the fan-outs")
		}
		// The gate works again after it opened.
		g.enter()
		again := make(chan struct{})
		go func() {
			g.wait()
			close(again)
		}()
		synctest.Wait()
		select {
		case <-again:
			t.Fatal("the gate did not close for a new fan-out")
		default:
		}
		g.leave()
		<-again
	})
}
