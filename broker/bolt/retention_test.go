package bolt

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

func TestAgeExpiryAtReadTime(t *testing.T) {
	clock := newFakeClock()
	b := openTest(t, WithClock(clock.Now), WithMaxAge(time.Hour))
	rs := appendN(t, b, "age", 1, 3)
	epoch := rs[0].Epoch
	clock.Advance(30 * time.Minute)
	appendN(t, b, "age", 4, 2)
	mustAppend(t, b, pubID("age", "late-id", "6"))

	// Exactly MaxAge old is still retained.
	clock.Advance(30 * time.Minute)
	if st := mustStat(t, b, "age"); st != (longpoll.TopicStat{Epoch: epoch, Head: 6, Oldest: 1}) {
		t.Fatalf("Stat at MaxAge = %+v, want oldest 1", st)
	}

	// One nanosecond later the first three are gone for readers, though
	// nothing has deleted them yet.
	clock.Advance(time.Nanosecond)
	if raw := inspect(t, b, "age"); raw.stored != 6 {
		t.Fatalf("%d messages stored, want 6: this test needs them not reclaimed", raw.stored)
	}
	if st := mustStat(t, b, "age"); st != (longpoll.TopicStat{Epoch: epoch, Head: 6, Oldest: 4}) {
		t.Fatalf("Stat = %+v, want oldest 4", st)
	}
	for _, from := range []longpoll.Position{{}, {Epoch: epoch}, {Epoch: epoch, Seq: 1}} {
		p := mustRead(t, b, "age", from, 10)
		want := &longpoll.Gap{Topic: "age", Reason: longpoll.GapExpired, Missed: 3 - from.Seq}
		if p.Gap == nil || *p.Gap != *want {
			t.Fatalf("Read from %+v: gap %+v, want %+v", from, p.Gap, want)
		}
		wantSeqs(t, p.Messages, 4, 6)
	}
	p := mustRead(t, b, "age", longpoll.Position{Epoch: epoch, Seq: 3}, 10)
	if p.Gap != nil {
		t.Fatalf("Read after the expired ones: gap %+v", *p.Gap)
	}
	wantSeqs(t, p.Messages, 4, 6)
	// An epoch mismatch reads from the oldest retained.
	p = mustRead(t, b, "age", longpoll.Position{Epoch: epoch + 1, Seq: 1}, 10)
	if p.Gap == nil || p.Gap.Reason != longpoll.GapReset {
		t.Fatalf("wrong epoch: gap %+v, want reset", p.Gap)
	}
	wantSeqs(t, p.Messages, 4, 6)

	// All expired: nothing retained, the head stays.
	clock.Advance(31 * time.Minute)
	if st := mustStat(t, b, "age"); st != (longpoll.TopicStat{Epoch: epoch, Head: 6}) {
		t.Fatalf("Stat with everything expired = %+v, want head 6 and no oldest", st)
	}
	p = mustRead(t, b, "age", longpoll.Position{Epoch: epoch, Seq: 2}, 10)
	if p.Gap == nil || *p.Gap != (longpoll.Gap{Topic: "age", Reason: longpoll.GapExpired, Missed: 4}) || len(p.Messages) != 0 {
		t.Fatalf("Read with everything expired = %+v, want a gap of 4 and no message", p)
	}
	if p.Next != (longpoll.Position{Epoch: epoch, Seq: 6}) {
		t.Fatalf("Next = %+v, want after the gap", p.Next)
	}
	at := longpoll.Position{Epoch: epoch, Seq: 6}
	if p = mustRead(t, b, "age", at, 10); p.Gap != nil || len(p.Messages) != 0 || p.Next != at {
		t.Fatalf("Read at the head = %+v, want nothing", p)
	}

	// The next append continues the log, drops the expired messages, and
	// an expired message's ID is free again.
	r := mustAppend(t, b, pubID("age", "late-id", "7"))[0]
	if r.Epoch != epoch || r.Seq != 7 || r.Duplicate {
		t.Fatalf("append after expiry: %+v, want seq 7 in the same epoch", r)
	}
	if raw := inspect(t, b, "age"); raw.stored != 1 || raw.ids != 1 {
		t.Fatalf("after the append: %d messages, %d ids stored, want 1 and 1", raw.stored, raw.ids)
	}
}

