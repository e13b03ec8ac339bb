package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/brokertest"
)

func TestAdminConformance(t *testing.T) {
	brokertest.RunAdmin(t, func(t *testing.T) longpoll.Broker {
		b := New()
		t.Cleanup(func() { checkInvariants(t, b) })
		return b
	})
}

func TestAdminRetention(t *testing.T) {
	brokertest.RunAdminRetention(t, func(t *testing.T, maxMessages int) longpoll.Broker {
		b := New(WithMaxMessages(maxMessages))
		t.Cleanup(func() { checkInvariants(t, b) })
		return b
	})
}

func mustTopics(t *testing.T, b *Broker, prefix, after string, limit int) []longpoll.TopicInfo {
	t.Helper()
	ts, err := b.Topics(t.Context(), prefix, after, limit)
	if err != nil {
		t.Fatalf("Topics: %v", err)
	}
	return ts
}

func mustDelete(t *testing.T, b *Broker, topic string) bool {
	t.Helper()
	ok, err := b.DeleteTopic(t.Context(), topic)
	if err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	return ok
}

func TestTopicsAgeExpiry(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithMaxAge(time.Hour), WithClock(clk.Now))
	e := mustAppend(t, b, pub("t", "1"), pub("t", "22"))[0].Epoch
	clk.Set(t0.Add(30 * time.Minute))
	mustAppend(t, b, pub("t", "333"), pub("u", "1"))
	clk.Set(t0.Add(time.Hour + time.Nanosecond))

	// Expired messages not reclaimed yet are not counted.
	want := []longpoll.TopicInfo{
		{Topic: "t", Epoch: e, Head: 3, Oldest: 3, Retained: 1, Bytes: 3, LastPublish: t0.Add(30 * time.Minute)},
		{Topic: "u", Epoch: mustStat(t, b, "u").Epoch, Head: 1, Oldest: 1, Retained: 1, Bytes: 1, LastPublish: t0.Add(30 * time.Minute)},
	}
	if got := mustTopics(t, b, "", "", 10); !slices.Equal(got, want) {
		t.Fatalf("Topics = %+v, want %+v", got, want)
	}

	// A topic whose messages all expired is not listed, but its log is
	// there until the janitor forgets it: deleting it reports true.
	clk.Set(t0.Add(90*time.Minute + time.Nanosecond))
	if got := mustTopics(t, b, "", "", 10); len(got) != 0 {
		t.Fatalf("Topics = %+v once every message expired, want none", got)
	}
	if !mustDelete(t, b, "t") {
		t.Fatal("DeleteTopic of a log whose messages expired reported false")
	}
	if n, m := b.topics.Load(), b.totalBytes.Load(); n != 1 || m != size(pub("u", "1")) {
		t.Fatalf("after the delete: %d topics, %d bytes; want 1 topic, %d bytes", n, m, size(pub("u", "1")))
	}
}

func TestTopicsLimitBelowOne(t *testing.T) {
	b := newTest(t)
	mustAppend(t, b, pub("t", "1"))
	if got := mustTopics(t, b, "", "", 0); len(got) != 0 {
		t.Fatalf("Topics with limit 0 = %+v, want none", got)
	}
}

func TestDeleteTopicFreesRoom(t *testing.T) {
	b := newTest(t, WithMaxTopics(1), WithMaxTotalBytes(size(pubID("a", "x", "1"))))
	mustAppend(t, b, pubID("a", "x", "1"))
	_, err := b.Append(t.Context(), []longpoll.Publication{pub("b", "1")})
	wantStoreFull(t, err)
	if !mustDelete(t, b, "a") {
		t.Fatal("DeleteTopic reported false")
	}
	if n, m := b.topics.Load(), b.totalBytes.Load(); n != 0 || m != 0 {
		t.Fatalf("after the delete: %d topics, %d bytes; want none", n, m)
	}
	mustAppend(t, b, pub("b", "1"))
}

func TestEpochsDistinct(t *testing.T) {
	b := newTest(t)
	seen := make(map[uint64]string)
	for i := range 2000 {
		topic := fmt.Sprint("t", i%3)
		e := mustAppend(t, b, pub(topic, "1"))[0].Epoch
		if prev, ok := seen[e]; ok {
			t.Fatalf("cycle %d: %s got epoch %d, an epoch of %s before", i, topic, e, prev)
		}
		seen[e] = topic
		mustDelete(t, b, topic)
	}
}

func TestDeleteWakesOutsideLock(t *testing.T) {
	b := newTest(t)
	mustAppend(t, b, pub("t", "1"))
	done := make(chan longpoll.TopicStat, 1)
	stop := b.Watch("t", func(topic string) {
		st, _ := b.Stat(t.Context(), topic)
		done <- st
	})
	defer stop()
	mustDelete(t, b, "t")
	select {
	case st := <-done:
		if st != (longpoll.TopicStat{}) {
			t.Fatalf("Stat from wake = %+v, want zero", st)
		}
	default:
		t.Fatal("wake not called before DeleteTopic returned") // it runs on the deleting goroutine
	}
}

