package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

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
//	                    d retained data bytes and the f and h they were
//	                    counted at, "<bytes>,<f>,<h>",
//	                    k token of the last append call (32 hex digits),
//	                    r its receipts (seqs joined by ",", a duplicate's
//	                    negated)
//	golden:{T}:l  list  the retained messages, oldest first:
//	                    "<time µs>,<len(id) in bytes>,<id><data>"
//	golden:{T}:i  hash  id -> seq (decimal) of each retained message with one
//	golden:{T}:d  string the epoch of the topic's deleted log
//
// and the store keeps (on a single Redis; see scripts.go for Cluster's
// per-slot topic index):
//
//	golden:topics                  sorted set  every topic name, score 0
//	golden:{revocations}:subjects  hash        subject -> "<before µs>,<expires µs>"
//	golden:{revocations}:announce  channel     "<before µs>,<expires µs>,<subject>"
//	golden:{nodes}:expiry          sorted set  node -> expiry (Unix µs)
//	golden:{nodes}:info            hash        node -> "<seen µs>,<info>"
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
	wantKeys := []string{"golden:topics", "golden:{kinds}:i", "golden:{kinds}:l", "golden:{kinds}:m",
		"golden:{orders}:i", "golden:{orders}:l", "golden:{orders}:m"}
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("keys %q, want %q", keys, wantKeys)
	}
	index, err := rc.ZRangeWithScores(ctx, "golden:topics", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []goredis.Z{{Member: "kinds"}, {Member: "orders"}}; !slices.Equal(index, want) {
		t.Fatalf("topic index %v, want %v", index, want)
	}
	// The index outlives the topics' keys: a listing prunes it.
	if ttl, err := rc.PTTL(ctx, "golden:topics").Result(); err != nil || ttl != -1 {
		t.Errorf("PTTL golden:topics = %v, %v; want none", ttl, err)
	}
	for _, k := range keys[1:] {
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
			map[string]string{"h": "6", "f": "3", "b": "448", "t": "1735787046987654", "x": "4", "d": "28,3,6", "r": "5,6,-4"},
			goldenOrders},
		{"kinds", goldenKindsList, goldenKindsIndex,
			map[string]string{"h": "4", "f": "1", "b": "523", "t": "1735787045123456", "x": "2", "d": "112,1,4", "r": "1,2,3,4"},
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

	// Logs stored before the topic index are not listed until their next
	// append.
	if ts, err := b.Topics(ctx, "", "", 10); err != nil || len(ts) != 0 {
		t.Fatalf("Topics before any append = %+v, %v; want none", ts, err)
	}
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
		"t": "1735787046987654", "x": "4", "d": "28,4,7", "r": "-4,7"}
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
		"t": "1735787045123456", "x": "2", "d": "112,1,4", "r": "-3"}
	if !maps.Equal(hash, wantHash) {
		t.Errorf("kinds hash (without k) = %q, want %q", hash, wantHash)
	}
	p = readOK(t, b, "orders", longpoll.Position{Epoch: epoch, Seq: 6}, 100)
	wantMessages(t, "Read orders after 6", "orders", p.Messages, []goldenMessage{{7, "2025-01-02T03:04:06.987654Z", "o-7", `{"n":7}`}})

	// Appended to, both are indexed and listed, their data bytes counted.
	ts, err := b.Topics(ctx, "", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	wantTopics := []longpoll.TopicInfo{
		{Topic: "kinds", Epoch: epoch, Head: 4, Oldest: 1, Retained: 4, Bytes: 112, LastPublish: goldenTime(goldenT1us)},
		{Topic: "orders", Epoch: epoch, Head: 7, Oldest: 4, Retained: 4, Bytes: 28, LastPublish: goldenTime(goldenT2us)},
	}
	if !slices.Equal(ts, wantTopics) {
		t.Fatalf("Topics = %+v, want %+v", ts, wantTopics)
	}
}