func TestMaxBytes(t *testing.T) {
	data := strings.Repeat("x", 100)
	size := int64(MessageSize("bytes", "", []byte(data)))
	b := openTest(t, WithMaxBytes(3*size))
	for i := range 5 {
		mustAppend(t, b, pub("bytes", data))
		if raw := inspect(t, b, "bytes"); raw.st.bytes != uint64(min(i+1, 3))*uint64(size) {
			t.Fatalf("after %d appends: %d bytes counted, want %d", i+1, raw.st.bytes, min(i+1, 3)*int(size))
		}
	}
	if st := mustStat(t, b, "bytes"); st.Oldest != 3 || st.Head != 5 {
		t.Fatalf("Stat = %+v, want 3..5", st)
	}
	// A message larger than the limit is kept, alone.
	mustAppend(t, b, pub("bytes", `"`+strings.Repeat("y", int(4*size))+`"`))
	if st := mustStat(t, b, "bytes"); st.Oldest != 6 || st.Head != 6 {
		t.Fatalf("Stat after a large message = %+v, want 6..6", st)
	}
	if raw := inspect(t, b, "bytes"); raw.stored != 1 {
		t.Fatalf("%d messages stored, want 1", raw.stored)
	}
}

func TestMaxTopics(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	opts := []Option{WithMaxTopics(2), WithClock(clock.Now), WithMaxAge(time.Hour), manualReclaim}
	b := openDir(t, dir, opts...)
	mustAppend(t, b, pub("a", "1"))
	mustAppend(t, b, pub("b", "1"), pub("b", "2"))
	_, err := b.Append(t.Context(), []longpoll.Publication{pub("a", "2"), pub("c", "1")})
	if !errors.Is(err, longpoll.ErrStoreFull) {
		t.Fatalf("Append to a third topic: %v, want ErrStoreFull", err)
	}
	if st := mustStat(t, b, "a"); st.Head != 1 {
		t.Fatalf("a's head %d after a refused append, want 1: all or nothing", st.Head)
	}
	if st := mustStat(t, b, "c"); st != (longpoll.TopicStat{}) {
		t.Fatalf("c = %+v after a refused append", st)
	}
	mustAppend(t, b, pub("a", "2")) // existing topics are fine
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// The count survives a restart, and forgetting a topic makes room.
	b = openDir(t, dir, opts...)
	if _, err := b.Append(t.Context(), []longpoll.Publication{pub("c", "1")}); !errors.Is(err, longpoll.ErrStoreFull) {
		t.Fatalf("after restart: %v, want ErrStoreFull", err)
	}
	clock.Advance(time.Hour + 1)
	mustAppend(t, b, pub("b", "3"))
	if _, err := b.reclaim(); err != nil {
		t.Fatal(err)
	}
	if raw := inspect(t, b, "a"); raw.exists || raw.topicsCnt != 1 {
		t.Fatalf("after reclaiming: a exists %v, %d topics counted; want a forgotten, 1 topic", raw.exists, raw.topicsCnt)
	}
	mustAppend(t, b, pub("c", "1"))
}

// manualReclaim keeps the background reclaimer from running during a test
// that calls reclaim itself and counts what it did: the reclaimer's tick is
// in real time, and on a loaded machine a test can take longer than one.
var manualReclaim = WithReclaimInterval(time.Hour)

