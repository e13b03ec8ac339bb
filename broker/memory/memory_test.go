package memory

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/brokertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) longpoll.Broker {
		b := New()
		t.Cleanup(func() { checkInvariants(t, b) })
		return b
	})
}

func TestRetention(t *testing.T) {
	brokertest.RunRetention(t, func(t *testing.T, maxMessages int) longpoll.Broker {
		b := New(WithMaxMessages(maxMessages))
		t.Cleanup(func() { checkInvariants(t, b) })
		return b
	})
}

// clock is a settable clock for WithClock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// newTest returns a broker whose janitor never runs during the test, so
// that reclamation happens only where the test calls reclaim.
func newTest(t *testing.T, opts ...Option) *Broker {
	t.Helper()
	b := New(append([]Option{WithReclaimInterval(1000 * time.Hour)}, opts...)...)
	t.Cleanup(func() {
		checkInvariants(t, b)
		b.Close()
	})
	return b
}

func pub(topic, data string) longpoll.Publication {
	return longpoll.Publication{Topic: topic, Data: json.RawMessage(data)}
}

func pubID(topic, id, data string) longpoll.Publication {
	return longpoll.Publication{Topic: topic, ID: id, Data: json.RawMessage(data)}
}

func size(p longpoll.Publication) int64 { return msgSize(p.Topic, p.ID, p.Data) }

func mustAppend(t *testing.T, b *Broker, pubs ...longpoll.Publication) []longpoll.Receipt {
	t.Helper()
	rs, err := b.Append(t.Context(), pubs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return rs
}

func mustRead(t *testing.T, b *Broker, topic string, from longpoll.Position, limit int) longpoll.Page {
	t.Helper()
	p, err := b.Read(t.Context(), topic, from, limit)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return p
}

func mustStat(t *testing.T, b *Broker, topic string) longpoll.TopicStat {
	t.Helper()
	st, err := b.Stat(t.Context(), topic)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	return st
}

func wantStoreFull(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, longpoll.ErrStoreFull) {
		t.Fatalf("err = %v, want ErrStoreFull", err)
	}
}

func wantPage(t *testing.T, p longpoll.Page, gap *longpoll.Gap, first, last uint64, next longpoll.Position) {
	t.Helper()
	switch {
	case gap == nil && p.Gap != nil:
		t.Fatalf("gap %+v, want none", *p.Gap)
	case gap != nil && (p.Gap == nil || *p.Gap != *gap):
		t.Fatalf("gap %+v, want %+v", p.Gap, *gap)
	}
	var want []uint64
	for s := first; s != 0 && s <= last; s++ {
		want = append(want, s)
	}
	var got []uint64
	for _, m := range p.Messages {
		got = append(got, m.Seq)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("seqs %v, want %v", got, want)
	}
	if p.Next != next {
		t.Fatalf("Next = %+v, want %+v", p.Next, next)
	}
}

