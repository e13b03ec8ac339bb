package limit

import (
	"testing"
	"time"
)

// TestPollStart: PollStart spends the poll bucket that StartPoll uses,
// holds no slot, and refills with time.
func TestPollStart(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(Config{PollRate: 1, PollBurst: 2, MaxHeld: 1}, func() time.Time { return now })
	if ok, _ := l.PollStart("ip:a"); !ok {
		t.Fatal("first token refused")
	}
	if ok, _ := l.StartPoll("ip:a"); !ok {
		t.Fatal("second token refused")
	}
	if ok, retry := l.PollStart("ip:a"); ok || retry <= 0 || retry > time.Second {
		t.Fatalf("third token: %v %v, want a refusal within a second", ok, retry)
	}
	if ok, _ := l.PollStart("ip:b"); !ok {
		t.Fatal("another client shares the bucket")
	}
	now = now.Add(time.Second)
	// The slot StartPoll holds is not PollStart's to need.
	if ok, _ := l.PollStart("ip:a"); !ok {
		t.Fatal("no token after the refill")
	}
	l.EndPoll("ip:a")
	off := New(Config{MaxHeld: 1}, nil)
	for range 3 {
		if ok, _ := off.PollStart("x"); !ok {
			t.Fatal("PollStart limited without a poll rate")
		}
	}
}