func TestReclaim(t *testing.T) {
	clock := newFakeClock()
	b := openTest(t, WithClock(clock.Now), WithMaxAge(time.Hour), manualReclaim)
	idle := appendN(t, b, "idle", 1, 3)
	mustAppend(t, b, pubID("idle", "some-id", "4"))
	watched := appendN(t, b, "watched", 1, 2)
	clock.Advance(40 * time.Minute)
	appendN(t, b, "half", 1, 2)
	clock.Advance(40 * time.Minute)
	appendN(t, b, "half", 3, 2)
	clock.Advance(30 * time.Minute)
	// Now idle and watched are expired (110 min old), half is half
	// expired (70 and 30 min old).

	wake := make(chan string, 10)
	stop := b.Watch("watched", func(topic string) {
		select {
		case wake <- topic:
		default:
		}
	})

	st, err := b.reclaim()
	if err != nil {
		t.Fatal(err)
	}
	if st.Deleted != 4+2+2 || st.Forgotten != 1 {
		t.Fatalf("reclaim = %+v, want 8 deleted, 1 forgotten", st)
	}
	// idle is forgotten entirely.
	if raw := inspect(t, b, "idle"); raw.exists || raw.stored != 0 || raw.ids != 0 || raw.dueKeys != 0 {
		t.Fatalf("idle after reclaim: %+v, want no trace", raw)
	}
	if s := mustStat(t, b, "idle"); s != (longpoll.TopicStat{}) {
		t.Fatalf("Stat(idle) = %+v, want zero", s)
	}
	p := mustRead(t, b, "idle", longpoll.Position{Epoch: idle[0].Epoch, Seq: 4}, 10)
	if p.Gap == nil || p.Gap.Reason != longpoll.GapReset || p.Next != (longpoll.Position{}) {
		t.Fatalf("Read of a forgotten topic = %+v, want GapReset and Next zero", p)
	}
	r := mustAppend(t, b, pubID("idle", "some-id", "new"))[0]
	if r.Epoch == idle[0].Epoch || r.Seq != 1 || r.Duplicate {
		t.Fatalf("append to a forgotten topic: %+v, want seq 1 in a new epoch", r)
	}

	// watched keeps its log, empty, while someone waits on it.
	if s := mustStat(t, b, "watched"); s != (longpoll.TopicStat{Epoch: watched[0].Epoch, Head: 2}) {
		t.Fatalf("Stat(watched) = %+v, want its epoch and head, nothing retained", s)
	}
	if raw := inspect(t, b, "watched"); raw.stored != 0 || raw.dueKeys != 1 {
		t.Fatalf("watched after reclaim: %+v", raw)
	}

	// half lost its first two; its due key moved to when seq 3 expires.
	if raw := inspect(t, b, "half"); raw.stored != 2 || raw.st.first != 3 || raw.dueKeys != 1 ||
		raw.st.due != clock.Now().Add(30*time.Minute).UnixNano()+1 {
		t.Fatalf("half after reclaim: %+v", raw)
	}
	if s, err := b.reclaim(); err != nil || s != (reclaimStats{}) {
		t.Fatalf("second reclaim = %+v, %v; want nothing to do", s, err)
	}

	// Once nobody watches it, the empty topic goes at its next check.
	stop()
	clock.Advance(recheckEmpty)
	if s, err := b.reclaim(); err != nil || s.Forgotten != 1 {
		t.Fatalf("reclaim after the watch stopped = %+v, %v; want 1 forgotten", s, err)
	}
	if raw := inspect(t, b, "watched"); raw.exists || raw.topicsCnt != 2 {
		t.Fatalf("after the last reclaim: %+v, want watched gone and 2 topics (half, idle)", raw)
	}
	select {
	case topic := <-wake:
		t.Fatalf("wake(%q) without an append", topic)
	default:
	}
}

// A backlog larger than one transaction's budget is deleted over several.
func TestReclaimBacklog(t *testing.T) {
	clock := newFakeClock()
	b := openTest(t, WithClock(clock.Now), WithMaxAge(time.Hour), WithMaxMessages(10000), manualReclaim)
	const n = 2*reclaimTxDeletes + 100
	var pubs []longpoll.Publication
	for i := range n {
		pubs = append(pubs, pub("big", fmt.Sprint(i)))
	}
	mustAppend(t, b, pubs[:n/2]...)
	mustAppend(t, b, pubs[n/2:]...)
	for i := range reclaimTxTopics + 10 {
		mustAppend(t, b, pub(fmt.Sprint("small-", i), "1"))
	}
	clock.Advance(2 * time.Hour)
	st, err := b.reclaim()
	if err != nil {
		t.Fatal(err)
	}
	if want := (reclaimStats{Deleted: n + reclaimTxTopics + 10, Forgotten: reclaimTxTopics + 11}); st != want {
		t.Fatalf("reclaim = %+v, want %+v", st, want)
	}
	if raw := inspect(t, b, "big"); raw.exists || raw.topicsCnt != 0 {
		t.Fatalf("after reclaim: %+v, want nothing left", raw)
	}
}

func TestBackgroundReclaim(t *testing.T) {
	clock := newFakeClock()
	passes := make(chan reclaimStats, 100)
	hook := func(c *config) error {
		c.afterReclaim = func(st reclaimStats, err error) {
			if err != nil {
				t.Errorf("background reclaim: %v", err)
			}
			select {
			case passes <- st:
			default:
			}
		}
		return nil
	}
	b := openTest(t, WithClock(clock.Now), WithMaxAge(time.Minute), WithReclaimInterval(time.Millisecond), hook)
	appendN(t, b, "bg", 1, 3)
	clock.Advance(time.Minute + 1)
	timeout := time.After(10 * time.Second)
	for forgotten := 0; forgotten == 0; {
		select {
		case st := <-passes:
			forgotten += st.Forgotten
		case <-timeout:
			t.Fatal("the background reclaimer did not forget the expired topic")
		}
	}
	if raw := inspect(t, b, "bg"); raw.exists || raw.stored != 0 || raw.topicsCnt != 0 {
		t.Fatalf("after background reclaim: %+v", raw)
	}
}