// checkInvariants checks the broker's bookkeeping against its logs.
func checkInvariants(t *testing.T, b *Broker) {
	t.Helper()
	var topics, total int64
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		for name, l := range sh.topics {
			topics++
			if name != l.name || l.epoch == 0 {
				t.Errorf("log %q: name %q epoch %d", name, l.name, l.epoch)
			}
			// Slots outside buf[off:] must not keep data alive.
			for j, m := range l.buf[:l.off] {
				if m.Data != nil || m.ID != "" {
					t.Errorf("log %q: dropped slot %d still holds %+v", name, j, m)
				}
			}
			for j, m := range l.buf[len(l.buf):cap(l.buf)] {
				if m.Data != nil || m.ID != "" {
					t.Errorf("log %q: spare slot %d holds %+v", name, j, m)
				}
			}
			live := l.live()
			var bytes, data int64
			ids := 0
			for j, m := range live {
				bytes += msgSize(m.Topic, m.ID, m.Data)
				data += int64(len(m.Data))
				if m.Seq != l.firstSeq()+uint64(j) || m.Topic != name {
					t.Errorf("log %q: message %d is %+v", name, j, m)
				}
				if j > 0 && m.Time.Before(live[j-1].Time) {
					t.Errorf("log %q: time goes back at seq %d", name, m.Seq)
				}
				if m.ID != "" {
					ids++
					if l.ids[m.ID] != m.Seq {
						t.Errorf("log %q: id %q maps to %d, want %d", name, m.ID, l.ids[m.ID], m.Seq)
					}
				}
			}
			if ids != len(l.ids) {
				t.Errorf("log %q: %d ids indexed, %d retained", name, len(l.ids), ids)
			}
			if bytes != l.bytes {
				t.Errorf("log %q: counts %d bytes, holds %d", name, l.bytes, bytes)
			}
			if data != l.data {
				t.Errorf("log %q: counts %d bytes of data, holds %d", name, l.data, data)
			}
			if len(live) > 1 && (len(live) > b.cfg.maxMessages || bytes > b.cfg.maxBytes) {
				t.Errorf("log %q: holds %d messages, %d bytes", name, len(live), bytes)
			}
			total += bytes
		}
		sh.mu.RUnlock()
	}
	if b.closed.Load() {
		return
	}
	if n := b.topics.Load(); n != topics {
		t.Errorf("topic count %d, holds %d", n, topics)
	}
	if n := b.totalBytes.Load(); n != total {
		t.Errorf("total bytes %d, holds %d", n, total)
	}
}

func TestMaxTotalBytes(t *testing.T) {
	p := pub("t1", "1")
	b := newTest(t, WithMaxTotalBytes(3*size(p)))
	mustAppend(t, b, p, p)
	mustAppend(t, b, p)

	_, err := b.Append(t.Context(), []longpoll.Publication{pub("t2", "1")})
	wantStoreFull(t, err)
	// A batch of which a part would fit appends nothing either.
	_, err = b.Append(t.Context(), []longpoll.Publication{pub("t3", "1"), pub("t1", "1")})
	wantStoreFull(t, err)
	if st := mustStat(t, b, "t1"); st.Head != 3 {
		t.Fatalf("t1 head %d after failed appends, want 3", st.Head)
	}
	for _, topic := range []string{"t2", "t3"} {
		if st := mustStat(t, b, topic); st != (longpoll.TopicStat{}) {
			t.Fatalf("%s = %+v after a failed append, want zero", topic, st)
		}
	}
	if n := b.topics.Load(); n != 1 {
		t.Fatalf("failed appends left the topic count at %d, want 1", n)
	}
	// A message larger than the whole store never fits.
	_, err = b.Append(t.Context(), []longpoll.Publication{pub("t1", strings.Repeat("1", 1000))})
	wantStoreFull(t, err)
}

func TestMaxTotalBytesCountsDrops(t *testing.T) {
	// A full store still takes appends to topics that drop as much as they
	// add: retention makes the room.
	p := pub("a", "1")
	b := newTest(t, WithMaxMessages(1), WithMaxTotalBytes(2*size(p)))
	mustAppend(t, b, p, pub("b", "1"))
	for range 3 {
		mustAppend(t, b, p)
	}
	if rs := mustAppend(t, b, pub("a", "1"), pub("b", "1")); rs[0].Seq != 5 || rs[1].Seq != 2 {
		t.Fatalf("receipts %+v, want a:5 b:2", rs)
	}
	_, err := b.Append(t.Context(), []longpoll.Publication{pub("c", "1")})
	wantStoreFull(t, err)
	// A bigger message needs more than its topic frees.
	_, err = b.Append(t.Context(), []longpoll.Publication{pub("a", "12")})
	wantStoreFull(t, err)
}