// A data byte count that does not match the log's f and h (left stale by
// a writer that does not keep it) is recounted, never trusted.
func TestGoldenStaleDataBytes(t *testing.T) {
	srv := redistest.Start(t)
	rc := client(t, srv)
	ctx := t.Context()
	base := "golden:{orders}:"
	if err := rc.HSet(ctx, base+"m", "e", "7", "h", "6", "f", "3", "b", "448", "t", "1735787046987654",
		"x", "4", "d", "1000,3,5").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.RPush(ctx, base+"l", goldenOrdersList).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.ZAdd(ctx, "golden:topics", goredis.Z{Member: "orders"}).Err(); err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{now: goldenTime(goldenT2us)}
	b := open(t, srv.URL(), WithPrefix("golden:"), WithClock(clk.Now))
	ts, err := b.Topics(ctx, "", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].Bytes != 28 || ts[0].Retained != 4 {
		t.Fatalf("Topics = %+v, want orders with 4 messages of 28 bytes", ts)
	}
	if d := srv.Do("hget", base+"m", "d"); d != "28,3,6" {
		t.Fatalf("recounted d = %q, want 28,3,6", d)
	}
}

// What DeleteTopic, Revoke and Heartbeat store, literal for literal, and
// what is read back from literals.
func TestGoldenStoredAdmin(t *testing.T) {
	srv := redistest.Start(t)
	clk := &fakeClock{now: goldenTime(goldenT1us)}
	b := open(t, srv.URL(), WithPrefix("golden:"), WithClock(clk.Now))
	rc := client(t, srv)
	ctx := t.Context()

	// DeleteTopic: the tombstone holds the epoch and expires like a log.
	r := appendOK(t, b, pub("gone", "1"))[0]
	if ok, err := b.DeleteTopic(ctx, "gone"); err != nil || !ok {
		t.Fatalf("DeleteTopic = %v, %v", ok, err)
	}
	keys, err := rc.Keys(ctx, "golden:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"golden:topics", "golden:{gone}:d"}; !slices.Equal(slices.Sorted(slices.Values(keys)), want) &&
		!slices.Equal(slices.Sorted(slices.Values(keys)), want[1:]) {
		t.Fatalf("keys after DeleteTopic %q, want %q", keys, want)
	}
	if d := srv.Do("get", "golden:{gone}:d"); d != strconv.FormatUint(r.Epoch, 10) {
		t.Fatalf("tombstone = %q, want the epoch %d", d, r.Epoch)
	}
	if ttl, _ := rc.PTTL(ctx, "golden:{gone}:d").Result(); ttl <= 0 || ttl > 86401*time.Second {
		t.Fatalf("PTTL of the tombstone = %v, want up to 86401 s", ttl)
	}
	if n := srv.Do("zcard", "golden:topics"); n != "0" {
		t.Fatalf("topic index holds %s names after the delete, want 0", n)
	}
	// The next log's epoch differs even from a tombstone that names the
	// one drawn: the tombstone goes with the new log.
	srv.Do("set", "golden:{gone}:d", "1")
	if ep := b.testEpoch("gone", 1); ep != 2 {
		t.Fatalf("epoch drawn 1 over a tombstone of 1: %d, want 2", ep)
	}
	srv.Do("set", "golden:{back}:d", "18446744073709551615")
	if ep := b.testEpoch("back", 18446744073709551615); ep != 18446744073709551614 {
		t.Fatalf("epoch drawn max over a tombstone of max: %d, want max-1", ep)
	}
	if n := srv.Do("exists", "golden:{back}:d"); n != "0" {
		t.Fatalf("the tombstone outlived the next log")
	}

	// Revoke: the hash and the announcement.
	ps := rc.Subscribe(ctx, "golden:{revocations}:announce")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Revoke(ctx, longpoll.Revocation{Subject: "user,1", Before: goldenTime(goldenT1us),
		Expires: goldenTime(goldenT2us)}); err != nil {
		t.Fatal(err)
	}
	if v := srv.Do("hget", "golden:{revocations}:subjects", "user,1"); v != "1735787045123456,1735787046987654" {
		t.Fatalf("revocation stored as %q", v)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Payload != "1735787045123456,1735787046987654,user,1" {
		t.Fatalf("revocation announced as %q", msg.Payload)
	}

	// Heartbeat: the expiry and the info, stamped by the clock.
	if err := b.Heartbeat(ctx, "n1", json.RawMessage(`{"a": 1}`), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	z, err := rc.ZRangeWithScores(ctx, "golden:{nodes}:expiry", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []goredis.Z{{Member: "n1", Score: goldenT1us + 2e6}}; !slices.Equal(z, want) {
		t.Fatalf("node expiry %v, want %v", z, want)
	}
	if v := srv.Do("hget", "golden:{nodes}:info", "n1"); v != `1735787045123456,{"a": 1}` {
		t.Fatalf("node info stored as %q", v)
	}
	for _, k := range []string{"golden:{nodes}:expiry", "golden:{nodes}:info"} {
		// A second past the expiry.
		if ttl, _ := rc.PTTL(ctx, k).Result(); ttl <= 2*time.Second || ttl > 3*time.Second {
			t.Errorf("PTTL %s = %v, want 3 s", k, ttl)
		}
	}

	// Read back from literals, as an earlier node would have left them.
	srv.Do("hset", "golden:{revocations}:subjects", "old", "1735787040000000,1735787045123457")
	srv.Do("zadd", "golden:{nodes}:expiry", "1735787045123457", "n0")
	srv.Do("hset", "golden:{nodes}:info", "n0", "1735787044000000,[1,2]")
	rs, err := b.Revocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantRs := []longpoll.Revocation{
		{Subject: "old", Before: goldenTime(1735787040000000), Expires: goldenTime(1735787045123457)},
		{Subject: "user,1", Before: goldenTime(goldenT1us), Expires: goldenTime(goldenT2us)},
	}
	if !slices.Equal(rs, wantRs) {
		t.Fatalf("Revocations = %+v, want %+v", rs, wantRs)
	}
	ns, err := b.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantNs := []longpoll.NodeRecord{
		{Node: "n0", Info: json.RawMessage(`[1,2]`), Seen: goldenTime(1735787044000000)},
		{Node: "n1", Info: json.RawMessage(`{"a": 1}`), Seen: goldenTime(goldenT1us)},
	}
	if !slices.EqualFunc(ns, wantNs, func(a, b longpoll.NodeRecord) bool {
		return a.Node == b.Node && string(a.Info) == string(b.Info) && a.Seen.Equal(b.Seen)
	}) {
		t.Fatalf("Nodes = %+v, want %+v", ns, wantNs)
	}
	// A µs later, old and n0 are expired: read no more, and deleted.
	clk.Add(time.Microsecond)
	if rs, err := b.Revocations(ctx); err != nil || len(rs) != 1 || rs[0].Subject != "user,1" {
		t.Fatalf("Revocations = %+v, %v; want user,1 alone", rs, err)
	}
	if ns, err := b.Nodes(ctx); err != nil || len(ns) != 1 || ns[0].Node != "n1" {
		t.Fatalf("Nodes = %+v, %v; want n1 alone", ns, err)
	}
	if v := srv.Do("hexists", "golden:{revocations}:subjects", "old"); v != "0" {
		t.Errorf("an expired revocation is still stored")
	}
	if v := srv.Do("hexists", "golden:{nodes}:info", "n0"); v != "0" {
		t.Errorf("an expired node's info is still stored")
	}
	if v := srv.Do("zscore", "golden:{nodes}:expiry", "n0"); v != "" {
		t.Errorf("an expired node's expiry is still stored: %q", v)
	}
}

// testEpoch appends one message to topic, a new log, as if epoch were
// drawn, and returns the log's epoch.
func (b *Broker) testEpoch(topic string, epoch uint64) uint64 {
	m, l, i := b.keys(topic)
	res, err := appendScript.Run(context.Background(), b.rdb,
		[]string{b.indexKey(topic), m, l, i, b.tombstoneKey(topic)},
		newToken(), b.nowArg(), 10, 1<<20, b.maxAgeMicros(), 60000, MessageOverhead, "PUBLISH", 1, "1",
		topic, strconv.FormatUint(epoch, 10), b.channel(topic), 1, "", "1").StringSlice()
	if err != nil || len(res) != 3 {
		panic(fmt.Sprint(res, err))
	}
	e, _ := strconv.ParseUint(res[0], 10, 64)
	return e
}
