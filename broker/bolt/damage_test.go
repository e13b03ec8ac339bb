package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// markedPubs returns n publications to topic whose data hold a marker
// unique to each: {"n":i,"m":"<topic>#i#"}.
func markedPubs(topic string, n int) []longpoll.Publication {
	pubs := make([]longpoll.Publication, n)
	for i := range pubs {
		pubs[i] = pub(topic, fmt.Sprintf(`{"n":%d,"m":"%s#%d#"}`, i+1, topic, i+1))
	}
	return pubs
}

// flipInFile flips one bit of each of the given markers in the file at
// path, wherever it is (a page freed by a later commit may hold an old
// copy).
func flipInFile(t *testing.T, path string, markers ...string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range markers {
		if !bytes.Contains(data, []byte(m)) {
			t.Fatalf("marker %q is not in the file", m)
		}
		// A letter for another: the data stays valid JSON, which only a
		// checksum tells from what was written.
		for i := bytes.Index(data, []byte(m)); i >= 0; i = bytes.Index(data, []byte(m)) {
			data[i] ^= 0x01
		}
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantPage checks a page's gap, seqs and Next, and that every message's
// data is valid JSON and what was published.
func wantPage(t *testing.T, p longpoll.Page, gap *longpoll.Gap, first, last, next uint64) {
	t.Helper()
	if (gap == nil) != (p.Gap == nil) || (gap != nil && *gap != *p.Gap) {
		t.Fatalf("gap = %+v, want %+v", p.Gap, gap)
	}
	if first > last {
		if len(p.Messages) != 0 {
			t.Fatalf("got seqs %v, want none", seqsOf(p.Messages))
		}
	} else {
		wantSeqs(t, p.Messages, first, last)
	}
	for _, m := range p.Messages {
		want := fmt.Sprintf(`{"n":%d,"m":"%s#%d#"}`, m.Seq, m.Topic, m.Seq)
		if !json.Valid(m.Data) || string(m.Data) != want {
			t.Fatalf("seq %d data = %s, want %s", m.Seq, m.Data, want)
		}
	}
	if p.Next.Seq != next {
		t.Fatalf("Next = %+v, want seq %d", p.Next, next)
	}
}

// A stored message whose bytes changed is skipped as a corrupt gap, and
// delivery goes on after it; every message served is the one published.
func TestDamagedMessageIsCorruptGap(t *testing.T) {
	corrupt := func(n uint64) *longpoll.Gap {
		return &longpoll.Gap{Topic: "t", Reason: longpoll.GapCorrupt, Missed: n}
	}
	type read struct {
		from, limit       uint64
		gap               *longpoll.Gap
		first, last, next uint64
	}
	tests := []struct {
		name    string
		damaged []int
		reads   []read
	}{
		{"one in the middle", []int{5}, []read{
			{0, 100, nil, 1, 4, 4},
			{4, 100, corrupt(1), 6, 10, 10},
		}},
		{"two in a row", []int{5, 6}, []read{
			{0, 100, nil, 1, 4, 4},
			{4, 2, corrupt(2), 7, 8, 8},
		}},
		{"the first", []int{1}, []read{{0, 100, corrupt(1), 2, 10, 10}}},
		{"the last", []int{10}, []read{
			{0, 100, nil, 1, 9, 9},
			{9, 100, corrupt(1), 1, 0, 10},
			{10, 100, nil, 1, 0, 10},
		}},
		{"apart", []int{3, 7}, []read{
			{0, 100, nil, 1, 2, 2},
			{2, 100, corrupt(1), 4, 6, 6},
			{6, 100, corrupt(1), 8, 10, 10},
		}},
		{"all", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []read{{0, 100, corrupt(10), 1, 0, 10}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b := openDir(t, dir)
			epoch := mustAppend(t, b, markedPubs("t", 10)...)[0].Epoch
			mustAppend(t, b, markedPubs("u", 3)...)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			var markers []string
			for _, n := range tt.damaged {
				markers = append(markers, fmt.Sprintf("t#%d#", n))
			}
			flipInFile(t, filepath.Join(dir, FileName), markers...)

			b = openDir(t, dir, WithMaxMessages(12))
			for _, r := range tt.reads {
				from := longpoll.Position{Epoch: epoch, Seq: r.from}
				if r.from == 0 {
					from = longpoll.Position{}
				}
				wantPage(t, mustRead(t, b, "t", from, int(r.limit)), r.gap, r.first, r.last, r.next)
			}
			if st := mustStat(t, b, "t"); st.Head != 10 || st.Oldest != 1 {
				t.Fatalf("Stat = %+v", st)
			}
			// Another topic is untouched.
			wantPage(t, mustRead(t, b, "u", longpoll.Position{}, 100), nil, 1, 3, 3)
			// Appends go on, and retention drops damaged messages like
			// any other.
			mustAppend(t, b, pub("t", `{"n":11,"m":"t#11#"}`), pub("t", `{"n":12,"m":"t#12#"}`),
				pub("t", `{"n":13,"m":"t#13#"}`))
			if raw := inspect(t, b, "t"); raw.st.first != 2 || raw.stored != 12 {
				t.Fatalf("after 3 appends with retention 12: first %d, %d stored", raw.st.first, raw.stored)
			}
			wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: epoch, Seq: 10}, 100), nil, 11, 13, 13)
		})
	}
}