func TestMaxTopics(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithMaxTopics(2), WithMaxAge(time.Hour), WithClock(clk.Now))
	stop := b.Watch("watched", func(string) {}) // watching creates no topic
	defer stop()
	mustAppend(t, b, pub("a", "1"))
	mustAppend(t, b, pub("b", "1"), pub("b", "2"))

	_, err := b.Append(t.Context(), []longpoll.Publication{pub("c", "1")})
	wantStoreFull(t, err)
	_, err = b.Append(t.Context(), []longpoll.Publication{pub("a", "2"), pub("c", "1")})
	wantStoreFull(t, err)
	if st := mustStat(t, b, "a"); st.Head != 1 {
		t.Fatalf("a head %d after a failed batch, want 1", st.Head)
	}
	mustAppend(t, b, pub("a", "2"), pub("b", "3")) // existing topics still take appends

	// A forgotten topic makes room for a new one.
	clk.Set(t0.Add(time.Hour + time.Second))
	mustAppend(t, b, pub("b", "4"))
	b.reclaim()
	if rs := mustAppend(t, b, pub("c", "1")); rs[0].Seq != 1 {
		t.Fatalf("c receipt %+v", rs[0])
	}
	_, err = b.Append(t.Context(), []longpoll.Publication{pub("watched", "1")})
	wantStoreFull(t, err)
}

func TestMaxBytesPerTopic(t *testing.T) {
	p := pub("t", "xx")
	b := newTest(t, WithMaxBytes(3*size(p)))
	rs := mustAppend(t, b, p, p, p, p)
	mustAppend(t, b, p)
	e := rs[0].Epoch
	if st := mustStat(t, b, "t"); st != (longpoll.TopicStat{Epoch: e, Head: 5, Oldest: 3}) {
		t.Fatalf("Stat = %+v, want head 5 oldest 3", st)
	}
	wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 10),
		&longpoll.Gap{Topic: "t", Reason: longpoll.GapExpired, Missed: 2}, 3, 5, longpoll.Position{Epoch: e, Seq: 5})

	// A message larger than MaxBytes is kept, alone, until the next one.
	big := pub("t", `"`+strings.Repeat("x", 500)+`"`)
	mustAppend(t, b, big)
	if st := mustStat(t, b, "t"); st.Head != 6 || st.Oldest != 6 {
		t.Fatalf("Stat = %+v, want head 6 oldest 6", st)
	}
	mustAppend(t, b, p)
	if st := mustStat(t, b, "t"); st.Head != 7 || st.Oldest != 7 {
		t.Fatalf("Stat = %+v, want head 7 oldest 7", st)
	}
	if n := b.totalBytes.Load(); n != size(p) {
		t.Fatalf("total bytes %d, want %d", n, size(p))
	}
}

func TestAgeExpiry(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithMaxAge(time.Hour), WithClock(clk.Now))
	e := mustAppend(t, b, pubID("t", "a", "1"))[0].Epoch
	clk.Set(t0.Add(30 * time.Minute))
	mustAppend(t, b, pub("t", "2"))
	clk.Set(t0.Add(50 * time.Minute))
	mustAppend(t, b, pub("t", "3"))
	head := longpoll.Position{Epoch: e, Seq: 3}
	expired := func(n uint64) *longpoll.Gap {
		return &longpoll.Gap{Topic: "t", Reason: longpoll.GapExpired, Missed: n}
	}

	clk.Set(t0.Add(time.Hour)) // exactly MaxAge old is still readable
	wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 10), nil, 1, 3, head)

	clk.Set(t0.Add(time.Hour + time.Nanosecond))
	if st := mustStat(t, b, "t"); st != (longpoll.TopicStat{Epoch: e, Head: 3, Oldest: 2}) {
		t.Fatalf("Stat = %+v, want oldest 2", st)
	}
	wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 10), expired(1), 2, 3, head)
	wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: e, Seq: 1}, 10), nil, 2, 3, head)
	if n := b.totalBytes.Load(); n != size(pubID("t", "a", "1"))+2*size(pub("t", "2")) {
		t.Fatalf("total bytes %d: the expired message must not be reclaimed by a read", n)
	}

	// Nothing retained: the gap counts up to the head, and Next is there.
	clk.Set(t0.Add(50*time.Minute + time.Hour + time.Nanosecond))
	if st := mustStat(t, b, "t"); st != (longpoll.TopicStat{Epoch: e, Head: 3}) {
		t.Fatalf("Stat = %+v, want head 3, nothing retained", st)
	}
	wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 10), expired(3), 0, 0, head)
	wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: e, Seq: 1}, 10), expired(2), 0, 0, head)
	wantPage(t, mustRead(t, b, "t", head, 10), nil, 0, 0, head)
	wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: e + 1, Seq: 1}, 10),
		&longpoll.Gap{Topic: "t", Reason: longpoll.GapReset}, 0, 0, head)

	// The id of an expired message is free again, and the log goes on.
	r := mustAppend(t, b, pubID("t", "a", "4"))[0]
	if r != (longpoll.Receipt{Topic: "t", Epoch: e, Seq: 4}) {
		t.Fatalf("receipt %+v, want seq 4 in epoch %d, not a duplicate", r, e)
	}
	wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: e, Seq: 1}, 10), expired(2), 4, 4,
		longpoll.Position{Epoch: e, Seq: 4})
	if n := b.totalBytes.Load(); n != size(pubID("t", "a", "4")) {
		t.Fatalf("total bytes %d after the append reclaimed expired messages", n)
	}
}

