package bolt

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

// holdWriter takes bbolt's write lock, so that the committer blocks on
// its next transaction, and returns the function that releases it.
func holdWriter(t *testing.T, b *Broker) (release func()) {
	t.Helper()
	tx, err := b.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	return func() { _ = tx.Rollback() }
}

// waitQueue waits until n requests were ever queued and left of them
// are still waiting to be taken by the committer.
func waitQueue(b *Broker, n uint64, left int) {
	for {
		b.qmu.Lock()
		q := len(b.queue)
		b.qmu.Unlock()
		if b.enqueued.Load() == n && q == left {
			return
		}
		runtime.Gosched()
	}
}

type result struct {
	rs  []longpoll.Receipt
	err error
}

func appendAsync(ctx context.Context, b *Broker, pubs ...longpoll.Publication) chan result {
	c := make(chan result, 1)
	go func() {
		rs, err := b.Append(ctx, pubs)
		c <- result{rs, err}
	}()
	return c
}

func TestAppendCancelled(t *testing.T) {
	b := openTest(t)
	mustAppend(t, b, pub("t", "1"))
	release := holdWriter(t, b)

	// The first request is taken by the committer, which waits for the
	// lock; cancelling it does not undo it.
	ctx1, cancel1 := context.WithCancel(t.Context())
	first := appendAsync(ctx1, b, pub("t", "2"))
	waitQueue(b, 2, 0)
	// The second stays queued behind it; cancelling it withdraws it.
	ctx2, cancel2 := context.WithCancel(t.Context())
	second := appendAsync(ctx2, b, pub("t", "3"), pub("new", "1"))
	waitQueue(b, 3, 1)
	cancel2()
	select {
	case r := <-second:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled queued Append: %+v, want context.Canceled", r)
		}
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("a cancelled queued Append did not return")
	}
	cancel1()
	release()
	if r := <-first; r.err != nil || r.rs[0].Seq != 2 {
		t.Fatalf("Append cancelled after it was taken: %+v, want seq 2", r)
	}
	mustAppend(t, b, pub("t", "4"))
	if st := mustStat(t, b, "t"); st.Head != 3 {
		t.Fatalf("head %d, want 3: the withdrawn Append must leave nothing", st.Head)
	}
	if st := mustStat(t, b, "new"); st != (longpoll.TopicStat{}) {
		t.Fatalf("Stat(new) = %+v, want zero", st)
	}
}

// Requests that share a transaction succeed or fail alone.
func TestAppendBatchIsolation(t *testing.T) {
	b := openTest(t, WithMaxTopics(3))
	mustAppend(t, b, pub("a", "1"))
	// A value where a new topic's ids bucket belongs makes a write with
	// an ID fail half way.
	if err := b.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketIDs).Put([]byte("broken"), []byte("x"))
	}); err != nil {
		t.Fatal(err)
	}

	release := holdWriter(t, b)
	ok1 := appendAsync(t.Context(), b, pub("a", "2"))
	waitQueue(b, 2, 0) // the committer took it and waits for the lock
	full := appendAsync(t.Context(), b, pub("a", "x"), pub("b", "1"), pub("c", "1"), pub("d", "1"))
	waitQueue(b, 3, 1)
	broken := appendAsync(t.Context(), b, pub("a", "y"), pubID("broken", "id", "1"))
	waitQueue(b, 4, 2)
	ok2 := appendAsync(t.Context(), b, pub("a", "3"), pub("b", "1"))
	waitQueue(b, 5, 3)
	release()

	if r := <-ok1; r.err != nil || r.rs[0].Seq != 2 {
		t.Fatalf("first: %+v", r)
	}
	if r := <-full; !errors.Is(r.err, longpoll.ErrStoreFull) {
		t.Fatalf("over MaxTopics: %+v, want ErrStoreFull", r)
	}
	if r := <-broken; !errors.Is(r.err, longpoll.ErrUnavailable) {
		t.Fatalf("failing write: %+v, want ErrUnavailable", r)
	}
	if r := <-ok2; r.err != nil || r.rs[0].Seq != 3 || r.rs[1].Seq != 1 {
		t.Fatalf("last: %+v, want a:3 b:1", r)
	}
	p := mustRead(t, b, "a", longpoll.Position{}, 10)
	wantSeqs(t, p.Messages, 1, 3)
	if string(p.Messages[2].Data) != "3" {
		t.Fatalf("a:3 holds %s", p.Messages[2].Data)
	}
	if raw := inspect(t, b, "broken"); raw.exists || raw.topicsCnt != 2 {
		t.Fatalf("after the batch: %+v, want 2 topics and no broken", raw)
	}
}

func TestWatchWakesAfterCommit(t *testing.T) {
	b := openTest(t)
	seen := make(chan longpoll.TopicStat, 10)
	stop := b.Watch("w", func(topic string) {
		// The append is visible by the time it wakes.
		st, err := b.Stat(context.Background(), topic)
		if err != nil {
			t.Error(err)
		}
		seen <- st
	})
	defer stop()
	mustAppend(t, b, pub("other", "1"), pub("w", "1"), pub("w", "2"))
	select {
	case st := <-seen:
		if st.Head != 2 {
			t.Fatalf("woken with head %d, want 2", st.Head)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up")
	}
	select {
	case st := <-seen:
		t.Fatalf("woken twice for one Append (%+v)", st)
	default:
	}
}
