package client

import (
	"testing"
	"time"
)

func TestBackoffCeilings(t *testing.T) {
	// A rand that always draws the top of the range shows the ceilings.
	b := backoff{base: 500 * time.Millisecond, cap: 30 * time.Second, rand: func(n int64) int64 { return n - 1 }}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := b.next(0); got != w-1 {
			t.Fatalf("wait %d: %v, want %v", i, got, w-1)
		}
	}
	b.reset()
	if got := b.next(0); got != 500*time.Millisecond-1 {
		t.Fatalf("after reset: %v", got)
	}
	if got := b.next(10 * time.Second); got != 10*time.Second {
		t.Fatalf("with a 10s floor: %v", got)
	}
	if got := b.next(1000 * time.Hour); got != maxServerWait {
		t.Fatalf("with a huge floor: %v, want it capped at %v", got, maxServerWait)
	}
	// Many failures must not overflow.
	b.reset()
	for i := range 200 {
		if got := b.next(0); got > 30*time.Second-1 || (i > 6 && got != 30*time.Second-1) {
			t.Fatalf("wait %d: %v", i, got)
		}
	}
}

func TestBackoffFullJitterSpreads(t *testing.T) {
	c, err := New("http://x", WithBackoff(time.Second, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Full jitter: the first waits of many clients fill [0, base) evenly.
	var buckets [10]int
	for range 10000 {
		b := c.newBackoff()
		d := b.next(0)
		if d < 0 || d >= time.Second {
			t.Fatalf("wait %v outside [0, 1s)", d)
		}
		buckets[d/(100*time.Millisecond)]++
	}
	for i, n := range buckets {
		if n < 800 || n > 1200 {
			t.Fatalf("bucket %d holds %d of 10000 waits: %v", i, n, buckets)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"":       0,
		"0":      0,
		"-3":     0,
		"2":      2 * time.Second,
		"junk":   0,
		"999999": maxServerWait,
	} {
		if got := parseRetryAfter(v); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
	future := time.Now().Add(90 * time.Second).UTC().Format(time.RFC1123)
	future = future[:len(future)-3] + "GMT"
	if got := parseRetryAfter(future); got < 80*time.Second || got > 90*time.Second {
		t.Errorf("parseRetryAfter(%q) = %v", future, got)
	}
}