func TestReadLimitZero(t *testing.T) {
	b := newTest(t, WithMaxMessages(3))
	var pubs []longpoll.Publication
	for range 5 {
		pubs = append(pubs, pub("t", "1"))
	}
	e := mustAppend(t, b, pubs...)[0].Epoch
	// No room for messages: Next moves past the gap only.
	wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: e, Seq: 1}, 0),
		&longpoll.Gap{Topic: "t", Reason: longpoll.GapExpired, Missed: 1}, 0, 0, longpoll.Position{Epoch: e, Seq: 2})
	wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: e, Seq: 9}, 0),
		&longpoll.Gap{Topic: "t", Reason: longpoll.GapReset}, 0, 0, longpoll.Position{Epoch: e, Seq: 2})
	wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: e, Seq: 3}, 0), nil, 0, 0, longpoll.Position{Epoch: e, Seq: 3})
	wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: e, Seq: 3}, -1), nil, 0, 0, longpoll.Position{Epoch: e, Seq: 3})
}

func TestTimeNeverDecreases(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithClock(clk.Now))
	mustAppend(t, b, pub("t", "1"))
	clk.Set(t0.Add(-time.Hour).In(time.FixedZone("X", 3600))) // the wall clock steps back
	mustAppend(t, b, pub("t", "2"), pub("u", "1"))
	clk.Set(t0.Add(time.Second))
	mustAppend(t, b, pub("t", "3"))

	msgs := mustRead(t, b, "t", longpoll.Position{}, 10).Messages
	want := []time.Time{t0, t0, t0.Add(time.Second)}
	for i, m := range msgs {
		if !m.Time.Equal(want[i]) || m.Time.Location() != time.UTC {
			t.Fatalf("message %d time %v, want %v UTC", m.Seq, m.Time, want[i])
		}
	}
	if u := mustRead(t, b, "u", longpoll.Position{}, 10).Messages[0].Time; !u.Equal(t0.Add(-time.Hour)) || u.Location() != time.UTC {
		t.Fatalf("another topic's time %v, want its own clock reading in UTC", u)
	}
}

