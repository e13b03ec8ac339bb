// Package brokertest is the conformance suite of longpoll.Broker: every
// broker runs it unchanged from its own tests, so that the contract written
// on longpoll.Broker is checked once and holds for every backend.
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, func(t *testing.T) longpoll.Broker { return mybroker.New(...) })
//		brokertest.RunRetention(t, func(t *testing.T, n int) longpoll.Broker { ... })
//		brokertest.RunAdmin(t, ...)          // the admin capabilities of capability.go
//		brokertest.RunAdminRetention(t, ...) // and their figures under retention
//	}
//
// The suite synchronises with channels only; it waits on a timer only to
// fail a test that would otherwise hang. One exception, in RunAdmin: a
// heartbeat's ttl runs out by the store's own clock, so that test polls
// Nodes for at most NodeTTLWait.
package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

// WakeTimeout is how long the suite waits for a wake-up that must come
// before failing. Brokers whose wake-ups travel over a network must deliver
// them well within it.
const WakeTimeout = 10 * time.Second

// Run runs the conformance suite. newBroker must return a new broker with
// no topics; the suite closes it. Each broker must keep at least 1000
// messages and 1 MiB per topic, for at least ten minutes.
func Run(t *testing.T, newBroker func(t *testing.T) longpoll.Broker) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b longpoll.Broker)
	}{
		{"OrderAndSeq", testOrderAndSeq},
		{"TimeUTCNonDecreasing", testTime},
		{"DataByteIdentical", testData},
		{"StatEmptyAndAfterAppends", testStat},
		{"ReadFromZero", testReadFromZero},
		{"ReadAtHead", testReadAtHead},
		{"ReadLimitPaging", testReadPaging},
		{"ReadUnknownTopic", testReadUnknownTopic},
		{"ReadWrongEpoch", testReadWrongEpoch},
		{"ReadPastHead", testReadPastHead},
		{"MessagesNotShared", testMessagesNotShared},
		{"IdempotentIDs", testIdempotent},
		{"IdempotentIDsInBatch", testIdempotentBatch},
		{"BatchAcrossTopics", testBatch},
		{"ConcurrentPublishersOneTopic", testConcurrentOneTopic},
		{"ConcurrentPublishersManyTopics", testConcurrentManyTopics},
		{"WatchThenReadRacingAppend", testWatchRace},
		{"WatchUnknownTopic", testWatchUnknownTopic},
		{"WatchStop", testWatchStop},
		{"Cancelled", testCancelled},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t)
			t.Cleanup(func() { _ = b.Close() })
			tt.fn(t, b)
		})
	}
}

// RunRetention runs the tests of count-based retention. newBroker must
// return a new broker with no topics that keeps at most maxMessages messages
// per topic (and no fewer, within 1 MiB and ten minutes); the suite closes
// it.
func RunRetention(t *testing.T, newBroker func(t *testing.T, maxMessages int) longpoll.Broker) {
	t.Helper()
	tests := []struct {
		name        string
		maxMessages int
		fn          func(t *testing.T, b longpoll.Broker)
	}{
		{"ExpiredGaps", 3, testRetentionGaps},
		{"ExpiredGapWithLimit", 3, testRetentionLimit},
		{"WrongEpochReadsFromOldest", 3, testRetentionWrongEpoch},
		{"BatchLargerThanLimit", 3, testRetentionBatch},
		{"KeepOne", 1, testRetentionKeepOne},
		{"DroppedIDIsFree", 2, testRetentionIDs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t, tt.maxMessages)
			t.Cleanup(func() { _ = b.Close() })
			tt.fn(t, b)
		})
	}
}

// --- helpers ---------------------------------------------------------------

func pub(topic, data string) longpoll.Publication {
	return longpoll.Publication{Topic: topic, Data: json.RawMessage(data)}
}

func pubID(topic, id, data string) longpoll.Publication {
	return longpoll.Publication{Topic: topic, ID: id, Data: json.RawMessage(data)}
}

func num(i int) string { return fmt.Sprint(i) }

