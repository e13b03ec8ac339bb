package redis

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/redis/redistest"
)

// Golden vectors of what the broker keeps in Redis (see scripts.go): the
// Lua scripts write it and the Lua scripts and decode read it, so a layout
// change made to both sides passes every round trip and strands every log
// in a running Redis. The literals below fail it.
//
// With the prefix "golden:", topic T has:
//
//	golden:{T}:m  hash  e epoch (decimal), h head seq, f first retained seq,
//	                    b retained bytes (len(id)+len(data)+len(T)+96 each),
//	                    t newest time (Unix µs), x size of the id index,
//	                    k token of the last append call (32 hex digits),
//	                    r its receipts (seqs joined by ",", a duplicate's
//	                    negated)
//	golden:{T}:l  list  the retained messages, oldest first:
//	                    "<time µs>,<len(id) in bytes>,<id><data>"
//	golden:{T}:i  hash  id -> seq (decimal) of each retained message with one
//
// All numbers are decimal text.

const (
	goldenT1us = 1735787045123456 // 2025-01-02T03:04:05.123456Z
	goldenT2us = 1735787046987654 // 2025-01-02T03:04:06.987654Z
)

// The lists and id indexes of two topics after this: with MaxMessages 4,
// at t1 one Append of orders o-1..o-4 ({"n":1}..) and the four kinds
// messages; at t2 one of orders o-5, o-6 and o-4 again (a duplicate),
// which drops o-1 and o-2.
var (
	goldenOrdersList = []string{
		`1735787045123456,3,o-3{"n":3}`,
		`1735787045123456,3,o-4{"n":4}`,
		`1735787046987654,3,o-5{"n":5}`,
		`1735787046987654,3,o-6{"n":6}`,
	}
	goldenOrdersIndex = map[string]string{"o-3": "3", "o-4": "4", "o-5": "5", "o-6": "6"}
	goldenKindsList   = []string{
		// no id; a string with non-ASCII bytes and escapes
		`1735787045123456,0,"héllo, wörld ✓ \"quoted\"\n\u00e9"`,
		// the id's length is in bytes: ü is two
		`1735787045123456,4,ü-2[1,2.5,-3e-7,null,true,false]`,
		// an id holding the separator: the length, not a comma, ends it
		`1735787045123456,3,a,b{"nested":{"a":[{}],"b":null},"s":""}`,
		`1735787045123456,0,-0.0125`,
	}
	goldenKindsIndex = map[string]string{"ü-2": "2", "a,b": "3"}
)

// goldenMessage is a message as Read returns it, time as RFC 3339.
type goldenMessage struct {
	seq            uint64
	time, id, data string
}

var (
	goldenOrders = []goldenMessage{
		{3, "2025-01-02T03:04:05.123456Z", "o-3", `{"n":3}`},
		{4, "2025-01-02T03:04:05.123456Z", "o-4", `{"n":4}`},
		{5, "2025-01-02T03:04:06.987654Z", "o-5", `{"n":5}`},
		{6, "2025-01-02T03:04:06.987654Z", "o-6", `{"n":6}`},
	}
	goldenKinds = []goldenMessage{
		{1, "2025-01-02T03:04:05.123456Z", "", `"héllo, wörld ✓ \"quoted\"\n\u00e9"`},
		{2, "2025-01-02T03:04:05.123456Z", "ü-2", `[1,2.5,-3e-7,null,true,false]`},
		{3, "2025-01-02T03:04:05.123456Z", "a,b", `{"nested":{"a":[{}],"b":null},"s":""}`},
		{4, "2025-01-02T03:04:05.123456Z", "", `-0.0125`},
	}
)

func goldenTime(us int64) time.Time { return time.UnixMicro(us).UTC() }

func wantMessages(t *testing.T, what, topic string, got []longpoll.Message, want []goldenMessage) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages, want %d", what, len(got), len(want))
	}
	for i, m := range got {
		g := goldenMessage{m.Seq, m.Time.Format(time.RFC3339Nano), m.ID, string(m.Data)}
		if m.Topic != topic || g != want[i] {
			t.Errorf("%s: message %d = %q %+v, want %q %+v", what, i, m.Topic, g, topic, want[i])
		}
	}
}

