package bolt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

func TestRestartContinuesSeqsAndEpochs(t *testing.T) {
	dir := t.TempDir()
	b := openDir(t, dir)
	ra := appendN(t, b, "a", 1, 5)
	rb := mustAppend(t, b, pubID("b", "id-1", `{"x":1}`), pub("b", `"two"`))
	before := mustRead(t, b, "a", longpoll.Position{}, 100)
	wantSeqs(t, before.Messages, 1, 5)
	pos := before.Next
	statA, statB := mustStat(t, b, "a"), mustStat(t, b, "b")
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	b = openDir(t, dir)
	if st := mustStat(t, b, "a"); st != statA {
		t.Fatalf("Stat(a) after restart = %+v, want %+v", st, statA)
	}
	if st := mustStat(t, b, "b"); st != statB {
		t.Fatalf("Stat(b) after restart = %+v, want %+v", st, statB)
	}
	// The messages read back the same, times included.
	again := mustRead(t, b, "a", longpoll.Position{}, 100)
	wantSeqs(t, again.Messages, 1, 5)
	for i, m := range again.Messages {
		w := before.Messages[i]
		if !m.Time.Equal(w.Time) || m.Time.Location() != time.UTC || string(m.Data) != string(w.Data) || m.ID != w.ID {
			t.Fatalf("message %d after restart = %+v, want %+v", m.Seq, m, w)
		}
	}
	pb := mustRead(t, b, "b", longpoll.Position{}, 100)
	if len(pb.Messages) != 2 || pb.Messages[0].ID != "id-1" || string(pb.Messages[0].Data) != `{"x":1}` {
		t.Fatalf("b after restart = %+v", pb.Messages)
	}

	// Appends continue the same logs.
	r := mustAppend(t, b, pub("a", "6"), pub("b", "3"))
	if r[0].Epoch != ra[0].Epoch || r[0].Seq != 6 || r[1].Epoch != rb[0].Epoch || r[1].Seq != 3 {
		t.Fatalf("receipts after restart %+v, want a:6 in epoch %d, b:3 in epoch %d", r, ra[0].Epoch, rb[0].Epoch)
	}
	// A reader from before the restart resumes with no gap, no duplicate.
	p := mustRead(t, b, "a", pos, 100)
	if p.Gap != nil {
		t.Fatalf("gap %+v after restart", *p.Gap)
	}
	wantSeqs(t, p.Messages, 6, 6)
	if p.Next != (longpoll.Position{Epoch: ra[0].Epoch, Seq: 6}) {
		t.Fatalf("Next = %+v", p.Next)
	}
}

func TestRestartKeepsIDsAndRetention(t *testing.T) {
	dir := t.TempDir()
	b := openDir(t, dir, WithMaxMessages(3))
	first := mustAppend(t, b, pubID("t", "x", "1"))[0]
	mustAppend(t, b, pubID("t", "y", "2"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openDir(t, dir, WithMaxMessages(3))
	r := mustAppend(t, b, pubID("t", "x", `"again"`))[0]
	if !r.Duplicate || r.Seq != 1 || r.Epoch != first.Epoch {
		t.Fatalf("id after restart: receipt %+v, want duplicate of seq 1", r)
	}
	appendN(t, b, "t", 3, 2) // seqs 3, 4: seq 1 goes
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openDir(t, dir, WithMaxMessages(3))
	if raw := inspect(t, b, "t"); raw.stored != 3 || raw.ids != 1 {
		t.Fatalf("after retention: %d messages and %d ids stored, want 3 and 1 (the dropped message's id goes with it)", raw.stored, raw.ids)
	}
	r = mustAppend(t, b, pubID("t", "x", `"new"`))[0]
	if r.Duplicate || r.Seq != 5 {
		t.Fatalf("id of a dropped message after restart: receipt %+v, want seq 5", r)
	}
	if r := mustAppend(t, b, pubID("t", "y", "dup?"))[0]; r.Duplicate {
		t.Fatalf("id y of dropped seq 2: receipt %+v, want a new message", r)
	}
}

func TestRestartTimeNeverDecreases(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	b := openDir(t, dir, WithClock(clock.Now))
	mustAppend(t, b, pub("t", "1"))
	t1 := mustRead(t, b, "t", longpoll.Position{}, 1).Messages[0].Time
	if !t1.Equal(clock.Now()) {
		t.Fatalf("time %v, want the clock's %v", t1, clock.Now())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(-time.Hour) // the clock steps back across the restart
	b = openDir(t, dir, WithClock(clock.Now))
	mustAppend(t, b, pub("t", "2"))
	mustAppend(t, b, pub("other", "1"))
	p := mustRead(t, b, "t", longpoll.Position{}, 10)
	wantSeqs(t, p.Messages, 1, 2)
	if !p.Messages[1].Time.Equal(t1) {
		t.Fatalf("time after the clock stepped back = %v, want %v (never decreasing)", p.Messages[1].Time, t1)
	}
	if o := mustRead(t, b, "other", longpoll.Position{}, 1).Messages[0].Time; !o.Equal(clock.Now()) {
		t.Fatalf("another topic's time = %v, want the clock's %v", o, clock.Now())
	}
}

// Every Append that returns a receipt while Close runs is durable; the
// others fail with ErrClosed and leave nothing.
func TestCloseWhileAppending(t *testing.T) {
	dir := t.TempDir()
	b := openDir(t, dir)
	const publishers = 8
	var (
		mu   sync.Mutex
		got  = map[string]uint64{} // data -> seq
		wg   sync.WaitGroup
		errs = make(chan error, publishers)
	)
	started := make(chan struct{}, publishers)
	for p := range publishers {
		wg.Go(func() {
			for i := 0; ; i++ {
				data := fmt.Sprintf(`"%d-%d"`, p, i)
				rs, err := b.Append(context.Background(), []longpoll.Publication{pub("close", data)})
				if err != nil {
					if !errors.Is(err, longpoll.ErrClosed) {
						errs <- err
					}
					return
				}
				mu.Lock()
				got[data] = rs[0].Seq
				mu.Unlock()
				if i == 10 {
					started <- struct{}{}
				}
			}
		})
	}
	for range publishers {
		<-started
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append during Close: %v, want success or ErrClosed", err)
	}

	b = openDir(t, dir)
	p := mustRead(t, b, "close", longpoll.Position{}, 100000)
	stored := map[string]uint64{}
	for _, m := range p.Messages {
		stored[string(m.Data)] = m.Seq
	}
	if len(stored) != len(got) {
		t.Fatalf("%d messages stored, %d acknowledged", len(stored), len(got))
	}
	for data, seq := range got {
		if stored[data] != seq {
			t.Fatalf("acknowledged %s at seq %d, stored at %d", data, seq, stored[data])
		}
	}
}
