package bolt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

// goldenTopic is what testdata/format1.json says a topic of
// testdata/format1/longpoll.db holds.
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

// format1Clock is the clock the format-1 file was written with: it starts
// at format1Start and ticks a millisecond per call.
var format1Start = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// TestWriteFormat1 wrote testdata/format1: a store in format version 1,
// written by the code of that version. It runs only when
// LONGPOLL_WRITE_FORMAT1 is set; once the format changed it must never be
// run again (it would write the new format).
func TestWriteFormat1(t *testing.T) {
	if os.Getenv("LONGPOLL_WRITE_FORMAT1") == "" {
		t.Skip("writes testdata/format1; set LONGPOLL_WRITE_FORMAT1=1 to run it")
	}
	var mu sync.Mutex
	now := format1Start
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Millisecond)
		return now
	}
	dir := filepath.Join("testdata", "format1")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir, WithClock(clock), WithMaxMessages(5), WithMaxAge(100*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// orders: 8 with ids, the first 3 dropped by retention.
	for i := 1; i <= 8; i++ {
		mustAppend(t, b, pubID("orders", "o-"+string(rune('0'+i)), `{"n":`+string(rune('0'+i))+`}`))
	}
	// chat/room.1: no ids, several kinds of JSON, appended together.
	mustAppend(t, b, pub("chat/room.1", `"héllo, wörld ✓"`), pub("chat/room.1", `[1,2.5,null,true]`),
		pub("chat/room.1", `{"nested":{"a":[{}]},"s":"\"quoted\"\n"}`))
	// long-id: an ID over 1 KiB, kept by its hash in the ids bucket.
	mustAppend(t, b, pubID("long-id", strings.Repeat("L", 2000), `0`))

	var golden []goldenTopic
	for _, name := range []string{"orders", "chat/room.1", "long-id"} {
		st := mustStat(t, b, name)
		p := mustRead(t, b, name, longpoll.Position{}, 100)
		g := goldenTopic{Name: name, Stat: goldenStat{st.Epoch, st.Head, st.Oldest}}
		for _, m := range p.Messages {
			g.Messages = append(g.Messages, goldenMessage{m.Seq, m.Time, m.ID, m.Data})
		}
		golden = append(golden, g)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(golden, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "format1.json"), append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	// Only the pages in use: the rest is room to grow into.
	path := filepath.Join(dir, FileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	used := validUsed(t, path)
	if err := os.WriteFile(path, data[:used], 0o644); err != nil {
		t.Fatal(err)
	}
}

// validUsed is the size of the pages a closed store's file uses.
func validUsed(t *testing.T, path string) int64 {
	t.Helper()
	b, err := Open(filepath.Dir(path), WithMaxAge(100*365*24*time.Hour), WithReclaimInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	used, _ := sizes(t, b)
	return used
}