// decode, alone: the elements above, and ones it must refuse.
func TestGoldenDecodeElement(t *testing.T) {
	for _, c := range []struct {
		list []string
		msgs []goldenMessage
	}{{goldenOrdersList, goldenOrders}, {goldenKindsList, goldenKinds}} {
		for i, el := range c.list {
			m, err := decode("t", c.msgs[i].seq, el)
			if err != nil {
				t.Fatalf("decode(%q): %v", el, err)
			}
			wantMessages(t, "decode "+el, "t", []longpoll.Message{m}, c.msgs[i:i+1])
		}
	}
	for _, el := range []string{
		`0,0,null`, // 1970: the zero time is a valid stamp
		`-1,1,kx`,  // before 1970
	} {
		if _, err := decode("t", 1, el); err != nil {
			t.Errorf("decode(%q): %v", el, err)
		}
	}
	for _, el := range []string{
		``,
		`1735787045123456`,
		`1735787045123456,3`,
		`1735787045123456,3,o-`, // id longer than the rest
		`1735787045123456,-1,x`,
		`x,0,1`,
		`1735787045123456,x,1`,
		`1735787045123456.5,0,1`,
	} {
		if m, err := decode("t", 1, el); err == nil {
			t.Errorf("decode(%q) = %+v, want an error", el, m)
		}
	}
}

// What the append script writes, literal for literal, and what Read
// makes of it.
func TestGoldenStoredByAppend(t *testing.T) {
	srv := redistest.Start(t)
	clk := &fakeClock{now: goldenTime(goldenT1us)}
	b := open(t, srv.URL(), WithPrefix("golden:"), WithMaxMessages(4), WithClock(clk.Now))
	rc := client(t, srv)
	ctx := t.Context()

	pubs := []longpoll.Publication{
		{Topic: "orders", ID: "o-1", Data: json.RawMessage(`{"n":1}`)},
		{Topic: "orders", ID: "o-2", Data: json.RawMessage(`{"n":2}`)},
		{Topic: "orders", ID: "o-3", Data: json.RawMessage(`{"n":3}`)},
		{Topic: "orders", ID: "o-4", Data: json.RawMessage(`{"n":4}`)},
	}
	for _, m := range goldenKinds {
		pubs = append(pubs, longpoll.Publication{Topic: "kinds", ID: m.id, Data: json.RawMessage(m.data)})
	}
	appendOK(t, b, pubs...)
	clk.Add(goldenTime(goldenT2us).Sub(clk.Now()))
	rs := appendOK(t, b,
		longpoll.Publication{Topic: "orders", ID: "o-5", Data: json.RawMessage(`{"n":5}`)},
		longpoll.Publication{Topic: "orders", ID: "o-6", Data: json.RawMessage(`{"n":6}`)},
		longpoll.Publication{Topic: "orders", ID: "o-4", Data: json.RawMessage(`{"n":4}`)})
	if !rs[2].Duplicate || rs[2].Seq != 4 {
		t.Fatalf("o-4 again: %+v, want a duplicate of seq 4", rs[2])
	}

	keys, err := rc.Keys(ctx, "golden:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	wantKeys := []string{"golden:{kinds}:i", "golden:{kinds}:l", "golden:{kinds}:m",
		"golden:{orders}:i", "golden:{orders}:l", "golden:{orders}:m"}
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("keys %q, want %q", keys, wantKeys)
	}
	for _, k := range keys {
		// MaxAge (the default, 24 h) and a second.
		if ttl, err := rc.PTTL(ctx, k).Result(); err != nil || ttl <= 0 || ttl > 86401*time.Second {
			t.Errorf("PTTL %s = %v, %v; want up to 86401 s", k, ttl, err)
		}
	}

	token := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, c := range []struct {
		topic string
		list  []string
		index map[string]string
		hash  map[string]string // without e and k
		msgs  []goldenMessage
	}{
		{"orders", goldenOrdersList, goldenOrdersIndex,
			map[string]string{"h": "6", "f": "3", "b": "448", "t": "1735787046987654", "x": "4", "r": "5,6,-4"},
			goldenOrders},
		{"kinds", goldenKindsList, goldenKindsIndex,
			map[string]string{"h": "4", "f": "1", "b": "523", "t": "1735787045123456", "x": "2", "r": "1,2,3,4"},
			goldenKinds},
	} {
		list, err := rc.LRange(ctx, "golden:{"+c.topic+"}:l", 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(list, c.list) {
			t.Errorf("%s list =\n  %q\nwant\n  %q", c.topic, list, c.list)
		}
		index, err := rc.HGetAll(ctx, "golden:{"+c.topic+"}:i").Result()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(index, c.index) {
			t.Errorf("%s id index = %q, want %q", c.topic, index, c.index)
		}
		hash, err := rc.HGetAll(ctx, "golden:{"+c.topic+"}:m").Result()
		if err != nil {
			t.Fatal(err)
		}
		st, err := b.Stat(ctx, c.topic)
		if err != nil {
			t.Fatal(err)
		}
		if e := hash["e"]; e != strconv.FormatUint(st.Epoch, 10) {
			t.Errorf("%s hash e = %q, want the epoch %d in decimal", c.topic, e, st.Epoch)
		}
		if k := hash["k"]; !token.MatchString(k) {
			t.Errorf("%s hash k = %q, want 32 hex digits", c.topic, k)
		}
		delete(hash, "e")
		delete(hash, "k")
		if !maps.Equal(hash, c.hash) {
			t.Errorf("%s hash (without e, k) = %q, want %q", c.topic, hash, c.hash)
		}
		p := readOK(t, b, c.topic, longpoll.Position{}, 100)
		wantMessages(t, "Read "+c.topic, c.topic, p.Messages, c.msgs)
	}
}

