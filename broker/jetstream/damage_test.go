package jetstream

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/longpoll/longpoll"
)

// TestDamagedRecord stores a record whose headers are sound and whose
// body is not, as a damaged disk or a foreign writer would leave it:
// readers get its messages as a GapCorrupt, never an error, and the log
// goes on after it.
func TestDamagedRecord(t *testing.T) {
	b := open(t, scope(t, startEmbedded(t).url()))
	rs := appendOK(t, b, pub("dmg", "1"))
	epoch := rs[0].Epoch

	// Two messages, seqs 2 and 3, whose body does not decode.
	h, err := b.lastRecord(t.Context(), b.topicSubject("dmg"))
	if err != nil {
		t.Fatal(err)
	}
	bad := record{epoch: epoch, first: 2, time: time.Now(), costBefore: h.costEnd("dmg"), dataBefore: h.dataEnd(),
		prev: h.streamSeq, token: "damage/0", msgs: []entry{{data: []byte("2")}, {data: []byte("3")}}}
	hdr, _ := bad.encode()
	if _, err := b.js.PublishMsg(t.Context(), &nats.Msg{Subject: b.topicSubject("dmg"), Header: hdr, Data: []byte{9, 9, 9}},
		natsjs.WithExpectLastSequencePerSubject(h.streamSeq)); err != nil {
		t.Fatal(err)
	}
	if r := appendOK(t, b, pub("dmg", "4"))[0]; r.Seq != 4 || r.Epoch != epoch {
		t.Fatalf("append after the damaged record: %+v, want seq 4 in epoch %d", r, epoch)
	}

	read := func(from uint64) longpoll.Page {
		t.Helper()
		p, err := b.Read(t.Context(), "dmg", longpoll.Position{Epoch: epoch, Seq: from}, 10)
		if err != nil {
			t.Fatalf("Read from %d: %v", from, err)
		}
		return p
	}
	// Readable messages end the page before the damaged ones.
	p := read(0)
	if p.Gap != nil || len(p.Messages) != 1 || p.Messages[0].Seq != 1 || p.Next.Seq != 1 {
		t.Fatalf("Read from 0 = %+v, want seq 1 alone", p)
	}
	// The damaged ones first: a GapCorrupt, then the rest.
	p = read(1)
	if p.Gap == nil || p.Gap.Reason != longpoll.GapCorrupt || p.Gap.Missed != 2 || len(p.Messages) != 1 ||
		p.Messages[0].Seq != 4 || p.Next.Seq != 4 {
		t.Fatalf("Read from 1 = %+v, want a corrupt gap of 2, then seq 4", p)
	}
	p = read(2)
	if p.Gap == nil || p.Gap.Reason != longpoll.GapCorrupt || p.Gap.Missed != 1 || len(p.Messages) != 1 {
		t.Fatalf("Read from 2 = %+v, want a corrupt gap of 1, then seq 4", p)
	}
	if st, err := b.Stat(t.Context(), "dmg"); err != nil || st.Head != 4 || st.Oldest != 1 {
		t.Fatalf("Stat = %+v, %v", st, err)
	}

	// Headers that do not parse cannot be placed in the log: an error.
	if _, err := b.js.PublishMsg(t.Context(), &nats.Msg{Subject: b.topicSubject("dmg"), Header: nats.Header{hEpoch: {"x"}}, Data: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(t.Context(), "dmg", longpoll.Position{Epoch: epoch, Seq: 4}, 10); err == nil {
		t.Fatal("Read of a record with damaged headers succeeded")
	}
}