func TestForgottenTopic(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithMaxAge(time.Hour), WithClock(clk.Now))
	e := mustAppend(t, b, pub("t", "1"), pub("t", "2"))[0].Epoch
	old := longpoll.Position{Epoch: e, Seq: 2}

	clk.Set(t0.Add(time.Hour - time.Nanosecond))
	b.reclaim() // not expired yet
	if st := mustStat(t, b, "t"); st.Epoch != e || st.Oldest != 1 {
		t.Fatalf("Stat = %+v before expiry", st)
	}

	clk.Set(t0.Add(time.Hour + time.Nanosecond))
	b.reclaim()
	if st := mustStat(t, b, "t"); st != (longpoll.TopicStat{}) {
		t.Fatalf("Stat of a forgotten topic = %+v, want zero", st)
	}
	if n, m := b.topics.Load(), b.totalBytes.Load(); n != 0 || m != 0 {
		t.Fatalf("forgotten topic still counted: %d topics, %d bytes", n, m)
	}
	wantPage(t, mustRead(t, b, "t", old, 10), &longpoll.Gap{Topic: "t", Reason: longpoll.GapReset}, 0, 0, longpoll.Position{})

	r := mustAppend(t, b, pub("t", "3"))[0]
	if r.Epoch == e || r.Epoch == 0 || r.Seq != 1 {
		t.Fatalf("receipt %+v, want seq 1 in a new epoch", r)
	}
	wantPage(t, mustRead(t, b, "t", old, 10), &longpoll.Gap{Topic: "t", Reason: longpoll.GapReset}, 1, 1,
		longpoll.Position{Epoch: r.Epoch, Seq: 1})
}

func TestWatchedTopicNotForgotten(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithMaxAge(time.Hour), WithClock(clk.Now))
	e := mustAppend(t, b, pub("t", "1"))[0].Epoch
	stop := b.Watch("t", func(string) {})
	clk.Set(t0.Add(2 * time.Hour))
	b.reclaim()
	if st := mustStat(t, b, "t"); st != (longpoll.TopicStat{Epoch: e, Head: 1}) {
		t.Fatalf("Stat of a watched expired topic = %+v, want its epoch and head", st)
	}
	if n := b.totalBytes.Load(); n != 0 {
		t.Fatalf("expired messages of a watched topic not reclaimed: %d bytes", n)
	}
	stop()
	b.reclaim()
	if st := mustStat(t, b, "t"); st != (longpoll.TopicStat{}) {
		t.Fatalf("Stat after stop and reclaim = %+v, want zero", st)
	}
}

func TestJanitorReclaimsInBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(WithMaxAge(time.Hour), WithReclaimInterval(time.Minute))
		defer b.Close()
		mustAppend(t, b, pub("t", "1"))
		mustAppend(t, b, pub("u", "1"))

		time.Sleep(time.Hour + 30*time.Second) // "t" expired, the janitor not run since
		mustAppend(t, b, pub("u", "2"))
		synctest.Wait()
		if n := b.topics.Load(); n != 2 {
			t.Fatalf("%d topics before the janitor ran, want 2", n)
		}

		time.Sleep(time.Minute)
		synctest.Wait()
		if n, m := b.topics.Load(), b.totalBytes.Load(); n != 1 || m != size(pub("u", "2")) {
			t.Fatalf("after the janitor ran: %d topics, %d bytes; want 1 topic, %d bytes", n, m, size(pub("u", "2")))
		}
		if st := mustStat(t, b, "t"); st != (longpoll.TopicStat{}) {
			t.Fatalf("Stat of a forgotten topic = %+v", st)
		}
	})
}

func TestCloseStopsJanitor(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b := New(WithReclaimInterval(time.Millisecond))
	mustAppend(t, b, pub("t", "1"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); !errors.Is(err, longpoll.ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
}

func TestLogMemoryBounded(t *testing.T) {
	b := newTest(t, WithMaxMessages(10))
	for i := range 10_000 {
		mustAppend(t, b, pubID("t", fmt.Sprint("id", i), "1"))
	}
	sh := &b.shards[b.shardIndex("t")]
	l := sh.topics["t"]
	if c := cap(l.buf); c > 20 {
		t.Fatalf("10 messages kept in an array of %d", c)
	}
	if len(l.ids) != 10 {
		t.Fatalf("id index holds %d entries, want 10", len(l.ids))
	}
}

func TestShrinkAfterBurst(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithMaxAge(time.Hour), WithClock(clk.Now))
	for range 500 {
		mustAppend(t, b, pub("t", "1"))
	}
	clk.Set(t0.Add(time.Hour + time.Second))
	mustAppend(t, b, pub("t", "2"))
	b.reclaim()
	l := b.shards[b.shardIndex("t")].topics["t"]
	if c := cap(l.buf); c > 16 {
		t.Fatalf("1 message kept in an array of %d after reclaim", c)
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []Option{
		WithMaxMessages(0), WithMaxAge(0), WithMaxBytes(0), WithMaxTopics(-1),
		WithMaxTotalBytes(0), WithReclaimInterval(-time.Second), WithClock(nil),
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New with an invalid option did not panic")
				}
			}()
			New(o).Close()
		}()
	}
}

