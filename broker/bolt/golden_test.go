package bolt_test

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/bolt"
)

// Golden data files: stores written by each format's own code, opened by
// today's. A layout change made to an encoder and its decoder together
// passes every round trip and breaks every store on disk; these fail.
//
// testdata/golden/format1.db was written by the code of commit 53f667d
// (format 1, no checksums) and format2.db by that of commit 1acc647
// (format 2, a CRC-32C after every value and topic record), each by the
// same throwaway test (package bolt, not committed) run in a git worktree
// of its commit:
//
//   - Open(dir, WithClock(clock), WithMaxMessages(4)), the clock at t1;
//   - one Append of orders o-1..o-4 ({"n":1}..{"n":4}), the four kinds
//     messages (the second with id "ü-2") and the long-id message (its
//     1025-byte id is one over what the ids bucket keeps as is, so it is
//     kept by its SHA-256);
//   - the clock at t2, one Append of orders o-5 and o-6: the retention of 4
//     drops o-1 and o-2, so a read from the start gets an expired gap of 2;
//   - Close, then the file cut to the pages in use (Tx.Size of a read-only
//     bbolt.Open), without bbolt's sparse 16 MiB of room to grow.
//
// Each is 9 bbolt pages (36 KiB). The epochs are those the two runs drew.
var goldenFiles = []struct {
	file   string
	epochs map[string]uint64
}{
	{"format1.db", map[string]uint64{
		"orders":  17261550388879844727,
		"kinds":   17963725350373875385,
		"long-id": 543265312114825271,
	}},
	{"format2.db", map[string]uint64{
		"orders":  8703247870385505523,
		"kinds":   15199933003220841906,
		"long-id": 15897579471485806438,
	}},
}

const (
	goldenT1 = "2025-01-02T03:04:05.123456789Z"
	goldenT2 = "2025-01-02T03:04:06.987654321Z"
	// goldenNow is the clock of the tests: an hour after t2, well within
	// the default MaxAge, so nothing expires by age.
	goldenNow = "2025-01-02T04:04:06.987654321Z"
)

type goldenMsg struct {
	seq            uint64
	time, id, data string
}

type goldenTopic struct {
	name         string
	head, oldest uint64
	missed       uint64 // the expired gap of a read from the start
	msgs         []goldenMsg
}

var longID = strings.Repeat("L", 1025)

// goldenTopics is what both files hold.
func goldenTopics() []goldenTopic {
	return []goldenTopic{
		{name: "orders", head: 6, oldest: 3, missed: 2, msgs: []goldenMsg{
			{3, goldenT1, "o-3", `{"n":3}`},
			{4, goldenT1, "o-4", `{"n":4}`},
			{5, goldenT2, "o-5", `{"n":5}`},
			{6, goldenT2, "o-6", `{"n":6}`},
		}},
		{name: "kinds", head: 4, oldest: 1, msgs: []goldenMsg{
			{1, goldenT1, "", `"héllo, wörld ✓ \"quoted\"\n\u00e9"`},
			{2, goldenT1, "ü-2", `[1,2.5,-3e-7,null,true,false]`},
			{3, goldenT1, "", `{"nested":{"a":[{}],"b":null},"s":""}`},
			{4, goldenT1, "", `-0.0125`},
		}},
		{name: "long-id", head: 1, oldest: 1, msgs: []goldenMsg{
			{1, goldenT1, longID, `null`},
		}},
	}
}