func appendOK(t *testing.T, b longpoll.Broker, pubs ...longpoll.Publication) []longpoll.Receipt {
	t.Helper()
	rs, err := b.Append(t.Context(), pubs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(rs) != len(pubs) {
		t.Fatalf("Append returned %d receipts for %d publications", len(rs), len(pubs))
	}
	for i, r := range rs {
		if r.Topic != pubs[i].Topic {
			t.Fatalf("receipt %d is for topic %q, want %q", i, r.Topic, pubs[i].Topic)
		}
		if r.Epoch == 0 || r.Seq == 0 {
			t.Fatalf("receipt %d = %+v: epoch and seq must not be 0", i, r)
		}
	}
	return rs
}

// appendN appends n messages to topic, one per call, with data 1..n.
func appendN(t *testing.T, b longpoll.Broker, topic string, n int) []longpoll.Receipt {
	t.Helper()
	var rs []longpoll.Receipt
	for i := 1; i <= n; i++ {
		rs = append(rs, appendOK(t, b, pub(topic, num(i)))...)
	}
	return rs
}

func read(t *testing.T, b longpoll.Broker, topic string, from longpoll.Position, limit int) longpoll.Page {
	t.Helper()
	p, err := b.Read(t.Context(), topic, from, limit)
	if err != nil {
		t.Fatalf("Read(%q, %+v, %d): %v", topic, from, limit, err)
	}
	if len(p.Messages) > limit {
		t.Fatalf("Read(%q, %+v, %d) returned %d messages", topic, from, limit, len(p.Messages))
	}
	for i, m := range p.Messages {
		if m.Topic != topic {
			t.Fatalf("message %d has topic %q, want %q", i, m.Topic, topic)
		}
		if i > 0 && m.Seq != p.Messages[i-1].Seq+1 {
			t.Fatalf("seqs %d then %d in one page", p.Messages[i-1].Seq, m.Seq)
		}
	}
	return p
}

func stat(t *testing.T, b longpoll.Broker, topic string) longpoll.TopicStat {
	t.Helper()
	st, err := b.Stat(t.Context(), topic)
	if err != nil {
		t.Fatalf("Stat(%q): %v", topic, err)
	}
	return st
}

// readAll reads topic from the given position to its head in pages of
// limit, failing on any gap.
func readAll(t *testing.T, b longpoll.Broker, topic string, from longpoll.Position, limit int) ([]longpoll.Message, longpoll.Position) {
	t.Helper()
	var all []longpoll.Message
	for {
		p := read(t, b, topic, from, limit)
		if p.Gap != nil {
			t.Fatalf("Read(%q, %+v): unexpected gap %+v", topic, from, *p.Gap)
		}
		if len(p.Messages) == 0 {
			if p.Next != from {
				t.Fatalf("empty page from %+v has Next %+v", from, p.Next)
			}
			return all, from
		}
		all = append(all, p.Messages...)
		from = p.Next
	}
}

func wantSeqs(t *testing.T, msgs []longpoll.Message, first, last uint64) {
	t.Helper()
	if uint64(len(msgs)) != last-first+1 {
		t.Fatalf("got %d messages (%s), want seqs %d..%d", len(msgs), seqs(msgs), first, last)
	}
	for i, m := range msgs {
		if m.Seq != first+uint64(i) {
			t.Fatalf("got seqs %s, want %d..%d", seqs(msgs), first, last)
		}
	}
}

func seqs(msgs []longpoll.Message) string {
	var s []uint64
	for _, m := range msgs {
		s = append(s, m.Seq)
	}
	return fmt.Sprint(s)
}

func wantGap(t *testing.T, p longpoll.Page, topic string, reason longpoll.GapReason, missed uint64) {
	t.Helper()
	if p.Gap == nil {
		t.Fatalf("no gap, want %s missing %d", reason, missed)
	}
	want := longpoll.Gap{Topic: topic, Reason: reason, Missed: missed}
	if reason == longpoll.GapReset {
		// Missed is defined for GapExpired only.
		want.Missed = p.Gap.Missed
	}
	if *p.Gap != want {
		t.Fatalf("gap %+v, want %+v", *p.Gap, want)
	}
}

func wantNoGap(t *testing.T, p longpoll.Page) {
	t.Helper()
	if p.Gap != nil {
		t.Fatalf("unexpected gap %+v", *p.Gap)
	}
}

func otherEpoch(e uint64) uint64 {
	if e+1 == 0 {
		return 1
	}
	return e + 1
}

// waitWake waits for a wake-up of topic on c.
func waitWake(t *testing.T, c <-chan string, topic string) {
	t.Helper()
	select {
	case got := <-c:
		if got != topic {
			t.Fatalf("wake(%q), want wake(%q)", got, topic)
		}
	case <-time.After(WakeTimeout):
		t.Fatalf("no wake-up for %q within %v", topic, WakeTimeout)
	}
}

// wakeChan returns a wake function that never blocks and the channel it
// signals; wake-ups beyond the channel's room are dropped.
func wakeChan(room int) (func(string), chan string) {
	c := make(chan string, room)
	return func(topic string) {
		select {
		case c <- topic:
		default:
		}
	}, c
}

// --- Run's tests -------------------------------------------------------------

func testOrderAndSeq(t *testing.T, b longpoll.Broker) {
	const n = 50
	rs := appendN(t, b, "order", n)
	for i, r := range rs {
		if r.Seq != uint64(i+1) || r.Epoch != rs[0].Epoch || r.Duplicate {
			t.Fatalf("receipt %d = %+v, want seq %d in epoch %d", i, r, i+1, rs[0].Epoch)
		}
	}
	msgs, next := readAll(t, b, "order", longpoll.Position{}, n)
	wantSeqs(t, msgs, 1, n)
	for i, m := range msgs {
		if string(m.Data) != num(i+1) {
			t.Fatalf("message %d has data %s, want %d", m.Seq, m.Data, i+1)
		}
	}
	if want := (longpoll.Position{Epoch: rs[0].Epoch, Seq: n}); next != want {
		t.Fatalf("Next = %+v, want %+v", next, want)
	}
}

func testTime(t *testing.T, b longpoll.Broker) {
	before := time.Now()
	appendN(t, b, "time", 20)
	appendOK(t, b, pub("time", "1"), pub("time", "2"), pub("time", "3"))
	msgs, _ := readAll(t, b, "time", longpoll.Position{}, 100)
	wantSeqs(t, msgs, 1, 23)
	for i, m := range msgs {
		if m.Time.Location() != time.UTC {
			t.Fatalf("message %d time %v is in %v, want UTC", m.Seq, m.Time, m.Time.Location())
		}
		// Clocks of remote stores may be skewed, but not by a day.
		if d := m.Time.Sub(before); d < -24*time.Hour || d > 24*time.Hour {
			t.Fatalf("message %d time %v is far from now %v", m.Seq, m.Time, before)
		}
		if i > 0 && m.Time.Before(msgs[i-1].Time) {
			t.Fatalf("message %d time %v is before message %d time %v", m.Seq, m.Time, msgs[i-1].Seq, msgs[i-1].Time)
		}
	}
}

func testData(t *testing.T, b longpoll.Broker) {
	values := []string{
		`null`,
		`true`,
		`0`,
		`-0.5e-10`,
		`12345678901234567890123`,
		`1.0000000000000000000001`,
		`""`,
		`"héllo wörld ☃ 𝄞 日本語"`,
		`"\u00e9\n\"\\\u2028"`,
		`[]`,
		`{}`,
		`[1,"two",[3],{"four":4}]`,
		`{"a":{"b":[1,2,{"c":null}],"e":"\u0000"},"d":-1.5E+300,"z":false}`,
		`{"b":1,"a":2}`,
	}
	var pubs []longpoll.Publication
	for i, v := range values {
		pubs = append(pubs, pubID("data", "id-"+num(i), v))
	}
	appendOK(t, b, pubs...)
	msgs, _ := readAll(t, b, "data", longpoll.Position{}, 100)
	wantSeqs(t, msgs, 1, uint64(len(values)))
	for i, m := range msgs {
		if !bytes.Equal(m.Data, []byte(values[i])) {
			t.Errorf("message %d data %q, want %q", m.Seq, m.Data, values[i])
		}
		if m.ID != "id-"+num(i) {
			t.Errorf("message %d id %q, want %q", m.Seq, m.ID, "id-"+num(i))
		}
	}

	appendOK(t, b, pub("data", `"no id"`))
	last, _ := readAll(t, b, "data", longpoll.Position{Epoch: stat(t, b, "data").Epoch, Seq: uint64(len(values))}, 10)
	if len(last) != 1 || last[0].ID != "" || string(last[0].Data) != `"no id"` {
		t.Fatalf("message without id read back as %+v", last)
	}
}

func testStat(t *testing.T, b longpoll.Broker) {
	if st := stat(t, b, "stat"); st != (longpoll.TopicStat{}) {
		t.Fatalf("Stat of a topic without messages = %+v, want zero", st)
	}
	rs := appendN(t, b, "stat", 3)
	want := longpoll.TopicStat{Epoch: rs[0].Epoch, Head: 3, Oldest: 1}
	if st := stat(t, b, "stat"); st != want {
		t.Fatalf("Stat after 3 appends = %+v, want %+v", st, want)
	}
	if st := stat(t, b, "stat-other"); st != (longpoll.TopicStat{}) {
		t.Fatalf("Stat of another topic = %+v, want zero", st)
	}
}

func testReadFromZero(t *testing.T, b longpoll.Broker) {
	p := read(t, b, "zero", longpoll.Position{}, 10)
	wantNoGap(t, p)
	if len(p.Messages) != 0 || p.Next != (longpoll.Position{}) {
		t.Fatalf("Read of a topic without messages = %+v, want nothing and Next zero", p)
	}

	rs := appendN(t, b, "zero", 3)
	p = read(t, b, "zero", longpoll.Position{}, 10)
	wantNoGap(t, p)
	wantSeqs(t, p.Messages, 1, 3)
	if want := (longpoll.Position{Epoch: rs[0].Epoch, Seq: 3}); p.Next != want {
		t.Fatalf("Next = %+v, want %+v", p.Next, want)
	}
}

func testReadAtHead(t *testing.T, b longpoll.Broker) {
	rs := appendN(t, b, "head", 2)
	at := longpoll.Position{Epoch: rs[0].Epoch, Seq: 2}
	p := read(t, b, "head", at, 10)
	wantNoGap(t, p)
	if len(p.Messages) != 0 || p.Next != at {
		t.Fatalf("Read at the head = %+v, want nothing and Next %+v", p, at)
	}

	appendOK(t, b, pub("head", "3"))
	p = read(t, b, "head", at, 10)
	wantNoGap(t, p)
	wantSeqs(t, p.Messages, 3, 3)
	if string(p.Messages[0].Data) != "3" {
		t.Fatalf("data %s, want 3", p.Messages[0].Data)
	}
}

func testReadPaging(t *testing.T, b longpoll.Broker) {
	const n = 23
	rs := appendN(t, b, "paging", n)
	epoch := rs[0].Epoch
	for _, limit := range []int{1, 2, 5, 7, 22, 23, 24, 100} {
		from := longpoll.Position{}
		var got []longpoll.Message
		for pages := 0; ; pages++ {
			if pages > n+1 {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			p := read(t, b, "paging", from, limit)
			wantNoGap(t, p)
			if len(p.Messages) == 0 {
				if p.Next != from {
					t.Fatalf("limit %d: empty page has Next %+v, want %+v", limit, p.Next, from)
				}
				break
			}
			if want := min(limit, n-len(got)); len(p.Messages) != want {
				t.Fatalf("limit %d: page of %d messages, want %d", limit, len(p.Messages), want)
			}
			got = append(got, p.Messages...)
			if want := (longpoll.Position{Epoch: epoch, Seq: uint64(len(got))}); p.Next != want {
				t.Fatalf("limit %d: Next = %+v, want %+v", limit, p.Next, want)
			}
			from = p.Next
		}
		wantSeqs(t, got, 1, n)
	}
}

func testReadUnknownTopic(t *testing.T, b longpoll.Broker) {
	appendOK(t, b, pub("known", "1"))
	for _, from := range []longpoll.Position{{Epoch: 42, Seq: 7}, {Epoch: 42, Seq: 0}, {Epoch: 0, Seq: 3}} {
		p := read(t, b, "unknown", from, 10)
		wantGap(t, p, "unknown", longpoll.GapReset, 0)
		if len(p.Messages) != 0 || p.Next != (longpoll.Position{}) {
			t.Fatalf("Read(unknown, %+v) = %+v, want no messages and Next zero", from, p)
		}
	}
}

func testReadWrongEpoch(t *testing.T, b longpoll.Broker) {
	rs := appendN(t, b, "epoch", 5)
	epoch := rs[0].Epoch
	for _, seq := range []uint64{0, 2, 5, 9} {
		from := longpoll.Position{Epoch: otherEpoch(epoch), Seq: seq}
		p := read(t, b, "epoch", from, 3)
		wantGap(t, p, "epoch", longpoll.GapReset, 0)
		wantSeqs(t, p.Messages, 1, 3)
		if want := (longpoll.Position{Epoch: epoch, Seq: 3}); p.Next != want {
			t.Fatalf("Read from %+v: Next = %+v, want %+v", from, p.Next, want)
		}
		// The position after the gap continues without one.
		p = read(t, b, "epoch", p.Next, 10)
		wantNoGap(t, p)
		wantSeqs(t, p.Messages, 4, 5)
	}
}

func testReadPastHead(t *testing.T, b longpoll.Broker) {
	rs := appendN(t, b, "past", 4)
	epoch := rs[0].Epoch
	for _, seq := range []uint64{5, 6, 1 << 40} {
		from := longpoll.Position{Epoch: epoch, Seq: seq}
		p := read(t, b, "past", from, 10)
		wantGap(t, p, "past", longpoll.GapReset, 0)
		wantSeqs(t, p.Messages, 1, 4)
		if want := (longpoll.Position{Epoch: epoch, Seq: 4}); p.Next != want {
			t.Fatalf("Read from %+v: Next = %+v, want %+v", from, p.Next, want)
		}
	}
}

func testMessagesNotShared(t *testing.T, b longpoll.Broker) {
	data := []byte(`{"k":"original"}`)
	appendOK(t, b, longpoll.Publication{Topic: "alias", Data: data})
	copy(data, `{"k":"CHANGED!"}`) // the publisher reuses its buffer
	appendN(t, b, "alias", 2)

	p := read(t, b, "alias", longpoll.Position{}, 3)
	wantSeqs(t, p.Messages, 1, 3)
	if string(p.Messages[0].Data) != `{"k":"original"}` {
		t.Fatalf("message 1 data %s after the publisher changed its buffer", p.Messages[0].Data)
	}
	first := p.Messages[0]
	p.Messages[0].Seq, p.Messages[0].ID = 99, "changed by reader" // a reader changes its page

	// Appends after a Read must not change the page it returned, however
	// the broker grows or compacts its log.
	appendN(t, b, "alias", 300)
	if p.Messages[1].Seq != 2 || p.Messages[2].Seq != 3 || string(p.Messages[2].Data) != "2" {
		t.Fatalf("page changed by later appends: %s", seqs(p.Messages))
	}
	again := read(t, b, "alias", longpoll.Position{}, 1)
	if len(again.Messages) != 1 || again.Messages[0].Seq != first.Seq || again.Messages[0].ID != first.ID ||
		!bytes.Equal(again.Messages[0].Data, first.Data) {
		t.Fatalf("message 1 read again = %+v, want %+v", again.Messages, first)
	}
}

func testIdempotent(t *testing.T, b longpoll.Broker) {
	r1 := appendOK(t, b, pubID("idem", "x", `"first"`))[0]
	appendOK(t, b, pub("idem", `"between"`))
	r2 := appendOK(t, b, pubID("idem", "x", `"second"`))[0]
	if want := (longpoll.Receipt{Topic: "idem", Epoch: r1.Epoch, Seq: r1.Seq, Duplicate: true}); r2 != want {
		t.Fatalf("repeated id: receipt %+v, want %+v", r2, want)
	}
	if st := stat(t, b, "idem"); st.Head != 2 {
		t.Fatalf("head %d after a duplicate, want 2", st.Head)
	}
	msgs, _ := readAll(t, b, "idem", longpoll.Position{}, 10)
	wantSeqs(t, msgs, 1, 2)
	if string(msgs[0].Data) != `"first"` || msgs[0].ID != "x" {
		t.Fatalf("message 1 = %+v, want the first publication", msgs[0])
	}

	// The same id on another topic is another message.
	r3 := appendOK(t, b, pubID("idem-other", "x", `"other"`))[0]
	if r3.Duplicate || r3.Seq != 1 {
		t.Fatalf("same id on another topic: receipt %+v, want seq 1, not a duplicate", r3)
	}
	// A duplicate in a batch does not stop the rest of it.
	rs := appendOK(t, b, pubID("idem", "y", "3"), pubID("idem", "x", "4"), pub("idem", "5"))
	if rs[0].Seq != 3 || rs[0].Duplicate || rs[1].Seq != 1 || !rs[1].Duplicate || rs[2].Seq != 4 || rs[2].Duplicate {
		t.Fatalf("batch with a duplicate: receipts %+v, want seqs 3, 1 (duplicate), 4", rs)
	}
	// Messages without an id are never duplicates.
	rs = appendOK(t, b, pub("idem", "6"), pub("idem", "6"))
	if rs[0].Seq != 5 || rs[1].Seq != 6 || rs[0].Duplicate || rs[1].Duplicate {
		t.Fatalf("publications without id: receipts %+v, want seqs 5, 6", rs)
	}
}

func testIdempotentBatch(t *testing.T, b longpoll.Broker) {
	rs := appendOK(t, b,
		pubID("ib", "a", "1"),
		pubID("ib", "a", "2"),
		pubID("ib-2", "a", "3"),
		pubID("ib", "b", "4"),
		pubID("ib-2", "a", "5"),
	)
	want := []struct {
		seq uint64
		dup bool
	}{{1, false}, {1, true}, {1, false}, {2, false}, {1, true}}
	for i, w := range want {
		if rs[i].Seq != w.seq || rs[i].Duplicate != w.dup {
			t.Fatalf("receipts %+v: receipt %d want seq %d duplicate %v", rs, i, w.seq, w.dup)
		}
	}
	if st := stat(t, b, "ib"); st.Head != 2 {
		t.Fatalf("ib head %d, want 2", st.Head)
	}
	msgs, _ := readAll(t, b, "ib", longpoll.Position{}, 10)
	if len(msgs) != 2 || string(msgs[0].Data) != "1" || string(msgs[1].Data) != "4" {
		t.Fatalf("ib holds %+v, want data 1 and 4", msgs)
	}
}

func testBatch(t *testing.T, b longpoll.Broker) {
	appendOK(t, b, pub("batch-b", `"before"`))
	rs := appendOK(t, b,
		pub("batch-a", "1"),
		pub("batch-b", "2"),
		pub("batch-a", "3"),
		pub("batch-c", "4"),
		pub("batch-b", "5"),
		pub("batch-a", "6"),
	)
	wantSeq := []uint64{1, 2, 2, 1, 3, 3}
	for i, r := range rs {
		if r.Seq != wantSeq[i] || r.Duplicate {
			t.Fatalf("receipts %+v: want seqs %v", rs, wantSeq)
		}
	}
	for topic, want := range map[string][]string{
		"batch-a": {"1", "3", "6"},
		"batch-b": {`"before"`, "2", "5"},
		"batch-c": {"4"},
	} {
		msgs, _ := readAll(t, b, topic, longpoll.Position{}, 10)
		wantSeqs(t, msgs, 1, uint64(len(want)))
		for i, m := range msgs {
			if string(m.Data) != want[i] {
				t.Fatalf("%s holds %s at seq %d, want %s", topic, m.Data, m.Seq, want[i])
			}
		}
		for i := range rs {
			if rs[i].Topic == topic && rs[i].Epoch != stat(t, b, topic).Epoch {
				t.Fatalf("receipt %+v is not in %s's epoch", rs[i], topic)
			}
		}
	}
}

// publisherData is the data of the i-th message of publisher p.
func publisherData(p, i int) string { return fmt.Sprintf(`{"p":%d,"i":%d}`, p, i) }

func testConcurrentOneTopic(t *testing.T, b longpoll.Broker) {
	const publishers, each = 8, 500
	receipts := make([][]longpoll.Receipt, publishers)
	errs := make(chan error, publishers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			<-start
			for i := range each {
				rs, err := b.Append(context.Background(), []longpoll.Publication{pub("conc", publisherData(p, i))})
				if err != nil {
					errs <- err
					return
				}
				receipts[p] = append(receipts[p], rs[0])
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}

	// Every seq 1..publishers*each went to exactly one message, each
	// publisher's in the order it published.
	owner := make(map[uint64]string)
	for p, rs := range receipts {
		for i, r := range rs {
			if i > 0 && r.Seq <= rs[i-1].Seq {
				t.Fatalf("publisher %d got seq %d after %d", p, r.Seq, rs[i-1].Seq)
			}
			if r.Epoch != receipts[0][0].Epoch || r.Duplicate {
				t.Fatalf("receipt %+v: want epoch %d, not a duplicate", r, receipts[0][0].Epoch)
			}
			if prev, ok := owner[r.Seq]; ok {
				t.Fatalf("seq %d given to %s and %s", r.Seq, prev, publisherData(p, i))
			}
			owner[r.Seq] = publisherData(p, i)
		}
	}
	const total = publishers * each
	for s := uint64(1); s <= total; s++ {
		if _, ok := owner[s]; !ok {
			t.Fatalf("no receipt has seq %d", s)
		}
	}
	st := stat(t, b, "conc")
	if st.Head != total {
		t.Fatalf("head %d, want %d", st.Head, total)
	}
	// The log holds what the receipts say. Retention may have dropped the
	// oldest: then the gap says exactly how many.
	p := read(t, b, "conc", longpoll.Position{}, total)
	first := uint64(1)
	if p.Gap != nil {
		wantGap(t, p, "conc", longpoll.GapExpired, st.Oldest-1)
		first = st.Oldest
	}
	wantSeqs(t, p.Messages, first, total)
	for _, m := range p.Messages {
		if string(m.Data) != owner[m.Seq] {
			t.Fatalf("seq %d holds %s, its receipt says %s", m.Seq, m.Data, owner[m.Seq])
		}
	}
}

func testConcurrentManyTopics(t *testing.T, b longpoll.Broker) {
	const publishers, each = 8, 500
	errs := make(chan error, publishers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			<-start
			topic := "many-" + num(p)
			for i := range each {
				// Some appends also write to a shared topic, so that batches
				// spanning topics race with each other.
				pubs := []longpoll.Publication{pub(topic, publisherData(p, i))}
				if i%5 == 0 {
					pubs = append(pubs, pub("many-shared", publisherData(p, i)))
				}
				rs, err := b.Append(context.Background(), pubs)
				if err != nil {
					errs <- err
					return
				}
				if rs[0].Seq != uint64(i+1) {
					errs <- fmt.Errorf("%s: message %d got seq %d", topic, i, rs[0].Seq)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for p := range publishers {
		topic := "many-" + num(p)
		msgs, _ := readAll(t, b, topic, longpoll.Position{}, each)
		wantSeqs(t, msgs, 1, each)
		for i, m := range msgs {
			if string(m.Data) != publisherData(p, i) {
				t.Fatalf("%s seq %d holds %s, want %s", topic, m.Seq, m.Data, publisherData(p, i))
			}
		}
	}
	msgs, _ := readAll(t, b, "many-shared", longpoll.Position{}, 1000)
	wantSeqs(t, msgs, 1, publishers*each/5)
	last := make(map[string]int)
	for _, m := range msgs {
		var d struct{ P, I int }
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		k := num(d.P)
		if prev, ok := last[k]; ok && d.I <= prev {
			t.Fatalf("publisher %d's message %d comes after its message %d", d.P, d.I, prev)
		}
		last[k] = d.I
	}
}

// testWatchRace is the guarantee a held poll relies on: a poller that
// watches a topic and then looks at it either sees an append that races
// with it or is woken after it, never neither. Several pollers per append,
// each after a random spin, spread the interleavings tried.
func testWatchRace(t *testing.T, b longpoll.Broker) {
	const iterations, pollers = 1000, 4
	var missed, seen int
	for i := range iterations {
		topic := "race-" + num(i)
		start := make(chan struct{})
		appended := make(chan error, 1)
		go func() {
			<-start
			spin(i * 7)
			_, err := b.Append(context.Background(), []longpoll.Publication{pub(topic, num(i))})
			appended <- err
		}()
		type result struct {
			seen  bool
			woken chan string
			stop  func()
		}
		results := make(chan result, pollers)
		for k := range pollers {
			go func() {
				wake, woken := wakeChan(1)
				<-start
				spin(i*13 + k*29)
				stop := b.Watch(topic, wake)
				var saw bool
				if (i+k)%2 == 0 {
					st, err := b.Stat(context.Background(), topic)
					saw = err == nil && st.Head == 1
				} else {
					p, err := b.Read(context.Background(), topic, longpoll.Position{}, 10)
					saw = err == nil && len(p.Messages) == 1
				}
				results <- result{saw, woken, stop}
			}()
		}
		close(start)
		if err := <-appended; err != nil {
			t.Fatalf("Append: %v", err)
		}
		for range pollers {
			r := <-results
			if r.seen {
				seen++
			} else {
				missed++
				waitWake(t, r.woken, topic)
			}
			r.stop()
		}
	}
	t.Logf("pollers saw the append %d times, were woken for it %d times", seen, missed)
}

// spin busy-waits for a pseudo-random short while derived from n, to shift
// goroutines against each other without sleeping.
func spin(n int) {
	x := uint32(n)*2654435761 + 1
	for range x % 256 {
		spinSink.Add(1)
	}
}

var spinSink atomic.Uint32

func testWatchUnknownTopic(t *testing.T, b longpoll.Broker) {
	wake, woken := wakeChan(10)
	stop := b.Watch("later", wake)
	defer stop()
	if st := stat(t, b, "later"); st != (longpoll.TopicStat{}) {
		t.Fatalf("Stat of a watched topic without messages = %+v, want zero", st)
	}
	p := read(t, b, "later", longpoll.Position{}, 10)
	if p.Gap != nil || len(p.Messages) != 0 || p.Next != (longpoll.Position{}) {
		t.Fatalf("Read of a watched topic without messages = %+v, want nothing", p)
	}
	appendOK(t, b, pub("later", "1"))
	waitWake(t, woken, "later")
	p = read(t, b, "later", longpoll.Position{}, 10)
	wantSeqs(t, p.Messages, 1, 1)
}

func testWatchStop(t *testing.T, b longpoll.Broker) {
	wake1, woken1 := wakeChan(100)
	wake2, woken2 := wakeChan(100)
	stop1 := b.Watch("stop", wake1)
	stop2 := b.Watch("stop", wake2)
	defer stop2()

	appendOK(t, b, pub("stop", "1"))
	waitWake(t, woken1, "stop")
	waitWake(t, woken2, "stop")

	stop1()
	stop1() // stop is idempotent
	// Drop wake-ups of the first append that were delivered twice, which is
	// allowed; once the second watcher has seen the next append, the first
	// must have seen none of it.
	drain(woken1)
	drain(woken2)
	appendOK(t, b, pub("stop", "2"))
	waitWake(t, woken2, "stop")
	select {
	case <-woken1:
		t.Fatal("wake called after stop")
	default:
	}

	// A later watcher of the same topic is not affected by the old stop.
	wake3, woken3 := wakeChan(100)
	stop3 := b.Watch("stop", wake3)
	defer stop3()
	stop1()
	appendOK(t, b, pub("stop", "3"))
	waitWake(t, woken3, "stop")
}

func drain(c chan string) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

func testCancelled(t *testing.T, b longpoll.Broker) {
	appendOK(t, b, pub("cancel-a", "1"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := b.Append(ctx, []longpoll.Publication{pub("cancel-a", "2"), pub("cancel-b", "1")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v, want context.Canceled", err)
	}
	if st := stat(t, b, "cancel-a"); st.Head != 1 {
		t.Fatalf("cancel-a head %d after a cancelled append, want 1", st.Head)
	}
	if st := stat(t, b, "cancel-b"); st != (longpoll.TopicStat{}) {
		t.Fatalf("cancel-b = %+v after a cancelled append, want zero", st)
	}
	if _, err := b.Read(ctx, "cancel-a", longpoll.Position{}, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with a cancelled context: %v, want context.Canceled", err)
	}
}

func testClose(t *testing.T, b longpoll.Broker) {
	rs := appendOK(t, b, pub("close", "1"))
	wake, _ := wakeChan(10)
	stop := b.Watch("close", wake)
	if pinger, ok := b.(longpoll.Pinger); ok {
		if err := pinger.Ping(t.Context()); err != nil {
			t.Fatalf("Ping before Close: %v", err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	stop() // stopping a watch after Close is harmless

	wantClosed := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, longpoll.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	_, err := b.Append(t.Context(), []longpoll.Publication{pub("close", "2")})
	wantClosed("Append", err)
	_, err = b.Read(t.Context(), "close", longpoll.Position{Epoch: rs[0].Epoch}, 10)
	wantClosed("Read", err)
	_, err = b.Stat(t.Context(), "close")
	wantClosed("Stat", err)
	if pinger, ok := b.(longpoll.Pinger); ok {
		wantClosed("Ping", pinger.Ping(t.Context()))
	}
	b.Watch("close", wake)() // may do nothing, must not panic or block
	if err := b.Close(); err != nil && !errors.Is(err, longpoll.ErrClosed) {
		t.Errorf("second Close: %v, want nil or ErrClosed", err)
	}
}

// --- RunRetention's tests (maxMessages as given in the table) --------------

func testRetentionGaps(t *testing.T, b longpoll.Broker) {
	rs := appendN(t, b, "ret", 10) // keeps 8, 9, 10
	epoch := rs[0].Epoch
	if want := (longpoll.TopicStat{Epoch: epoch, Head: 10, Oldest: 8}); stat(t, b, "ret") != want {
		t.Fatalf("Stat = %+v, want %+v", stat(t, b, "ret"), want)
	}
	tail := longpoll.Position{Epoch: epoch, Seq: 10}
	tests := []struct {
		from    longpoll.Position
		missed  uint64 // 0: no gap
		first   uint64
		wantMsg bool
	}{
		{longpoll.Position{}, 7, 8, true},
		{longpoll.Position{Epoch: epoch, Seq: 0}, 7, 8, true},
		{longpoll.Position{Epoch: epoch, Seq: 1}, 6, 8, true},
		{longpoll.Position{Epoch: epoch, Seq: 6}, 1, 8, true},
		{longpoll.Position{Epoch: epoch, Seq: 7}, 0, 8, true},
		{longpoll.Position{Epoch: epoch, Seq: 8}, 0, 9, true},
		{longpoll.Position{Epoch: epoch, Seq: 9}, 0, 10, true},
		{tail, 0, 0, false},
	}
	for _, tt := range tests {
		p := read(t, b, "ret", tt.from, 10)
		if tt.missed > 0 {
			wantGap(t, p, "ret", longpoll.GapExpired, tt.missed)
		} else {
			wantNoGap(t, p)
		}
		if !tt.wantMsg {
			if len(p.Messages) != 0 || p.Next != tt.from {
				t.Fatalf("Read from %+v = %+v, want nothing and Next = from", tt.from, p)
			}
			continue
		}
		wantSeqs(t, p.Messages, tt.first, 10)
		if string(p.Messages[0].Data) != num(int(tt.first)) {
			t.Fatalf("seq %d holds %s", tt.first, p.Messages[0].Data)
		}
		if p.Next != tail {
			t.Fatalf("Read from %+v: Next = %+v, want %+v", tt.from, p.Next, tail)
		}
	}
}

func testRetentionLimit(t *testing.T, b longpoll.Broker) {
	rs := appendN(t, b, "ret-limit", 10)
	epoch := rs[0].Epoch
	p := read(t, b, "ret-limit", longpoll.Position{}, 1)
	wantGap(t, p, "ret-limit", longpoll.GapExpired, 7)
	wantSeqs(t, p.Messages, 8, 8)
	if want := (longpoll.Position{Epoch: epoch, Seq: 8}); p.Next != want {
		t.Fatalf("Next = %+v, want %+v", p.Next, want)
	}
	p = read(t, b, "ret-limit", p.Next, 1)
	wantNoGap(t, p)
	wantSeqs(t, p.Messages, 9, 9)
	p = read(t, b, "ret-limit", longpoll.Position{Epoch: epoch, Seq: 2}, 2)
	wantGap(t, p, "ret-limit", longpoll.GapExpired, 5)
	wantSeqs(t, p.Messages, 8, 9)
}

func testRetentionWrongEpoch(t *testing.T, b longpoll.Broker) {
	rs := appendN(t, b, "ret-epoch", 10)
	epoch := rs[0].Epoch
	for _, seq := range []uint64{0, 3, 9, 50} {
		p := read(t, b, "ret-epoch", longpoll.Position{Epoch: otherEpoch(epoch), Seq: seq}, 10)
		wantGap(t, p, "ret-epoch", longpoll.GapReset, 0)
		wantSeqs(t, p.Messages, 8, 10)
	}
	p := read(t, b, "ret-epoch", longpoll.Position{Epoch: epoch, Seq: 11}, 10)
	wantGap(t, p, "ret-epoch", longpoll.GapReset, 0)
	wantSeqs(t, p.Messages, 8, 10)
}

func testRetentionBatch(t *testing.T, b longpoll.Broker) {
	appendOK(t, b, pub("ret-batch", "1"))
	var pubs []longpoll.Publication
	for i := 2; i <= 6; i++ {
		pubs = append(pubs, pub("ret-batch", num(i)))
	}
	pubs = append(pubs, pub("ret-batch-other", "1"))
	rs := appendOK(t, b, pubs...)
	for i := range 5 {
		if rs[i].Seq != uint64(i+2) {
			t.Fatalf("receipts %+v, want seqs 2..6", rs)
		}
	}
	st := stat(t, b, "ret-batch")
	if st.Head != 6 || st.Oldest != 4 {
		t.Fatalf("Stat = %+v, want head 6 and oldest 4", st)
	}
	p := read(t, b, "ret-batch", longpoll.Position{Epoch: st.Epoch, Seq: 1}, 10)
	wantGap(t, p, "ret-batch", longpoll.GapExpired, 2)
	wantSeqs(t, p.Messages, 4, 6)
	if string(p.Messages[0].Data) != "4" {
		t.Fatalf("seq 4 holds %s", p.Messages[0].Data)
	}
	msgs, _ := readAll(t, b, "ret-batch-other", longpoll.Position{}, 10)
	wantSeqs(t, msgs, 1, 1)
}

func testRetentionKeepOne(t *testing.T, b longpoll.Broker) {
	rs := appendN(t, b, "ret-one", 5)
	p := read(t, b, "ret-one", longpoll.Position{}, 10)
	wantGap(t, p, "ret-one", longpoll.GapExpired, 4)
	wantSeqs(t, p.Messages, 5, 5)
	if want := (longpoll.TopicStat{Epoch: rs[0].Epoch, Head: 5, Oldest: 5}); stat(t, b, "ret-one") != want {
		t.Fatalf("Stat = %+v, want %+v", stat(t, b, "ret-one"), want)
	}
}

func testRetentionIDs(t *testing.T, b longpoll.Broker) {
	appendOK(t, b, pubID("ret-id", "a", "1"), pubID("ret-id", "b", "2"))
	if r := appendOK(t, b, pubID("ret-id", "a", "again"))[0]; !r.Duplicate || r.Seq != 1 {
		t.Fatalf("id of a retained message: receipt %+v, want duplicate of seq 1", r)
	}
	appendOK(t, b, pub("ret-id", "3")) // drops seq 1
	r := appendOK(t, b, pubID("ret-id", "a", "4"))[0]
	if r.Duplicate || r.Seq != 4 {
		t.Fatalf("id of a dropped message: receipt %+v, want seq 4, not a duplicate", r)
	}
	if r := appendOK(t, b, pubID("ret-id", "a", "5"))[0]; !r.Duplicate || r.Seq != 4 {
		t.Fatalf("id appended again: receipt %+v, want duplicate of seq 4", r)
	}
}
