package redis

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/redis/redistest"
)

// The admin capabilities across broker instances (nodes) sharing one Redis
// or one Cluster, which the conformance suite, given one handle, cannot
// check.

func TestAdminAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	p := uniquePrefix()
	testAdminAcrossNodes(t, open(t, srv.URL(), WithPrefix(p)), open(t, srv.URL(), WithPrefix(p)))
}

func TestClusterAdminAcrossNodes(t *testing.T) {
	cl := redistest.StartCluster(t)
	p := uniquePrefix()
	a, b := open(t, cl.URL(), WithPrefix(p)), open(t, cl.URL(), WithPrefix(p))
	testAdminAcrossNodes(t, a, b)

	// The slot map and the slots' indexes, as scripts.go describes them.
	rc := clusterClient(t, cl)
	for _, topic := range []string{"del", "x-1", "x-2"} {
		if bit, err := rc.GetBit(t.Context(), p+"{topics}:slots", int64(keySlot(topic))).Result(); err != nil || bit != 1 {
			t.Fatalf("slot map bit of %q's slot %d = %d, %v; want 1", topic, keySlot(topic), bit, err)
		}
	}
	if n, err := rc.BitCount(t.Context(), p+"{topics}:slots", nil).Result(); err != nil || n > 3 {
		t.Fatalf("slot map holds %d slots, %v; want at most the 3 topics'", n, err)
	}
	for _, topic := range []string{"x-1", "x-2"} {
		key := p + "{" + slotTag(keySlot(topic)) + "}:topics"
		if names, err := rc.ZRange(t.Context(), key, 0, -1).Result(); err != nil || !slices.Contains(names, topic) {
			t.Fatalf("index %s = %q, %v; want it to hold %q", key, names, err, topic)
		}
	}

	// A slot's index created again (its topics pruned, here deleted with
	// the slot map) marks the slot again first.
	slotKey := p + "{" + slotTag(keySlot("x-1")) + "}:topics"
	for _, k := range []string{slotKey, p + "{topics}:slots"} {
		if err := rc.Del(t.Context(), k).Err(); err != nil {
			t.Fatal(err)
		}
	}
	appendOK(t, a, pub("x-1", "2"))
	if bit, err := rc.GetBit(t.Context(), p+"{topics}:slots", int64(keySlot("x-1"))).Result(); err != nil || bit != 1 {
		t.Fatalf("slot map bit after the index was created again = %d, %v; want 1", bit, err)
	}
	if ts, err := b.Topics(t.Context(), "x-1", "", 10); err != nil || len(ts) != 1 || ts[0].Head != 2 {
		t.Fatalf("Topics(x-1) = %+v, %v; want x-1 at head 2", ts, err)
	}
}