// The golden files open with today's code (format 1 is read as it is and
// marked format 2), read back every message and gap exactly, keep their
// idempotency ids, and stay so across reopening and further appends.
func TestGoldenFiles(t *testing.T) {
	now, err := time.Parse(time.RFC3339Nano, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range goldenFiles {
		t.Run(f.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "golden", f.file))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, bolt.FileName), raw, 0o600); err != nil {
				t.Fatal(err)
			}
			open := func() *bolt.Broker {
				t.Helper()
				b, err := bolt.Open(dir, bolt.WithClock(func() time.Time { return now }))
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				return b
			}
			closeB := func(b *bolt.Broker) {
				t.Helper()
				if err := b.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
			want := goldenTopics()

			b := open()
			checkGolden(t, b, f.epochs, want)
			// The ids bucket's keys, plain and hashed, still find their
			// messages.
			rs, err := b.Append(t.Context(), []longpoll.Publication{
				{Topic: "orders", ID: "o-3", Data: json.RawMessage(`{"n":3}`)},
				{Topic: "kinds", ID: "ü-2", Data: json.RawMessage(`[]`)},
				{Topic: "long-id", ID: longID, Data: json.RawMessage(`null`)},
			})
			if err != nil {
				t.Fatal(err)
			}
			wantRs := []longpoll.Receipt{
				{Topic: "orders", Epoch: f.epochs["orders"], Seq: 3, Duplicate: true},
				{Topic: "kinds", Epoch: f.epochs["kinds"], Seq: 2, Duplicate: true},
				{Topic: "long-id", Epoch: f.epochs["long-id"], Seq: 1, Duplicate: true},
			}
			for i := range wantRs {
				if rs[i] != wantRs[i] {
					t.Errorf("publishing a stored id again: receipt %+v, want %+v", rs[i], wantRs[i])
				}
			}
			closeB(b)
			if v := rawFormat(t, dir); v != 2 {
				t.Fatalf("format version after Open and Close = %d, want 2", v)
			}

			b = open()
			checkGolden(t, b, f.epochs, want)
			// Appends go on after the stored messages, in the same epoch.
			r, err := b.Append(t.Context(), []longpoll.Publication{{Topic: "orders", ID: "o-7", Data: json.RawMessage(`{"n":7}`)}})
			if err != nil {
				t.Fatal(err)
			}
			if wantR := (longpoll.Receipt{Topic: "orders", Epoch: f.epochs["orders"], Seq: 7}); r[0] != wantR {
				t.Fatalf("o-7: receipt %+v, want %+v", r[0], wantR)
			}
			closeB(b)

			b = open()
			defer closeB(b)
			want[0].head = 7
			want[0].msgs = append(want[0].msgs, goldenMsg{7, goldenNow, "o-7", `{"n":7}`})
			checkGolden(t, b, f.epochs, want)
		})
	}
}

// checkGolden checks every topic's stat, a read of it from the start and
// reads from positions inside it.
func checkGolden(t *testing.T, b *bolt.Broker, epochs map[string]uint64, want []goldenTopic) {
	t.Helper()
	for _, g := range want {
		epoch := epochs[g.name]
		st, err := b.Stat(t.Context(), g.name)
		if err != nil {
			t.Fatal(err)
		}
		if w := (longpoll.TopicStat{Epoch: epoch, Head: g.head, Oldest: g.oldest}); st != w {
			t.Errorf("Stat(%q) = %+v, want %+v", g.name, st, w)
		}
		var gap *longpoll.Gap
		if g.missed > 0 {
			gap = &longpoll.Gap{Topic: g.name, Reason: longpoll.GapExpired, Missed: g.missed}
		}
		checkPage(t, b, g.name, longpoll.Position{}, 100, gap, g.msgs, longpoll.Position{Epoch: epoch, Seq: g.head})
		// From each stored message's position: no gap, the rest.
		for i, m := range g.msgs {
			from := longpoll.Position{Epoch: epoch, Seq: m.seq}
			checkPage(t, b, g.name, from, 100, nil, g.msgs[i+1:], longpoll.Position{Epoch: epoch, Seq: g.head})
		}
		// From one before the oldest, two at a time: the gap counts only
		// what this reader missed, and the page stops at the limit.
		if g.missed > 0 {
			from := longpoll.Position{Epoch: epoch, Seq: g.oldest - 2}
			gap := &longpoll.Gap{Topic: g.name, Reason: longpoll.GapExpired, Missed: 1}
			checkPage(t, b, g.name, from, 2, gap, g.msgs[:2], longpoll.Position{Epoch: epoch, Seq: g.msgs[1].seq})
		}
	}
}

func checkPage(t *testing.T, b *bolt.Broker, topic string, from longpoll.Position, limit int,
	gap *longpoll.Gap, msgs []goldenMsg, next longpoll.Position) {
	t.Helper()
	p, err := b.Read(t.Context(), topic, from, limit)
	if err != nil {
		t.Fatalf("Read(%q, %+v): %v", topic, from, err)
	}
	if (p.Gap == nil) != (gap == nil) || (gap != nil && *p.Gap != *gap) {
		t.Errorf("Read(%q, %+v): gap %+v, want %+v", topic, from, p.Gap, gap)
	}
	if p.Next != next {
		t.Errorf("Read(%q, %+v): next %+v, want %+v", topic, from, p.Next, next)
	}
	if len(p.Messages) != len(msgs) {
		t.Fatalf("Read(%q, %+v): %d messages, want %d", topic, from, len(p.Messages), len(msgs))
	}
	for i, m := range p.Messages {
		w := msgs[i]
		got := goldenMsg{m.Seq, m.Time.Format(time.RFC3339Nano), m.ID, string(m.Data)}
		if m.Topic != topic || got != w {
			t.Errorf("Read(%q, %+v) message %d = %q %d %s %.20q %s, want %d %s %.20q %s", topic, from, i,
				m.Topic, got.seq, got.time, got.id, got.data, w.seq, w.time, w.id, w.data)
		}
	}
}