// editRaw changes a closed store with bbolt directly.
func editRaw(t *testing.T, dir string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, FileName), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedRecords(t *testing.T) {
	setup := func(t *testing.T) (string, uint64) {
		dir := t.TempDir()
		b := openDir(t, dir)
		epoch := mustAppend(t, b, markedPubs("t", 10)...)[0].Epoch
		mustAppend(t, b, markedPubs("u", 3)...)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		return dir, epoch
	}
	t.Run("message missing", func(t *testing.T) {
		dir, epoch := setup(t)
		editRaw(t, dir, func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMsgs).Bucket([]byte("t")).Delete(seqKey(5))
		})
		b := openDir(t, dir)
		wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 100), nil, 1, 4, 4)
		wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: epoch, Seq: 4}, 100),
			&longpoll.Gap{Topic: "t", Reason: longpoll.GapCorrupt, Missed: 1}, 6, 10, 10)
	})
	t.Run("messages bucket missing", func(t *testing.T) {
		dir, epoch := setup(t)
		editRaw(t, dir, func(tx *bbolt.Tx) error {
			// As a damaged key leaves it: the topic's bucket under
			// another name, which no topic record claims.
			msgs := tx.Bucket(bucketMsgs)
			if err := msgs.DeleteBucket([]byte("t")); err != nil {
				return err
			}
			_, err := msgs.CreateBucket([]byte("v"))
			return err
		})
		var logs testrun.Buffer
		b := openDir(t, dir, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 100),
			&longpoll.Gap{Topic: "t", Reason: longpoll.GapCorrupt, Missed: 10}, 1, 0, 10)
		// An append mends the topic (an empty bucket, logged) and goes on
		// from its head; the orphan bucket does not stop a new topic.
		r := mustAppend(t, b, pub("t", `{"n":11,"m":"t#11#"}`), pub("v", `{"n":1,"m":"v#1#"}`))
		if r[0].Seq != 11 || r[0].Epoch != epoch || r[1].Seq != 1 {
			t.Fatalf("appends after the damage: %+v", r)
		}
		if !strings.Contains(logs.String(), "messages bucket was missing") {
			t.Errorf("the mend was not logged:\n%s", logs.String())
		}
		wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: epoch, Seq: 10}, 100), nil, 11, 11, 11)
		wantPage(t, mustRead(t, b, "v", longpoll.Position{}, 100), nil, 1, 1, 1)
	})
	t.Run("value of format 1 that is not JSON", func(t *testing.T) {
		dir, epoch := setup(t)
		editRaw(t, dir, func(tx *bbolt.Tx) error {
			// The topic's record as format 1 wrote it: no value has a
			// checksum, so JSON is all a reader can check.
			raw := tx.Bucket(bucketTopics).Get([]byte("t"))
			if err := tx.Bucket(bucketTopics).Put([]byte("t"), append([]byte(nil), raw[:topicStateLen1]...)); err != nil {
				return err
			}
			msgs := tx.Bucket(bucketMsgs).Bucket([]byte("t"))
			for seq := uint64(1); seq <= 10; seq++ {
				v, _ := checkSum(msgs.Get(seqKey(seq)))
				v = append([]byte(nil), v...)
				if seq == 3 {
					v[len(v)-1] = ','
				}
				if err := msgs.Put(seqKey(seq), v); err != nil {
					return err
				}
			}
			return nil
		})
		b := openDir(t, dir)
		wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 100), nil, 1, 2, 2)
		wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: epoch, Seq: 2}, 100),
			&longpoll.Gap{Topic: "t", Reason: longpoll.GapCorrupt, Missed: 1}, 4, 10, 10)
	})
	t.Run("topic record", func(t *testing.T) {
		dir, _ := setup(t)
		editRaw(t, dir, func(tx *bbolt.Tx) error {
			raw := append([]byte(nil), tx.Bucket(bucketTopics).Get([]byte("t"))...)
			raw[9] ^= 0x40 // the head
			return tx.Bucket(bucketTopics).Put([]byte("t"), raw)
		})
		var logs testrun.Buffer
		b := openDir(t, dir, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), WithReclaimInterval(time.Hour))
		ctx := t.Context()
		_, rerr := b.Read(ctx, "t", longpoll.Position{}, 100)
		_, serr := b.Stat(ctx, "t")
		_, aerr := b.Append(ctx, []longpoll.Publication{pub("t", "1")})
		for name, err := range map[string]error{"Read": rerr, "Stat": serr, "Append": aerr} {
			var e *longpoll.Error
			if !errors.Is(err, ErrDamaged) || !errors.As(err, &e) || e.Code != longpoll.CodeInternal {
				t.Errorf("%s of a topic whose record is damaged: %v, want ErrDamaged (internal)", name, err)
			}
		}
		if !strings.Contains(logs.String(), "damaged data in the store") {
			t.Errorf("no log line of the damage:\n%s", logs.String())
		}
		// Other topics are untouched, and the reclaimer goes on.
		wantPage(t, mustRead(t, b, "u", longpoll.Position{}, 100), nil, 1, 3, 3)
		mustAppend(t, b, pub("u", `{"n":4,"m":"u#4#"}`))
		if _, err := b.reclaim(); err != nil {
			t.Fatalf("reclaim: %v", err)
		}
	})
}

