package longpoll

import (
	"testing"
	"time"
)

func TestUntilTick(t *testing.T) {
	base := 1_000_000 * int64(wheelTick)
	for _, tc := range []struct {
		ns   int64
		want time.Duration
	}{
		{base, wheelTick}, // at a tick's start: the next one
		{base + 1, wheelTick - 1},
		{base + int64(wheelTick) - 1, 1},
		{base + int64(wheelTick)/2, wheelTick / 2},
	} {
		if got := untilTick(tc.ns); got != tc.want {
			t.Errorf("untilTick(base+%d) = %v, want %v", tc.ns-base, got, tc.want)
		}
		if tickOf(tc.ns+int64(untilTick(tc.ns))) != tickOf(tc.ns)+1 {
			t.Errorf("base+%d: the timer does not fire at the next tick's start", tc.ns-base)
		}
	}
}