// rawFormat reads the format version of the closed store in dir.
func rawFormat(t *testing.T, dir string) uint64 {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, bolt.FileName), 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	var v uint64
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("meta")).Get([]byte("format"))
		if len(b) != 8 {
			t.Fatalf("format record %x", b)
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The golden files, written before the revoked bucket existed, open with
// today's code, which adds it; they list their topics as they hold them,
// and keep revocations and deletes across a clean reopen and one after a
// crash (whose full check, bbolt's and the store's own page walk, must
// accept the new bucket).
func TestGoldenFilesAdmin(t *testing.T) {
	now, err := time.Parse(time.RFC3339Nano, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := time.Parse(time.RFC3339Nano, goldenT2)
	if err != nil {
		t.Fatal(err)
	}
	t1, err := time.Parse(time.RFC3339Nano, goldenT1)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range goldenFiles {
		t.Run(f.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "golden", f.file))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, bolt.FileName)
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			if rawHasBucket(t, path, "revoked") {
				t.Fatal("the golden file has a revoked bucket already: this test needs one without")
			}
			open := func() *bolt.Broker {
				t.Helper()
				b, err := bolt.Open(dir, bolt.WithClock(func() time.Time { return now }))
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				return b
			}
			b := open()
			var want []longpoll.TopicInfo
			for _, g := range goldenTopics() {
				ti := longpoll.TopicInfo{Topic: g.name, Epoch: f.epochs[g.name], Head: g.head, Oldest: g.oldest,
					Retained: uint64(len(g.msgs)), LastPublish: t1}
				for _, m := range g.msgs {
					ti.Bytes += uint64(len(m.data))
					if m.time == goldenT2 {
						ti.LastPublish = t2
					}
				}
				want = append(want, ti)
			}
			// In byte order: kinds, long-id, orders.
			want[0], want[1], want[2] = want[1], want[2], want[0]
			ts, err := b.Topics(t.Context(), "", "", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) != len(want) {
				t.Fatalf("Topics = %+v, want %+v", ts, want)
			}
			for i := range ts {
				if ts[i] != want[i] {
					t.Errorf("Topics[%d] = %+v, want %+v", i, ts[i], want[i])
				}
			}

			rev := longpoll.Revocation{Subject: "bob", Before: t1.Truncate(time.Second), Expires: now.Add(time.Hour)}
			if err := b.Revoke(t.Context(), rev); err != nil {
				t.Fatal(err)
			}
			if had, err := b.DeleteTopic(t.Context(), "kinds"); err != nil || !had {
				t.Fatalf("DeleteTopic = %v, %v", had, err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if !rawHasBucket(t, path, "revoked") {
				t.Fatal("no revoked bucket after Open")
			}
			if v := rawFormat(t, dir); v != 2 {
				t.Fatalf("format version = %d, want 2", v)
			}

			for _, crashed := range []bool{false, true} {
				if crashed {
					rawDelete(t, path, "meta", "clean") // as after a crash: the full check runs
				}
				b = open()
				rs, err := b.Revocations(t.Context())
				if err != nil || len(rs) != 1 || rs[0].Subject != "bob" || !rs[0].Before.Equal(rev.Before) || !rs[0].Expires.Equal(rev.Expires) {
					t.Fatalf("Revocations after reopening (crashed %v) = %+v, %v; want %+v", crashed, rs, err, rev)
				}
				ts, err := b.Topics(t.Context(), "", "", 10)
				if err != nil || len(ts) != 2 || ts[0] != want[1] || ts[1] != want[2] {
					t.Fatalf("Topics after reopening (crashed %v) = %+v, %v; want %+v", crashed, ts, err, want[1:])
				}
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func rawHasBucket(t *testing.T, path, name string) bool {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	has := false
	err = db.View(func(tx *bbolt.Tx) error {
		has = tx.Bucket([]byte(name)) != nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return has
}

func rawDelete(t *testing.T, path, bucket, key string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	err = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte(bucket)).Delete([]byte(key)) })
	if err != nil {
		t.Fatal(err)
	}
}