// With Redis's own clock (the default) the time field is TIME in µs, and
// Read gives it back as the message's time.
func TestGoldenStoredTimeByRedis(t *testing.T) {
	srv := redistest.Start(t)
	b := open(t, srv.URL(), WithPrefix("golden:"))
	rc := client(t, srv)
	before := time.Now().UnixMicro()
	appendOK(t, b, longpoll.Publication{Topic: "t", ID: "i-1", Data: json.RawMessage(`{"k":true}`)})
	after := time.Now().UnixMicro()

	list, err := rc.LRange(t.Context(), "golden:{t}:l", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	el := regexp.MustCompile(`^([0-9]{16}),3,i-1\{"k":true\}$`)
	if len(list) != 1 || !el.MatchString(list[0]) {
		t.Fatalf("list = %q, want one element <16-digit µs>,3,i-1{\"k\":true}", list)
	}
	us, _ := strconv.ParseInt(el.FindStringSubmatch(list[0])[1], 10, 64)
	if us < before || us > after {
		t.Errorf("stamped %d µs, not between %d and %d", us, before, after)
	}
	if hashT, _ := rc.HGet(t.Context(), "golden:{t}:m", "t").Result(); hashT != strconv.FormatInt(us, 10) {
		t.Errorf("hash t = %q, want %d", hashT, us)
	}
	p := readOK(t, b, "t", longpoll.Position{}, 10)
	if len(p.Messages) != 1 || !p.Messages[0].Time.Equal(time.UnixMicro(us)) || p.Messages[0].Time.Location() != time.UTC {
		t.Fatalf("Read = %+v, want one message at %d µs, UTC", p.Messages, us)
	}
}

// Logs written into Redis as literals, as an earlier node would have left
// them, are read back exactly and appended to.
func TestGoldenReadStored(t *testing.T) {
	srv := redistest.Start(t)
	rc := client(t, srv)
	ctx := t.Context()
	const epoch = 12345678901234567890
	for _, c := range []struct {
		topic string
		list  []string
		index map[string]string
		hash  []string
	}{
		{"orders", goldenOrdersList, goldenOrdersIndex, []string{"e", "12345678901234567890", "h", "6", "f", "3",
			"b", "448", "t", "1735787046987654", "x", "4", "k", "0123456789abcdef0123456789abcdef", "r", "5,6,-4"}},
		{"kinds", goldenKindsList, goldenKindsIndex, []string{"e", "12345678901234567890", "h", "4", "f", "1",
			"b", "523", "t", "1735787045123456", "x", "2", "k", "0123456789abcdef0123456789abcdef", "r", "1,2,3,4"}},
	} {
		base := "golden:{" + c.topic + "}:"
		if err := rc.HSet(ctx, base+"m", c.hash).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rc.RPush(ctx, base+"l", c.list).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rc.HSet(ctx, base+"i", c.index).Err(); err != nil {
			t.Fatal(err)
		}
	}

	// The clock a second before the newest stored time: a new message is
	// stamped with t, which keeps times from going back.
	clk := &fakeClock{now: goldenTime(goldenT2us - 1e6)}
	b := open(t, srv.URL(), WithPrefix("golden:"), WithMaxBytes(523), WithClock(clk.Now))

	if st, err := b.Stat(ctx, "orders"); err != nil || st != (longpoll.TopicStat{Epoch: epoch, Head: 6, Oldest: 3}) {
		t.Fatalf("Stat(orders) = %+v, %v", st, err)
	}
	p := readOK(t, b, "orders", longpoll.Position{}, 100)
	if p.Gap == nil || *p.Gap != (longpoll.Gap{Topic: "orders", Reason: longpoll.GapExpired, Missed: 2}) ||
		p.Next != (longpoll.Position{Epoch: epoch, Seq: 6}) {
		t.Fatalf("Read(orders) gap %+v, next %+v; want 2 expired, next 6", p.Gap, p.Next)
	}
	wantMessages(t, "Read orders", "orders", p.Messages, goldenOrders)
	p = readOK(t, b, "kinds", longpoll.Position{}, 100)
	if p.Gap != nil || p.Next != (longpoll.Position{Epoch: epoch, Seq: 4}) {
		t.Fatalf("Read(kinds) gap %+v, next %+v; want none, next 4", p.Gap, p.Next)
	}
	wantMessages(t, "Read kinds", "kinds", p.Messages, goldenKinds)

	// The id index finds stored ids; a new message goes after the stored
	// ones, and the byte counts are read as stored: orders, 560 with it,
	// drops its oldest to keep within 523; kinds, at 523, drops none.
	rs := appendOK(t, b,
		longpoll.Publication{Topic: "orders", ID: "o-4", Data: json.RawMessage(`{"n":4}`)},
		longpoll.Publication{Topic: "orders", ID: "o-7", Data: json.RawMessage(`{"n":7}`)},
		longpoll.Publication{Topic: "kinds", ID: "a,b", Data: json.RawMessage(`0`)})
	want := []longpoll.Receipt{
		{Topic: "orders", Epoch: epoch, Seq: 4, Duplicate: true},
		{Topic: "orders", Epoch: epoch, Seq: 7},
		{Topic: "kinds", Epoch: epoch, Seq: 3, Duplicate: true},
	}
	if !slices.Equal(rs, want) {
		t.Fatalf("receipts %+v, want %+v", rs, want)
	}
	list, err := rc.LRange(ctx, "golden:{orders}:l", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	wantList := append(slices.Clone(goldenOrdersList[1:]), `1735787046987654,3,o-7{"n":7}`)
	if !slices.Equal(list, wantList) {
		t.Errorf("orders list =\n  %q\nwant\n  %q", list, wantList)
	}
	hash, err := rc.HGetAll(ctx, "golden:{orders}:m").Result()
	if err != nil {
		t.Fatal(err)
	}
	delete(hash, "k")
	wantHash := map[string]string{"e": "12345678901234567890", "h": "7", "f": "4", "b": "448",
		"t": "1735787046987654", "x": "4", "r": "-4,7"}
	if !maps.Equal(hash, wantHash) {
		t.Errorf("orders hash (without k) = %q, want %q", hash, wantHash)
	}
	index, err := rc.HGetAll(ctx, "golden:{orders}:i").Result()
	if err != nil {
		t.Fatal(err)
	}
	if wantIndex := map[string]string{"o-4": "4", "o-5": "5", "o-6": "6", "o-7": "7"}; !maps.Equal(index, wantIndex) {
		t.Errorf("orders id index = %q, want %q", index, wantIndex)
	}
	if list, err := rc.LRange(ctx, "golden:{kinds}:l", 0, -1).Result(); err != nil || !slices.Equal(list, goldenKindsList) {
		t.Errorf("kinds list =\n  %q, %v\nwant\n  %q", list, err, goldenKindsList)
	}
	hash, err = rc.HGetAll(ctx, "golden:{kinds}:m").Result()
	if err != nil {
		t.Fatal(err)
	}
	delete(hash, "k")
	wantHash = map[string]string{"e": "12345678901234567890", "h": "4", "f": "1", "b": "523",
		"t": "1735787045123456", "x": "2", "r": "-3"}
	if !maps.Equal(hash, wantHash) {
		t.Errorf("kinds hash (without k) = %q, want %q", hash, wantHash)
	}
	p = readOK(t, b, "orders", longpoll.Position{Epoch: epoch, Seq: 6}, 100)
	wantMessages(t, "Read orders after 6", "orders", p.Messages, []goldenMessage{{7, "2025-01-02T03:04:06.987654Z", "o-7", `{"n":7}`}})
}