// A message whose time cannot be read expires with the next readable one:
// never before its own time, since times never decrease.
func TestDamagedMessageExpiry(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	clock := func() time.Time { return now }
	opts := []Option{WithClock(clock), WithMaxAge(10 * time.Millisecond), WithReclaimInterval(time.Hour)}
	b := openDir(t, dir, opts...)
	var epoch uint64
	for i, p := range markedPubs("t", 5) {
		now = start.Add(time.Duration(i) * time.Millisecond) // seq i+1 at i ms
		epoch = mustAppend(t, b, p)[0].Epoch
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	flipInFile(t, filepath.Join(dir, FileName), "t#1#")
	b = openDir(t, dir, opts...)

	// Seq 1 is expired by its own time, not by its bound (seq 2's): it is
	// still offered, as a corrupt gap.
	now = start.Add(10*time.Millisecond + time.Microsecond)
	wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 100),
		&longpoll.Gap{Topic: "t", Reason: longpoll.GapCorrupt, Missed: 1}, 2, 5, 5)
	// Once seq 2 is expired, so is seq 1.
	now = start.Add(11*time.Millisecond + time.Microsecond)
	wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 100),
		&longpoll.Gap{Topic: "t", Reason: longpoll.GapExpired, Missed: 2}, 3, 5, 5)
	if st := mustStat(t, b, "t"); st.Oldest != 3 {
		t.Fatalf("Stat = %+v, want oldest 3", st)
	}
	// The reclaimer deletes both.
	if st, err := b.reclaim(); err != nil || st.Deleted != 2 {
		t.Fatalf("reclaim = %+v, %v; want 2 deleted", st, err)
	}
	wantPage(t, mustRead(t, b, "t", longpoll.Position{Epoch: epoch, Seq: 2}, 100), nil, 3, 5, 5)
}

// A page damaged while the store runs makes bbolt panic in a read: the
// read recovers and skips the messages it cannot reach as a corrupt gap.
func TestReadRecoversPanic(t *testing.T) {
	dir := t.TempDir()
	var logs testrun.Buffer
	b := openDir(t, dir, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	// About three messages a page: the damaged one holds a few.
	pubs := make([]longpoll.Publication, 60)
	for i := range pubs {
		pubs[i] = pub("t", fmt.Sprintf(`{"n":%d,"m":"t#%d#","pad":"%s"}`, i+1, i+1, strings.Repeat("x", 1200)))
	}
	epoch := mustAppend(t, b, pubs...)[0].Epoch
	data, err := os.ReadFile(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("t#30#"))
	if i < 0 || bytes.Count(data, []byte("t#30#")) != 1 {
		t.Fatal("marker not found once")
	}
	page := int64(i / 4096 * 4096)
	f, err := os.OpenFile(b.Path(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The page's type: bbolt panics on it ("invalid page type").
	if _, err := f.WriteAt([]byte{0x7f, 0x7f}, page+8); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	var got []uint64
	var gaps []longpoll.Gap
	pos := longpoll.Position{}
	for range 100 {
		p, err := b.Read(t.Context(), "t", pos, 100)
		if err != nil {
			t.Fatalf("Read from %+v: %v", pos, err)
		}
		if p.Gap != nil {
			gaps = append(gaps, *p.Gap)
		}
		got = append(got, seqsOf(p.Messages)...)
		if p.Next == pos {
			break
		}
		pos = p.Next
	}
	if len(gaps) != 1 || gaps[0].Reason != longpoll.GapCorrupt || gaps[0].Missed == 0 {
		t.Fatalf("gaps %+v, want one corrupt gap", gaps)
	}
	if uint64(len(got))+gaps[0].Missed != 60 || pos != (longpoll.Position{Epoch: epoch, Seq: 60}) {
		t.Fatalf("read %d messages and a gap of %d, ending at %+v; want all 60 accounted for", len(got), gaps[0].Missed, pos)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("seqs out of order: %v", got)
		}
	}
	if !strings.Contains(logs.String(), "damaged data in the store") {
		t.Errorf("no log line of the damage:\n%s", logs.String())
	}
}