func testAdminAcrossNodes(t *testing.T, a, b *Broker) {
	ctx := t.Context()
	t.Run("DeleteWakesOtherNode", func(t *testing.T) {
		rs := appendOK(t, a, pub("del", "1"), pub("del", "2"))
		wake, woken := wakeChan()
		defer b.Watch("del", wake)()
		drain(woken)
		if ok, err := a.DeleteTopic(ctx, "del"); err != nil || !ok {
			t.Fatalf("DeleteTopic = %v, %v", ok, err)
		}
		waitWake(t, woken, "del deleted by the other node")
		p := readOK(t, b, "del", longpoll.Position{Epoch: rs[0].Epoch, Seq: 1}, 10)
		if p.Gap == nil || p.Gap.Reason != longpoll.GapReset || p.Next != (longpoll.Position{}) {
			t.Fatalf("Read of the old epoch on the other node = %+v, want a reset and Next zero", p)
		}
	})
	t.Run("RevocationsCrossNodes", func(t *testing.T) {
		got := make(chan longpoll.Revocation, 100)
		stop := b.WatchRevocations(func(r longpoll.Revocation) { got <- r })
		defer stop()
		r := longpoll.Revocation{Subject: "alice", Before: time.Unix(1_800_000_000, 0).UTC(),
			Expires: time.Now().Add(time.Hour).Truncate(time.Microsecond).UTC()}
		if err := a.Revoke(ctx, r); err != nil {
			t.Fatal(err)
		}
		select {
		case g := <-got:
			if !sameRevocation(g, r) {
				t.Fatalf("the other node's watcher got %+v, want %+v", g, r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the other node's watcher got no revocation")
		}
		rs, err := b.Revocations(ctx)
		if err != nil || len(rs) != 1 || !sameRevocation(rs[0], r) {
			t.Fatalf("Revocations on the other node = %+v, %v; want %+v", rs, err, r)
		}
	})
	t.Run("TopicsAndNodesShared", func(t *testing.T) {
		appendOK(t, a, pub("x-1", "1"))
		appendOK(t, b, pub("x-2", `"22"`))
		for _, br := range []*Broker{a, b} {
			ts, err := br.Topics(ctx, "x-", "", 10)
			if err != nil || len(ts) != 2 || ts[0].Topic != "x-1" || ts[1].Topic != "x-2" || ts[1].Bytes != 4 {
				t.Fatalf("Topics = %+v, %v; want x-1 and x-2 (4 bytes)", ts, err)
			}
		}
		if err := a.Heartbeat(ctx, "node-a", json.RawMessage(`{"a":1}`), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := b.Heartbeat(ctx, "node-b", json.RawMessage(`{"b":2}`), time.Minute); err != nil {
			t.Fatal(err)
		}
		ns, err := a.Nodes(ctx)
		if err != nil || len(ns) != 2 || ns[0].Node != "node-a" || ns[1].Node != "node-b" || string(ns[1].Info) != `{"b":2}` {
			t.Fatalf("Nodes = %+v, %v; want node-a and node-b", ns, err)
		}
	})
}

// A revocation whose announcement a watcher missed (stored while its
// subscription was down; here written without one) reaches it once the
// subscription is back.
func TestRevocationsResyncAfterReconnect(t *testing.T) {
	srv := redistest.Start(t)
	p := uniquePrefix()
	b := open(t, srv.URL(), WithPrefix(p))
	rc := client(t, srv)
	got := make(chan longpoll.Revocation, 100)
	stop := b.WatchRevocations(func(r longpoll.Revocation) { got <- r })
	defer stop()

	if err := rc.HSet(t.Context(), b.revocationsKey(), "missed", "1800000000000000,"+
		strconv.FormatInt(time.Now().Add(time.Hour).UnixMicro(), 10)).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		t.Fatalf("fn called with %+v before any announcement or reconnect", r)
	case <-time.After(100 * time.Millisecond):
	}
	if err := rc.Do(t.Context(), "client", "kill", "type", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-got:
			if r.Subject != "missed" || !r.Before.Equal(time.UnixMicro(1800000000000000)) {
				t.Fatalf("after the reconnect fn got %+v, want the missed revocation", r)
			}
			// And announcements still come.
			want := longpoll.Revocation{Subject: "later", Before: time.Unix(1, 0).UTC(), Expires: time.Now().Add(time.Hour).Truncate(time.Microsecond).UTC()}
			if err := b.Revoke(t.Context(), want); err != nil {
				t.Fatal(err)
			}
			for {
				select {
				case r := <-got:
					if sameRevocation(r, want) {
						return
					}
				case <-deadline:
					t.Fatal("no announcement after the reconnect")
				}
			}
		case <-deadline:
			t.Fatal("the missed revocation was not delivered after the reconnect")
		}
	}
}

// Through a Redis outage: the watcher's reads of the revocations fail and
// are retried, and a revocation stored once Redis is back reaches it,
// announced or read back after the resubscription, whichever comes first.
func TestRevocationsWatchThroughOutage(t *testing.T) {
	srv := redistest.Start(t)
	b := open(t, srv.URL(), WithPrefix(uniquePrefix()))
	got := make(chan longpoll.Revocation, 100)
	stop := b.WatchRevocations(func(r longpoll.Revocation) { got <- r })
	defer stop()
	srv.Kill()
	time.Sleep(300 * time.Millisecond) // some reads fail meanwhile
	srv.Restart()
	r := longpoll.Revocation{Subject: "after", Before: time.Unix(1, 0), Expires: time.Now().Add(time.Hour)}
	deadline := time.Now().Add(10 * time.Second)
	for err := b.Revoke(t.Context(), r); err != nil; err = b.Revoke(t.Context(), r) {
		if time.Now().After(deadline) {
			t.Fatalf("Revoke still failing after Redis came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case g := <-got:
		if g.Subject != "after" {
			t.Fatalf("after the outage fn got %+v, want after", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reached the watcher after the outage")
	}
}

// Topics whose logs expired (their keys gone) are pruned from the index
// when a listing meets them, and the page is filled from further names.
func TestTopicsPruneExpired(t *testing.T) {
	srv := redistest.Start(t)
	p := uniquePrefix()
	b := open(t, srv.URL(), WithPrefix(p))
	var names []string
	for i := range 8 {
		names = append(names, fmt.Sprintf("t%d", i))
		appendOK(t, b, pub(names[i], "1"))
	}
	// The logs of t0..t4 expire as Redis expires them: their keys' TTL
	// runs out (made short here).
	for _, topic := range names[:5] {
		m, l, i := b.keys(topic)
		for _, k := range []string{m, l, i} {
			srv.Do("pexpire", k, "1")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Do(append([]string{"exists"}, b.keys4(names[4])...)...) != "0" {
		if time.Now().After(deadline) {
			t.Fatal("keys did not expire")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := srv.Do("zcard", p+"topics"); n != "8" {
		t.Fatalf("index holds %s names before a listing, want 8", n)
	}
	ts, err := b.Topics(t.Context(), "", "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := topicNames(ts); !slices.Equal(got, []string{"t5", "t6"}) {
		t.Fatalf("first page by 2 = %q, want [t5 t6]", got)
	}
	if idx := srv.Do("zrange", p+"topics", "0", "-1"); idx != "t5\nt6\nt7" {
		t.Fatalf("index after the listing = %q, want t5 t6 t7", idx)
	}
	// An expired topic appended to again is listed again.
	appendOK(t, b, pub("t0", "2"))
	ts, err = b.Topics(t.Context(), "", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := topicNames(ts); !slices.Equal(got, []string{"t0", "t5", "t6", "t7"}) {
		t.Fatalf("listing = %q, want [t0 t5 t6 t7]", got)
	}
}

func sameRevocation(a, b longpoll.Revocation) bool {
	return a.Subject == b.Subject && a.Before.Equal(b.Before) && a.Expires.Equal(b.Expires)
}

func clusterClient(t *testing.T, cl *redistest.Cluster) *goredis.ClusterClient {
	var addrs []string
	for _, n := range cl.Nodes {
		addrs = append(addrs, n.Addr())
	}
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (b *Broker) keys4(topic string) []string {
	m, l, i := b.keys(topic)
	return []string{m, l, i}
}

func topicNames(ts []longpoll.TopicInfo) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Topic)
	}
	return out
}

// The index and the byte count are kept exact by the age retention too:
// a listing drops messages that MaxAge expired, like a read.
func TestTopicsAgeRetention(t *testing.T) {
	srv := redistest.Start(t)
	clk := &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	b := open(t, srv.URL(), WithPrefix(uniquePrefix()), WithMaxAge(time.Minute), WithClock(clk.Now))
	appendOK(t, b, pub("age", `"old"`))
	clk.Add(30 * time.Second)
	appendOK(t, b, pub("age", `"newer"`))
	clk.Add(31 * time.Second)
	ts, err := b.Topics(t.Context(), "", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := longpoll.TopicInfo{Topic: "age", Epoch: ts[0].Epoch, Head: 2, Oldest: 2, Retained: 1, Bytes: 7,
		LastPublish: time.Date(2030, 1, 2, 3, 4, 35, 0, time.UTC)}
	if len(ts) != 1 || ts[0] != want {
		t.Fatalf("Topics = %+v, want %+v", ts, want)
	}
	clk.Add(time.Minute)
	ts, err = b.Topics(t.Context(), "", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	want = longpoll.TopicInfo{Topic: "age", Epoch: ts[0].Epoch, Head: 2}
	if len(ts) != 1 || ts[0] != want {
		t.Fatalf("Topics with every message expired = %+v, want %+v", ts, want)
	}
}

// A revocation entry that cannot be read fails Revocations: dropping it
// would accept the subject's revoked tokens again.
func TestRevocationsMalformed(t *testing.T) {
	srv := redistest.Start(t)
	b := open(t, srv.URL(), WithPrefix(uniquePrefix()))
	srv.Do("hset", b.revocationsKey(), "bad", "not a revocation")
	if rs, err := b.Revocations(t.Context()); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("Revocations with a malformed entry = %+v, %v; want an error", rs, err)
	}
	if v := srv.Do("hget", b.revocationsKey(), "bad"); v != "not a revocation" {
		t.Fatalf("the malformed entry became %q, want it kept", v)
	}
}

func TestHeartbeatTTL(t *testing.T) {
	srv := redistest.Start(t)
	b := open(t, srv.URL(), WithPrefix(uniquePrefix()))
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := b.Heartbeat(t.Context(), "n", json.RawMessage(`{}`), ttl); err == nil {
			t.Errorf("Heartbeat with ttl %v succeeded", ttl)
		}
	}
}

func TestSlotTags(t *testing.T) {
	for s := range slots {
		tag := slotTag(s)
		if keySlot(tag) != s || len(tag) == 0 || len(tag) > 3 || strings.ContainsAny(tag, "{}") {
			t.Fatalf("slotTag(%d) = %q (slot %d)", s, tag, keySlot(tag))
		}
	}
	// Redis's own numbering: CLUSTER KEYSLOT of a few tags.
	srv := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", t.TempDir()+"/nodes.conf")
	for _, s := range []int{0, 1, 5461, 8000, 16383} {
		if got := srv.Do("cluster", "keyslot", "p{"+slotTag(s)+"}:topics"); got != strconv.Itoa(s) {
			t.Errorf("CLUSTER KEYSLOT of slot %d's index = %s", s, got)
		}
	}
}

func TestSuccessor(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", false},
		{"a", "b", true},
		{"room", "roon", true},
		{"a\xff", "b", true},
		{"a\xff\xff", "b", true},
		{"\xff", "", false},
		{"é", "\xc3\xaa", true},
	} {
		got, ok := successor(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("successor(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