func TestWatchRevocationsOutsideLock(t *testing.T) {
	b := newTest(t)
	done := make(chan int, 1)
	stop := b.WatchRevocations(func(longpoll.Revocation) {
		rs, _ := b.Revocations(t.Context())
		done <- len(rs)
	})
	defer stop()
	if err := b.Revoke(t.Context(), longpoll.Revocation{Subject: "s", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-done:
		if n != 1 {
			t.Fatalf("Revocations from fn holds %d, want 1", n)
		}
	default:
		t.Fatal("fn not called before Revoke returned") // it runs on the revoking goroutine
	}
}

func TestRevocationsClock(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithClock(clk.Now))
	revoke := func(subject string, before, expires time.Time) {
		t.Helper()
		if err := b.Revoke(t.Context(), longpoll.Revocation{Subject: subject, Before: before, Expires: expires}); err != nil {
			t.Fatal(err)
		}
	}
	revocations := func() []longpoll.Revocation {
		t.Helper()
		rs, err := b.Revocations(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	// Kept to the nanosecond, in UTC.
	revoke("a", t0.Add(time.Nanosecond).In(time.FixedZone("X", 3600)), t0.Add(time.Hour))
	revoke("b", t0, t0.Add(2*time.Hour))
	want := []longpoll.Revocation{
		{Subject: "a", Before: t0.Add(time.Nanosecond), Expires: t0.Add(time.Hour)},
		{Subject: "b", Before: t0, Expires: t0.Add(2 * time.Hour)},
	}
	if got := revocations(); !slices.Equal(got, want) {
		t.Fatalf("Revocations = %+v, want %+v", got, want)
	}

	clk.Set(t0.Add(time.Hour)) // Expires is not after now: a has run out
	if got := revocations(); !slices.Equal(got, want[1:]) {
		t.Fatalf("Revocations = %+v at a's Expires, want %+v", got, want[1:])
	}
	// A revocation that ran out is not merged with the next one.
	revoke("a", t0.Add(-time.Hour), t0.Add(90*time.Minute))
	want[0] = longpoll.Revocation{Subject: "a", Before: t0.Add(-time.Hour), Expires: t0.Add(90 * time.Minute)}
	if got := revocations(); !slices.Equal(got, want) {
		t.Fatalf("Revocations = %+v, want %+v", got, want)
	}

	// The janitor forgets what ran out.
	clk.Set(t0.Add(90 * time.Minute))
	b.reclaim()
	b.admin.mu.Lock()
	n := len(b.admin.revocations)
	b.admin.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d revocations kept after reclaim, want 1", n)
	}
}

func TestNodesClock(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithClock(clk.Now))
	if err := b.Heartbeat(t.Context(), "n", json.RawMessage(`{}`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(t.Context(), "m", nil, 0); err == nil {
		t.Fatal("Heartbeat with ttl 0: no error")
	}
	nodes := func() []longpoll.NodeRecord {
		t.Helper()
		ns, err := b.Nodes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	clk.Set(t0.Add(10*time.Second - time.Nanosecond))
	if ns := nodes(); len(ns) != 1 || !ns[0].Seen.Equal(t0) || ns[0].Seen.Location() != time.UTC {
		t.Fatalf("Nodes = %+v just before the ttl ran out, want n seen at %v", ns, t0)
	}
	clk.Set(t0.Add(10 * time.Second))
	if ns := nodes(); len(ns) != 0 {
		t.Fatalf("Nodes = %+v once the ttl ran out, want none", ns)
	}
	b.reclaim()
	b.admin.mu.Lock()
	n := len(b.admin.nodes)
	b.admin.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d heartbeats kept after reclaim, want none", n)
	}
}

// TestAdminConcurrent races the admin calls with appends on a few topics;
// the race detector and checkInvariants judge.
func TestAdminConcurrent(t *testing.T) {
	b := newTest(t, WithMaxMessages(5))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			ctx := context.Background()
			for i := range 300 {
				topic := fmt.Sprint("t", (i+w)%4)
				switch (i + w) % 5 {
				case 0:
					_, _ = b.DeleteTopic(ctx, topic)
				case 1:
					_, _ = b.Topics(ctx, "t", fmt.Sprint("t", i%3), 2)
				case 2:
					_ = b.Revoke(ctx, longpoll.Revocation{Subject: topic, Expires: time.Now().Add(time.Hour)})
					_ = b.Heartbeat(ctx, topic, json.RawMessage(`{}`), time.Hour)
				default:
					_, _ = b.Append(ctx, []longpoll.Publication{pubID(topic, fmt.Sprint(i%7), "1"), pub("t9", "2")})
				}
			}
		})
	}
	stop := b.WatchRevocations(func(longpoll.Revocation) {})
	wg.Wait()
	stop()
	ts := mustTopics(t, b, "", "", 100)
	for _, ti := range ts {
		st := mustStat(t, b, ti.Topic)
		if st.Epoch != ti.Epoch || st.Head != ti.Head || st.Oldest != ti.Oldest || ti.Retained != ti.Head-ti.Oldest+1 {
			t.Fatalf("listed %+v, Stat %+v", ti, st)
		}
	}
}