func TestWakeOutsideLock(t *testing.T) {
	// A wake that calls back into the broker would deadlock if it ran
	// under a shard lock.
	b := newTest(t)
	done := make(chan longpoll.TopicStat, 1)
	stop := b.Watch("t", func(topic string) {
		st, _ := b.Stat(t.Context(), topic)
		done <- st
	})
	defer stop()
	mustAppend(t, b, pub("t", "1"), pub("u", "1"))
	select {
	case st := <-done:
		if st.Head != 1 {
			t.Fatalf("Stat from wake = %+v, want head 1", st)
		}
	default:
		t.Fatal("wake not called before Append returned") // it runs on the appending goroutine
	}
}

func TestDataCopied(t *testing.T) {
	b := newTest(t)
	data := []byte(`"abc"`)
	mustAppend(t, b, longpoll.Publication{Topic: "t", Data: data})
	data[1] = 'X'
	if got := mustRead(t, b, "t", longpoll.Position{}, 1).Messages[0].Data; string(got) != `"abc"` {
		t.Fatalf("data %s after the publisher changed its buffer", got)
	}
}

// TestRandomized drives random batches through tight limits and checks
// the bookkeeping after each, and that a failed append changes nothing.
func TestRandomized(t *testing.T) {
	clk := newClock()
	b := newTest(t, WithMaxMessages(7), WithMaxBytes(900), WithMaxTotalBytes(3000),
		WithMaxTopics(4), WithMaxAge(time.Minute), WithClock(clk.Now))
	rng := rand.New(rand.NewPCG(1, 2))
	topics := []string{"a", "b", "c", "d", "e"}
	now := t0
	fails := 0
	for i := range 3000 {
		now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		clk.Set(now)
		var pubs []longpoll.Publication
		for range 1 + rng.IntN(5) {
			p := pub(topics[rng.IntN(len(topics))], `"`+strings.Repeat("x", rng.IntN(200))+`"`)
			if rng.IntN(2) == 0 {
				p.ID = fmt.Sprint(rng.IntN(10))
			}
			pubs = append(pubs, p)
		}
		before := map[string]longpoll.TopicStat{}
		for _, tp := range topics {
			before[tp] = mustStat(t, b, tp)
		}
		rs, err := b.Append(t.Context(), pubs)
		if err != nil {
			wantStoreFull(t, err)
			fails++
			for _, tp := range topics {
				if st := mustStat(t, b, tp); st != before[tp] {
					t.Fatalf("op %d: failed append changed %s from %+v to %+v", i, tp, before[tp], st)
				}
			}
		} else {
			next := map[string]uint64{}
			for _, tp := range topics {
				next[tp] = before[tp].Head
			}
			for j, r := range rs {
				if r.Duplicate {
					continue
				}
				next[r.Topic]++
				if r.Seq != next[r.Topic] {
					t.Fatalf("op %d: receipt %d = %+v, want seq %d", i, j, r, next[r.Topic])
				}
			}
		}
		if i%100 == 0 {
			b.reclaim()
		}
		checkInvariants(t, b)
		if t.Failed() {
			t.Fatalf("op %d", i)
		}
	}
	if fails == 0 || fails > 2500 {
		t.Fatalf("%d of 3000 appends failed: the limits are not exercised", fails)
	}
}
