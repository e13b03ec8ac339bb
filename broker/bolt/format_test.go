package bolt

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/internal/testrun"
	bbolt "go.etcd.io/bbolt"
)

// goldenTopic is what testdata/format1.json says a topic of
// testdata/format1/longpoll.db holds, as the code that wrote it read it
// back.
type goldenTopic struct {
	Name     string          `json:"name"`
	Stat     goldenStat      `json:"stat"`
	Messages []goldenMessage `json:"messages"`
}

type goldenStat struct {
	Epoch, Head, Oldest uint64
}

type goldenMessage struct {
	Seq  uint64          `json:"seq"`
	Time time.Time       `json:"time"`
	ID   string          `json:"id,omitempty"`
	Data json.RawMessage `json:"data"`
}

// format1Start is when the clock the format-1 file was written with
// started; it ticked a millisecond per call.
var format1Start = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// A store written by the format-1 code (testdata/format1, see
// testdata/README) opens, is marked format 2, and reads back every message
// as it was written; appends go on after them, with checksums, and
// idempotency ids still hold.
func TestOpenFormat1(t *testing.T) {
	var golden []goldenTopic
	raw, err := os.ReadFile(filepath.Join("testdata", "format1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "format1", FileName))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return format1Start.Add(time.Hour) }
	var logs testrun.Buffer
	open := func() *Broker {
		b, err := Open(dir, WithClock(clock), WithMaxMessages(5), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := open()
	defer func() { _ = b.Close() }()
	if got := rawFormat(t, b); got != formatVersion {
		t.Fatalf("format after Open = %d, want %d", got, formatVersion)
	}
	// A format-1 file has no clean-stop mark: it was checked in full.
	if !strings.Contains(logs.String(), "checking it in full") || !strings.Contains(logs.String(), "store format upgraded") {
		t.Errorf("the log does not tell of the full check and the upgrade:\n%s", logs.String())
	}
	wantGolden := func(b *Broker, g goldenTopic, upTo uint64) {
		t.Helper()
		if st := mustStat(t, b, g.Name); st.Epoch != g.Stat.Epoch || st.Oldest > g.Stat.Oldest {
			t.Fatalf("Stat(%q) = %+v, want epoch %d, oldest %d", g.Name, st, g.Stat.Epoch, g.Stat.Oldest)
		}
		p := mustRead(t, b, g.Name, longpoll.Position{Epoch: g.Stat.Epoch, Seq: g.Messages[0].Seq - 1}, 100)
		if p.Gap != nil {
			t.Fatalf("%q: gap %+v", g.Name, *p.Gap)
		}
		var msgs []longpoll.Message
		for _, m := range p.Messages {
			if m.Seq <= upTo {
				msgs = append(msgs, m)
			}
		}
		if len(msgs) != len(g.Messages) {
			t.Fatalf("%q: %d messages up to seq %d, want %d", g.Name, len(msgs), upTo, len(g.Messages))
		}
		for i, m := range msgs {
			w := g.Messages[i]
			var compact bytes.Buffer
			if err := json.Compact(&compact, w.Data); err != nil {
				t.Fatal(err)
			}
			if m.Seq != w.Seq || !m.Time.Equal(w.Time) || m.ID != w.ID || string(m.Data) != compact.String() {
				t.Fatalf("%q message %d = %d %v %q %s, want %d %v %q %s", g.Name, i, m.Seq, m.Time, m.ID, m.Data,
					w.Seq, w.Time, w.ID, compact.String())
			}
		}
	}
	for _, g := range golden {
		wantGolden(b, g, g.Stat.Head)
	}

	orders := golden[0]
	if r := mustAppend(t, b, pubID("orders", "o-8", `{"n":8}`))[0]; !r.Duplicate || r.Seq != 8 {
		t.Fatalf("o-8 again: %+v, want a duplicate of seq 8", r)
	}
	long := strings.Repeat("L", 2000)
	if r := mustAppend(t, b, pubID("long-id", long, `1`))[0]; !r.Duplicate || r.Seq != 1 {
		t.Fatalf("the long id again: %+v, want a duplicate of seq 1", r)
	}
	r := mustAppend(t, b, pubID("orders", "o-9", `{"n":9}`))[0]
	if r.Duplicate || r.Seq != 9 || r.Epoch != orders.Stat.Epoch {
		t.Fatalf("o-9: %+v, want seq 9 of epoch %d", r, orders.Stat.Epoch)
	}
	p := mustRead(t, b, "orders", longpoll.Position{Epoch: orders.Stat.Epoch, Seq: 8}, 10)
	if p.Gap != nil || len(p.Messages) != 1 || p.Messages[0].ID != "o-9" {
		t.Fatalf("read after seq 8 = %+v", p)
	}
	// The record of the topic appended to is now a format-2 one whose
	// checksums start at seq 9; the others are as they were.
	if st := inspect(t, b, "orders").st; st.sumFrom != 9 {
		t.Fatalf("orders sumFrom = %d, want 9", st.sumFrom)
	}
	if n := rawRecordLen(t, b, "chat/room.1"); n != topicStateLen1 {
		t.Fatalf("an untouched topic's record is %d bytes, want %d", n, topicStateLen1)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	logs.Reset()
	b = open()
	if strings.Contains(logs.String(), "checking it in full") {
		t.Errorf("a clean stop, yet the store was checked in full:\n%s", logs.String())
	}
	golden[0].Messages = golden[0].Messages[1:] // seq 4 dropped for 9
	golden[0].Stat.Oldest = 5
	for _, g := range golden {
		wantGolden(b, g, 8)
	}
}

func rawFormat(t *testing.T, b *Broker) uint64 {
	t.Helper()
	var v uint64
	err := b.db.View(func(tx *bbolt.Tx) error {
		var err error
		v, err = getUint64(tx.Bucket(bucketMeta).Get(keyFormat))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func rawRecordLen(t *testing.T, b *Broker, topic string) int {
	t.Helper()
	n := 0
	err := b.db.View(func(tx *bbolt.Tx) error {
		n = len(tx.Bucket(bucketTopics).Get([]byte(topic)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
