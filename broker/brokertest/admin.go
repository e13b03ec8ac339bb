package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

// The admin suite checks the capabilities of capability.go. Where their
// contract leaves a choice open, the suite decides as follows, and every
// broker of this module follows it:
//
//   - Topics returns full pages: a page shorter than limit ends the listing
//     (the server's admin API offers a next page only after a full one). A
//     topic whose retained messages all expired may be listed or not; the
//     suite never lets messages age.
//   - Topics lists names in byte order whatever bytes they hold, non-ASCII
//     UTF-8 included, although the server accepts fewer.
//   - Revocation times are kept to at least whole seconds: the suite revokes
//     with whole-second Before and Expires and compares them with Equal.
//     Revocations comes in any order; the suite sorts it by Subject.
//   - WatchRevocations passes fn either the Revocation given to Revoke or
//     the one stored after merging it with an earlier one.
//   - NodeRecord.Info comes back byte-identical to what Heartbeat was
//     given: a broker stores it as opaque bytes, never re-encoded.
//   - The capabilities' calls, like Broker's, return an error matching
//     context.Canceled for a cancelled context (and do nothing), and one
//     matching longpoll.ErrClosed after Close; WatchRevocations after Close
//     returns a stop that does nothing.
//
// The suite is given one handle on the store, so it cannot check that
// wake-ups, revocations and heartbeats cross nodes; a broker shared by
// nodes tests that with two handles of its own.

// RunAdmin runs the conformance suite of the admin capabilities
// (longpoll.TopicLister, TopicDeleter, Revoker and NodeRegistry). newBroker
// is as for Run, and must return a broker that implements all four; the
// suite closes it.
//
// One test waits on the real clock: node heartbeats expire by the store's
// own time (a Redis server's, say), which no injected clock reaches, so the
// test heartbeats with a one-second ttl and polls Nodes for at most
// NodeTTLWait until the node is gone.
func RunAdmin(t *testing.T, newBroker func(t *testing.T) longpoll.Broker) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, a admin)
	}{
		{"TopicsEmpty", testTopicsEmpty},
		{"TopicsByteOrderAndPrefix", testTopicsOrder},
		{"TopicsPaging", testTopicsPaging},
		{"TopicsDescribeLogs", testTopicsDescribe},
		{"TopicsPagingWhileOthersChange", testTopicsConcurrent},
		{"DeleteTopic", testDeleteTopic},
		{"DeleteTopicNewEpochs", testDeleteEpochs},
		{"DeleteTopicWithoutLog", testDeleteWithoutLog},
		{"Revoke", testRevoke},
		{"RevokeKeepsLaterTimes", testRevokeMerge},
		{"RevocationsExpire", testRevokeExpired},
		{"WatchRevocations", testWatchRevocations},
		{"WatchRevocationsStop", testWatchRevocationsStop},
		{"Heartbeat", testHeartbeat},
		{"NodesSortedByName", testNodesSorted},
		{"HeartbeatReplaces", testHeartbeatReplaces},
		{"NodesTTL", testNodesTTL},
		{"AdminCancelled", testAdminCancelled},
		{"AdminClose", testAdminClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t)
			t.Cleanup(func() { _ = b.Close() })
			tt.fn(t, asAdmin(t, b))
		})
	}
}

// RunAdminRetention runs the tests of the admin capabilities under
// count-based retention. newBroker is as for RunRetention, and must return a
// broker that implements the four capabilities of RunAdmin; the suite closes
// it.
func RunAdminRetention(t *testing.T, newBroker func(t *testing.T, maxMessages int) longpoll.Broker) {
	t.Helper()
	tests := []struct {
		name        string
		maxMessages int
		fn          func(t *testing.T, a admin)
	}{
		{"TopicsFollowRetention", 3, testAdminRetention},
		{"TopicsKeepOne", 1, testAdminRetentionOne},
		{"DeleteAfterRetention", 2, testAdminRetentionDelete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t, tt.maxMessages)
			t.Cleanup(func() { _ = b.Close() })
			tt.fn(t, asAdmin(t, b))
		})
	}
}

// NodeTTLWait bounds how long the suite polls Nodes for a heartbeat whose
// one-second ttl ran out.
const NodeTTLWait = 5 * time.Second

// admin is a broker with every admin capability.
type admin struct {
	longpoll.Broker
	longpoll.TopicLister
	longpoll.TopicDeleter
	longpoll.Revoker
	longpoll.NodeRegistry
}

func asAdmin(t *testing.T, b longpoll.Broker) admin {
	t.Helper()
	a := admin{Broker: b}
	var missing []string
	var ok bool
	if a.TopicLister, ok = b.(longpoll.TopicLister); !ok {
		missing = append(missing, "longpoll.TopicLister")
	}
	if a.TopicDeleter, ok = b.(longpoll.TopicDeleter); !ok {
		missing = append(missing, "longpoll.TopicDeleter")
	}
	if a.Revoker, ok = b.(longpoll.Revoker); !ok {
		missing = append(missing, "longpoll.Revoker")
	}
	if a.NodeRegistry, ok = b.(longpoll.NodeRegistry); !ok {
		missing = append(missing, "longpoll.NodeRegistry")
	}
	if len(missing) > 0 {
		t.Fatalf("brokertest.RunAdmin: %T does not implement %s", b, strings.Join(missing, ", "))
	}
	return a
}

// --- admin helpers -----------------------------------------------------------

// topics asks for one page and checks what every page must be: at most
// limit topics, in increasing byte order, each with prefix and after after.
func topics(t *testing.T, a admin, prefix, after string, limit int) []longpoll.TopicInfo {
	t.Helper()
	page, err := a.Topics(t.Context(), prefix, after, limit)
	if err != nil {
		t.Fatalf("Topics(%q, %q, %d): %v", prefix, after, limit, err)
	}
	if len(page) > limit {
		t.Fatalf("Topics(%q, %q, %d) returned %d topics", prefix, after, limit, len(page))
	}
	for i, ti := range page {
		if !strings.HasPrefix(ti.Topic, prefix) || ti.Topic <= after {
			t.Fatalf("Topics(%q, %q, %d) returned %q", prefix, after, limit, ti.Topic)
		}
		if i > 0 && ti.Topic <= page[i-1].Topic {
			t.Fatalf("Topics(%q, %q, %d) returned %q after %q: want strictly increasing byte order",
				prefix, after, limit, ti.Topic, page[i-1].Topic)
		}
	}
	return page
}

// listAll pages through the topics with prefix, limit at a time, until a
// page is short.
func listAll(t *testing.T, a admin, prefix, after string, limit int) []longpoll.TopicInfo {
	t.Helper()
	var all []longpoll.TopicInfo
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("paging Topics(%q) by %d does not end", prefix, limit)
		}
		page := topics(t, a, prefix, after, limit)
		all = append(all, page...)
		if len(page) < limit {
			return all
		}
		after = page[len(page)-1].Topic
	}
}

func topicNames(infos []longpoll.TopicInfo) []string {
	names := make([]string, len(infos))
	for i, ti := range infos {
		names[i] = ti.Topic
	}
	return names
}

func wantNames(t *testing.T, what string, got []longpoll.TopicInfo, want []string) {
	t.Helper()
	if names := topicNames(got); !slices.Equal(names, want) {
		t.Fatalf("%s: listed %q, want %q", what, names, want)
	}
}

// findTopic returns the listing of one topic, by a page that starts at it.
func findTopic(t *testing.T, a admin, topic string) (longpoll.TopicInfo, bool) {
	t.Helper()
	page := topics(t, a, topic, "", 1)
	if len(page) == 0 || page[0].Topic != topic {
		return longpoll.TopicInfo{}, false
	}
	return page[0], true
}

// wantInfo checks a topic's listing against what Stat and Read say of it:
// the same epoch, head and oldest; Retained and Bytes of the messages a
// reader gets; LastPublish the newest one's time.
func wantInfo(t *testing.T, a admin, ti longpoll.TopicInfo) {
	t.Helper()
	st := stat(t, a, ti.Topic)
	if ti.Epoch != st.Epoch || ti.Head != st.Head || ti.Oldest != st.Oldest {
		t.Fatalf("Topics lists %+v, Stat says %+v", ti, st)
	}
	p := read(t, a, ti.Topic, longpoll.Position{}, 100000)
	if p.Gap != nil && p.Gap.Reason != longpoll.GapExpired {
		t.Fatalf("Read(%q) from zero: gap %+v", ti.Topic, *p.Gap)
	}
	var size uint64
	for _, m := range p.Messages {
		size += uint64(len(m.Data))
	}
	if ti.Retained != uint64(len(p.Messages)) || ti.Bytes != size {
		t.Fatalf("Topics lists %q with %d messages of %d bytes, Read gets %d of %d",
			ti.Topic, ti.Retained, ti.Bytes, len(p.Messages), size)
	}
	if len(p.Messages) == 0 {
		if !ti.LastPublish.IsZero() {
			t.Fatalf("Topics lists %q without messages, last published %v: want zero", ti.Topic, ti.LastPublish)
		}
		return
	}
	if last := p.Messages[len(p.Messages)-1].Time; !ti.LastPublish.Equal(last) {
		t.Fatalf("Topics lists %q last published %v, its newest message has time %v", ti.Topic, ti.LastPublish, last)
	}
}

func deleteTopic(t *testing.T, a admin, topic string) bool {
	t.Helper()
	ok, err := a.DeleteTopic(t.Context(), topic)
	if err != nil {
		t.Fatalf("DeleteTopic(%q): %v", topic, err)
	}
	return ok
}

// wantNoLog checks that topic reads as one that never had a message.
func wantNoLog(t *testing.T, a admin, topic string, oldEpoch uint64) {
	t.Helper()
	if st := stat(t, a, topic); st != (longpoll.TopicStat{}) {
		t.Fatalf("Stat(%q) of a deleted topic = %+v, want zero", topic, st)
	}
	for _, seq := range []uint64{0, 1, 3, 4, 1 << 40} {
		from := longpoll.Position{Epoch: oldEpoch, Seq: seq}
		p := read(t, a, topic, from, 10)
		wantGap(t, p, topic, longpoll.GapReset, 0)
		if len(p.Messages) != 0 || p.Next != (longpoll.Position{}) {
			t.Fatalf("Read(%q, %+v) of a deleted topic = %+v, want no messages and Next zero", topic, from, p)
		}
	}
	// The zero Position reads the topic as it is: no log, so nothing and
	// no gap, as for a topic that never had a message.
	p := read(t, a, topic, longpoll.Position{}, 10)
	if p.Gap != nil || len(p.Messages) != 0 || p.Next != (longpoll.Position{}) {
		t.Fatalf("Read(%q) from zero of a deleted topic = %+v, want nothing, no gap, Next zero", topic, p)
	}
	if _, ok := findTopic(t, a, topic); ok {
		t.Fatalf("Topics lists %q after its log was deleted", topic)
	}
}

// second is a time to the second, as a store keeps revocations.
func second(d time.Duration) time.Time {
	return time.Now().Add(d).Truncate(time.Second).UTC()
}

func revoke(t *testing.T, a admin, r longpoll.Revocation) {
	t.Helper()
	if err := a.Revoke(t.Context(), r); err != nil {
		t.Fatalf("Revoke(%+v): %v", r, err)
	}
}

func sameRevocation(a, b longpoll.Revocation) bool {
	return a.Subject == b.Subject && a.Before.Equal(b.Before) && a.Expires.Equal(b.Expires)
}

// wantRevocations checks Revocations against want, sorted by subject.
func wantRevocations(t *testing.T, a admin, want ...longpoll.Revocation) {
	t.Helper()
	got, err := a.Revocations(t.Context())
	if err != nil {
		t.Fatalf("Revocations: %v", err)
	}
	slices.SortFunc(got, func(x, y longpoll.Revocation) int { return strings.Compare(x.Subject, y.Subject) })
	want = slices.Clone(want)
	slices.SortFunc(want, func(x, y longpoll.Revocation) int { return strings.Compare(x.Subject, y.Subject) })
	if !slices.EqualFunc(got, want, sameRevocation) {
		t.Fatalf("Revocations = %+v, want %+v", got, want)
	}
}

func revocationChan(room int) (func(longpoll.Revocation), chan longpoll.Revocation) {
	c := make(chan longpoll.Revocation, room)
	return func(r longpoll.Revocation) {
		select {
		case c <- r:
		default:
		}
	}, c
}

// waitRevocation waits on c for a revocation of subject and returns it;
// revocations of other subjects are skipped.
func waitRevocation(t *testing.T, c <-chan longpoll.Revocation, subject string) longpoll.Revocation {
	t.Helper()
	timeout := time.After(WakeTimeout)
	for {
		select {
		case r := <-c:
			if r.Subject == subject {
				return r
			}
		case <-timeout:
			t.Fatalf("WatchRevocations: no revocation of %q within %v", subject, WakeTimeout)
		}
	}
}

func heartbeat(t *testing.T, a admin, node string, info string, ttl time.Duration) {
	t.Helper()
	if err := a.Heartbeat(t.Context(), node, json.RawMessage(info), ttl); err != nil {
		t.Fatalf("Heartbeat(%q): %v", node, err)
	}
}

func nodes(t *testing.T, a admin) []longpoll.NodeRecord {
	t.Helper()
	ns, err := a.Nodes(t.Context())
	if err != nil {
		t.Fatalf("Nodes: %v", err)
	}
	for i := 1; i < len(ns); i++ {
		if ns[i].Node <= ns[i-1].Node {
			t.Fatalf("Nodes lists %q after %q: want strictly increasing names", ns[i].Node, ns[i-1].Node)
		}
	}
	return ns
}

func nodeNames(ns []longpoll.NodeRecord) []string {
	names := make([]string, len(ns))
	for i, n := range ns {
		names[i] = n.Node
	}
	return names
}

// clockSkew is how far a remote store's clock may be from the test's.
const clockSkew = time.Minute

// --- RunAdmin's tests: topics ------------------------------------------------

func testTopicsEmpty(t *testing.T, a admin) {
	for _, limit := range []int{1, 10} {
		if page := topics(t, a, "", "", limit); len(page) != 0 {
			t.Fatalf("Topics of an empty store = %+v, want none", page)
		}
	}
	// Watching and reading a topic does not create it.
	wake, _ := wakeChan(1)
	defer a.Watch("watched", wake)()
	read(t, a, "watched", longpoll.Position{}, 10)
	stat(t, a, "watched")
	if page := topics(t, a, "", "", 10); len(page) != 0 {
		t.Fatalf("Topics after a watch and a read = %+v, want none", page)
	}
}

// orderNames share prefixes and hold every kind of byte a topic may
// (protocol.ValidateTopic): '-' < '.' < '/' < digits < ':' < '@' < upper
// case < '_' < lower case.
var orderNames = []string{
	"room", "a", "a/b/c", "_x", "a.b", "A", "room10", "a-b", "ab", "a/b", "Z",
	"a_b", "@x/y", "a:b", "room1", "a@b", "0", "abc", "_xa", "a/bc", "room2",
	"@x", "b", "z", "a.b.c", "a-", "a.",
}

func testTopicsOrder(t *testing.T, a admin) {
	for i, name := range orderNames {
		appendOK(t, a, pub(name, num(i)))
	}
	sorted := slices.Sorted(slices.Values(orderNames))
	tests := []struct{ prefix, after string }{
		{"", ""},
		{"a", ""},
		{"a/", ""},
		{"a/b", ""},
		{"a.", ""},
		{"room", ""},
		{"room1", ""},
		{"_x", ""},
		{"@x", ""},
		{"zz", ""},
		{"", "a"},
		{"", "a/"},
		{"", "room1"},
		{"", "z"},
		{"", "@x/y"},
		{"a", "a.b"},
		{"a", "0"}, // after sorts before every name of the prefix
		{"a", "b"}, // and after every one
		{"room", "room10"},
		{"a/b", "a/b"},
		{"b", "a/b"},
	}
	for _, tt := range tests {
		var want []string
		for _, name := range sorted {
			if strings.HasPrefix(name, tt.prefix) && name > tt.after {
				want = append(want, name)
			}
		}
		what := fmt.Sprintf("Topics(%q, %q)", tt.prefix, tt.after)
		wantNames(t, what, topics(t, a, tt.prefix, tt.after, 1000), want)
		wantNames(t, what+" by 1", listAll(t, a, tt.prefix, tt.after, 1), want)
	}
}

func testTopicsPaging(t *testing.T, a admin) {
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("page-%02d", i))
	}
	for _, i := range []int{3, 7, 0, 9, 1, 5, 8, 2, 6, 4} {
		appendOK(t, a, pub(want[i], num(i)))
	}
	appendOK(t, a, pub("other", "1"), pub("pagf", "1"), pub("pag", "1"))
	for _, limit := range []int{1, 2, 3, 4, 9, 10, 11, 1000} {
		got := listAll(t, a, "page-", "", limit)
		wantNames(t, fmt.Sprintf("paging by %d", limit), got, want)
		// Each page but the last is full.
		if page := topics(t, a, "page-", "", limit); len(page) != min(limit, len(want)) {
			t.Fatalf("first page by %d holds %d topics, want %d", limit, len(page), min(limit, len(want)))
		}
	}
	all := listAll(t, a, "", "", 2)
	wantNames(t, "every topic by 2", all, slices.Concat([]string{"other", "pag"}, want, []string{"pagf"}))
}

func testTopicsDescribe(t *testing.T, a admin) {
	appendOK(t, a, pubID("desc-ids", "x", `"héllo wörld ☃"`), pubID("desc-ids", "y", `{"a": [1, 2]}`))
	appendOK(t, a, pubID("desc-ids", "x", `"a duplicate is not counted"`))
	appendOK(t, a, pub("desc-one", "1"))
	appendN(t, a, "desc-many", 25)
	appendOK(t, a,
		pub("desc-batch", `""`),
		pub("desc-many", `"26"`),
		pub("desc-batch", `[1,2,3]`),
	)

	all := listAll(t, a, "desc-", "", 1000)
	wantNames(t, "Topics", all, []string{"desc-batch", "desc-ids", "desc-many", "desc-one"})
	for _, ti := range all {
		wantInfo(t, a, ti)
	}
	byName := make(map[string]longpoll.TopicInfo)
	for _, ti := range all {
		byName[ti.Topic] = ti
	}
	if ti := byName["desc-ids"]; ti.Retained != 2 || ti.Bytes != uint64(len(`"héllo wörld ☃"`)+len(`{"a": [1, 2]}`)) {
		t.Fatalf("desc-ids listed %+v, want 2 messages of %d bytes", ti, len(`"héllo wörld ☃"`)+len(`{"a": [1, 2]}`))
	}
	if ti := byName["desc-many"]; ti.Head != 26 || ti.Oldest != 1 || ti.Retained != 26 {
		t.Fatalf("desc-many listed %+v, want head 26, oldest 1, 26 retained", ti)
	}

	// A later append shows in the next listing.
	before := byName["desc-one"]
	appendOK(t, a, pub("desc-one", `"two"`))
	ti, ok := findTopic(t, a, "desc-one")
	if !ok {
		t.Fatal("desc-one not listed")
	}
	wantInfo(t, a, ti)
	if ti.Head != 2 || ti.Retained != 2 || ti.Bytes != 1+uint64(len(`"two"`)) || ti.LastPublish.Before(before.LastPublish) {
		t.Fatalf("desc-one listed %+v after a second append (first listed %+v)", ti, before)
	}
}

// testTopicsConcurrent pages through topics that exist the whole time
// while other topics between them are created and deleted.
func testTopicsConcurrent(t *testing.T, a admin) {
	const stable, churners = 20, 2
	var want []string
	for i := range stable {
		want = append(want, fmt.Sprintf("conc-%02d", i))
		appendOK(t, a, pub(want[i], "1"))
	}
	done := make(chan struct{})
	started := make(chan struct{}, churners)
	errs := make(chan error, churners)
	var wg sync.WaitGroup
	for c := range churners {
		wg.Go(func() {
			ctx := context.Background()
			prev := ""
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				// Names that sort among the stable ones, before and after.
				topic := fmt.Sprintf("conc-%02d-%d-%d", (i*7+c)%(stable+1), c, i)
				if i%3 == 0 {
					topic = fmt.Sprintf("conc-%02d", (i+c)%stable) // a stable topic grows too
				}
				if _, err := a.Append(ctx, []longpoll.Publication{pub(topic, num(i))}); err != nil {
					errs <- fmt.Errorf("Append(%q): %w", topic, err)
					return
				}
				if prev != "" {
					if _, err := a.DeleteTopic(ctx, prev); err != nil {
						errs <- fmt.Errorf("DeleteTopic(%q): %w", prev, err)
						return
					}
				}
				prev = ""
				if i%3 != 0 {
					prev = topic
				}
				if i == 1 {
					started <- struct{}{}
				}
			}
		})
	}
	defer func() {
		close(done)
		wg.Wait()
		for range churners {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}()
	for range churners {
		select {
		case <-started:
		case <-time.After(WakeTimeout):
			t.Fatal("the concurrent appends did not start")
		}
	}

	for round := range 5 {
		for _, limit := range []int{1, 2, 3} {
			all := listAll(t, a, "conc-", "", limit)
			var got []string
			for _, ti := range all {
				if len(ti.Topic) == len("conc-00") {
					got = append(got, ti.Topic)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, paging by %d while other topics change: stable topics listed %q, want each once: %q",
					round, limit, got, want)
			}
		}
	}
}

// --- RunAdmin's tests: delete ------------------------------------------------

func testDeleteTopic(t *testing.T, a admin) {
	rs := appendOK(t, a, pubID("del", "x", "1"), pub("del", "2"), pubID("del", "y", "3"))
	old := rs[0].Epoch
	appendOK(t, a, pub("del-other", "1"), pubID("del-other", "x", "2"))
	otherStat := stat(t, a, "del-other")
	otherMsgs, _ := readAll(t, a, "del-other", longpoll.Position{}, 10)
	otherInfo, _ := findTopic(t, a, "del-other")
	if _, ok := findTopic(t, a, "del"); !ok {
		t.Fatal("del not listed before its delete")
	}

	wake, woken := wakeChan(10)
	stop := a.Watch("del", wake)
	defer stop()
	if !deleteTopic(t, a, "del") {
		t.Fatal("DeleteTopic of a topic with messages reported false")
	}
	waitWake(t, woken, "del")
	if deleteTopic(t, a, "del") {
		t.Fatal("second DeleteTopic reported true")
	}
	wantNoLog(t, a, "del", old)

	// Other topics are untouched.
	if st := stat(t, a, "del-other"); st != otherStat {
		t.Fatalf("Stat(del-other) = %+v after deleting del, was %+v", st, otherStat)
	}
	msgs, _ := readAll(t, a, "del-other", longpoll.Position{}, 10)
	if !slices.EqualFunc(msgs, otherMsgs, sameMessage) {
		t.Fatalf("del-other holds %+v after deleting del, held %+v", msgs, otherMsgs)
	}
	if ti, ok := findTopic(t, a, "del-other"); !ok || !sameInfo(ti, otherInfo) {
		t.Fatalf("del-other listed %+v after deleting del, was %+v", ti, otherInfo)
	}
	if r := appendOK(t, a, pubID("del-other", "x", "again"))[0]; !r.Duplicate {
		t.Fatalf("id x of del-other after deleting del: receipt %+v, want a duplicate", r)
	}

	// The next append starts a new epoch at seq 1; the ids are free.
	r := appendOK(t, a, pubID("del", "x", `"new"`))[0]
	if r.Duplicate || r.Seq != 1 || r.Epoch == old {
		t.Fatalf("append after delete: receipt %+v, want seq 1, not a duplicate, epoch other than %d", r, old)
	}
	if want := (longpoll.TopicStat{Epoch: r.Epoch, Head: 1, Oldest: 1}); stat(t, a, "del") != want {
		t.Fatalf("Stat after delete and append = %+v, want %+v", stat(t, a, "del"), want)
	}
	for _, seq := range []uint64{0, 1, 3} {
		p := read(t, a, "del", longpoll.Position{Epoch: old, Seq: seq}, 10)
		wantGap(t, p, "del", longpoll.GapReset, 0)
		wantSeqs(t, p.Messages, 1, 1)
		if string(p.Messages[0].Data) != `"new"` || p.Next != (longpoll.Position{Epoch: r.Epoch, Seq: 1}) {
			t.Fatalf("Read from the old epoch after a new append = %+v", p)
		}
	}
	ti, ok := findTopic(t, a, "del")
	if !ok {
		t.Fatal("del not listed after its new append")
	}
	wantInfo(t, a, ti)
	if ti.Epoch != r.Epoch || ti.Head != 1 || ti.Retained != 1 || ti.Bytes != uint64(len(`"new"`)) {
		t.Fatalf("del listed %+v after delete and append", ti)
	}
}

func sameMessage(x, y longpoll.Message) bool {
	return x.Topic == y.Topic && x.Seq == y.Seq && x.Time.Equal(y.Time) && x.ID == y.ID && bytes.Equal(x.Data, y.Data)
}

func sameInfo(x, y longpoll.TopicInfo) bool {
	lx, ly := x.LastPublish, y.LastPublish
	x.LastPublish, y.LastPublish = time.Time{}, time.Time{}
	return x == y && lx.Equal(ly)
}

func testDeleteEpochs(t *testing.T, a admin) {
	seen := make(map[uint64]int)
	for cycle := range 6 {
		rs := appendOK(t, a, pubID("cycle", "x", num(cycle)), pub("cycle", "2"))
		if rs[0].Seq != 1 || rs[0].Duplicate {
			t.Fatalf("cycle %d: first receipt %+v, want seq 1, not a duplicate", cycle, rs[0])
		}
		if c, ok := seen[rs[0].Epoch]; ok {
			t.Fatalf("cycle %d: epoch %d was the epoch of cycle %d", cycle, rs[0].Epoch, c)
		}
		seen[rs[0].Epoch] = cycle
		wake, woken := wakeChan(10)
		stop := a.Watch("cycle", wake)
		if !deleteTopic(t, a, "cycle") {
			t.Fatalf("cycle %d: DeleteTopic reported false", cycle)
		}
		waitWake(t, woken, "cycle")
		stop()
		wantNoLog(t, a, "cycle", rs[0].Epoch)
	}
}

func testDeleteWithoutLog(t *testing.T, a admin) {
	wake, _ := wakeChan(10)
	defer a.Watch("never", wake)()
	if deleteTopic(t, a, "never") {
		t.Fatal("DeleteTopic of a topic that never had a message reported true")
	}
	if deleteTopic(t, a, "never") {
		t.Fatal("second DeleteTopic of a topic that never had a message reported true")
	}
	if page := topics(t, a, "", "", 10); len(page) != 0 {
		t.Fatalf("Topics after deleting a topic without log = %+v, want none", page)
	}
	if st := stat(t, a, "never"); st != (longpoll.TopicStat{}) {
		t.Fatalf("Stat = %+v, want zero", st)
	}
	if r := appendOK(t, a, pub("never", "1"))[0]; r.Seq != 1 {
		t.Fatalf("first append after the delete: receipt %+v, want seq 1", r)
	}
}

// --- RunAdmin's tests: revocations -------------------------------------------

func testRevoke(t *testing.T, a admin) {
	wantRevocations(t, a)
	alice := longpoll.Revocation{Subject: "alice", Before: second(-time.Minute), Expires: second(time.Hour)}
	revoke(t, a, alice)
	wantRevocations(t, a, alice)
	revoke(t, a, alice) // the same again changes nothing
	wantRevocations(t, a, alice)

	subjects := []string{"bob", "user:42", "carol@example.com", "日本", "a/b c"}
	want := []longpoll.Revocation{alice}
	for i, s := range subjects {
		r := longpoll.Revocation{
			Subject: s,
			Before:  second(-time.Duration(i) * time.Hour),
			Expires: second(time.Duration(i+1) * time.Hour),
		}
		revoke(t, a, r)
		want = append(want, r)
	}
	wantRevocations(t, a, want...)
}

func testRevokeMerge(t *testing.T, a admin) {
	b1, b2 := second(-2*time.Hour), second(-time.Hour)
	e1, e2 := second(time.Hour), second(2*time.Hour)
	past := second(-time.Hour)
	tests := []struct {
		subject       string
		first, second [2]time.Time // Before, Expires
		want          [2]time.Time
	}{
		{"later-before-first", [2]time.Time{b2, e1}, [2]time.Time{b1, e2}, [2]time.Time{b2, e2}},
		{"later-before-second", [2]time.Time{b1, e2}, [2]time.Time{b2, e1}, [2]time.Time{b2, e2}},
		{"both-later-second", [2]time.Time{b1, e1}, [2]time.Time{b2, e2}, [2]time.Time{b2, e2}},
		{"both-later-first", [2]time.Time{b2, e2}, [2]time.Time{b1, e1}, [2]time.Time{b2, e2}},
		// A revocation already expired does not shorten one in force.
		{"expired-second", [2]time.Time{b1, e1}, [2]time.Time{b2, past}, [2]time.Time{b2, e1}},
	}
	var want []longpoll.Revocation
	for _, tt := range tests {
		revoke(t, a, longpoll.Revocation{Subject: tt.subject, Before: tt.first[0], Expires: tt.first[1]})
		revoke(t, a, longpoll.Revocation{Subject: tt.subject, Before: tt.second[0], Expires: tt.second[1]})
		want = append(want, longpoll.Revocation{Subject: tt.subject, Before: tt.want[0], Expires: tt.want[1]})
	}
	wantRevocations(t, a, want...)
}

func testRevokeExpired(t *testing.T, a admin) {
	alive := longpoll.Revocation{Subject: "alive", Before: second(0), Expires: second(time.Hour)}
	revoke(t, a, alive)
	revoke(t, a, longpoll.Revocation{Subject: "expired", Before: second(0), Expires: second(-time.Hour)})
	revoke(t, a, longpoll.Revocation{Subject: "long-expired", Before: second(-48 * time.Hour), Expires: second(-24 * time.Hour)})
	wantRevocations(t, a, alive)
}

func testWatchRevocations(t *testing.T, a admin) {
	before := longpoll.Revocation{Subject: "before", Before: second(0), Expires: second(time.Hour)}
	revoke(t, a, before)
	fn, got := revocationChan(100)
	stop := a.WatchRevocations(fn)
	defer stop()

	var rs []longpoll.Revocation
	for i, s := range []string{"w-alice", "w-bob", "w-carol"} {
		rs = append(rs, longpoll.Revocation{Subject: s, Before: second(-time.Duration(i) * time.Minute), Expires: second(time.Hour)})
	}
	for _, r := range rs {
		revoke(t, a, r)
	}
	for _, r := range rs {
		if g := waitRevocation(t, got, r.Subject); !sameRevocation(g, r) {
			t.Fatalf("WatchRevocations got %+v, want %+v", g, r)
		}
	}

	// Over an earlier revocation, fn gets what was given or what is stored.
	given := longpoll.Revocation{Subject: "w-alice", Before: second(-time.Hour), Expires: second(2 * time.Hour)}
	stored := longpoll.Revocation{Subject: "w-alice", Before: rs[0].Before, Expires: given.Expires}
	revoke(t, a, given)
	if g := waitRevocation(t, got, "w-alice"); !sameRevocation(g, given) && !sameRevocation(g, stored) {
		t.Fatalf("WatchRevocations got %+v, want %+v or %+v", g, given, stored)
	}
	wantRevocations(t, a, before, stored, rs[1], rs[2])
}

func testWatchRevocationsStop(t *testing.T, a admin) {
	fn1, got1 := revocationChan(100)
	fn2, got2 := revocationChan(100)
	stop1 := a.WatchRevocations(fn1)
	stop2 := a.WatchRevocations(fn2)
	defer stop2()

	first := longpoll.Revocation{Subject: "first", Before: second(0), Expires: second(time.Hour)}
	revoke(t, a, first)
	waitRevocation(t, got1, "first")
	waitRevocation(t, got2, "first")

	stop1()
	stop1() // stop is idempotent
	revoke(t, a, longpoll.Revocation{Subject: "after-stop", Before: second(0), Expires: second(time.Hour)})
	// Once the second watcher has the revocation, the first must not.
	waitRevocation(t, got2, "after-stop")
	for {
		select {
		case r := <-got1:
			if r.Subject == "after-stop" {
				t.Fatalf("fn called with %+v after stop", r)
			}
			continue
		default:
		}
		break
	}

	// A later watcher is not affected by the old stop.
	fn3, got3 := revocationChan(100)
	stop3 := a.WatchRevocations(fn3)
	defer stop3()
	stop1()
	revoke(t, a, longpoll.Revocation{Subject: "third", Before: second(0), Expires: second(time.Hour)})
	waitRevocation(t, got3, "third")
}

// --- RunAdmin's tests: nodes -------------------------------------------------

// nodeInfo has spaces and key order that re-encoding would change.
const nodeInfo = `{"node": "n1",  "version":"1.2.3", "a" : ["é", 1.50, {"z":null}] }`

func testHeartbeat(t *testing.T, a admin) {
	if ns := nodes(t, a); len(ns) != 0 {
		t.Fatalf("Nodes of an empty store = %+v, want none", ns)
	}
	info := []byte(nodeInfo)
	before := time.Now()
	if err := a.Heartbeat(t.Context(), "n1", info, time.Minute); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	after := time.Now()
	copy(info, `{"changed":"by the caller"}`) // the store keeps its own copy

	ns := nodes(t, a)
	if len(ns) != 1 || ns[0].Node != "n1" {
		t.Fatalf("Nodes = %+v, want n1", ns)
	}
	if string(ns[0].Info) != nodeInfo {
		t.Fatalf("Nodes gives info %s, want the bytes given %s", ns[0].Info, nodeInfo)
	}
	if seen := ns[0].Seen; seen.Before(before.Add(-clockSkew)) || seen.After(after.Add(clockSkew)) {
		t.Fatalf("Nodes gives Seen %v for a heartbeat between %v and %v", seen, before, after)
	}
	copy(ns[0].Info, `{"changed":"by the reader"}`)
	if ns := nodes(t, a); len(ns) != 1 || string(ns[0].Info) != nodeInfo {
		t.Fatalf("Nodes after a reader changed its info = %+v, want info %s", ns, nodeInfo)
	}
}

func testNodesSorted(t *testing.T, a admin) {
	names := []string{"node-c", "node-a", "Node-z", "node-b", "node-a-1", "node-a.1", "node-a/1", "10.0.0.2:8080", "10.0.0.10:8080"}
	for i, n := range names {
		heartbeat(t, a, n, fmt.Sprintf(`{"i":%d}`, i), time.Minute)
	}
	ns := nodes(t, a)
	if got, want := nodeNames(ns), slices.Sorted(slices.Values(names)); !slices.Equal(got, want) {
		t.Fatalf("Nodes = %q, want %q", got, want)
	}
	for _, n := range ns {
		i := slices.Index(names, n.Node)
		if string(n.Info) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("node %q has info %s, want {\"i\":%d}", n.Node, n.Info, i)
		}
	}
}

func testHeartbeatReplaces(t *testing.T, a admin) {
	heartbeat(t, a, "n", `{"beat":1}`, time.Minute)
	heartbeat(t, a, "other", `{"beat":1}`, time.Minute)
	first := nodes(t, a)
	heartbeat(t, a, "n", `{"beat":2, "more": true}`, time.Minute)
	ns := nodes(t, a)
	if got := nodeNames(ns); !slices.Equal(got, []string{"n", "other"}) {
		t.Fatalf("Nodes = %q after a second heartbeat, want [n other]", got)
	}
	if string(ns[0].Info) != `{"beat":2, "more": true}` {
		t.Fatalf("n has info %s after a second heartbeat, want the second's", ns[0].Info)
	}
	if ns[0].Seen.Before(first[0].Seen) {
		t.Fatalf("n seen at %v after a second heartbeat, before the first's %v", ns[0].Seen, first[0].Seen)
	}
	if string(ns[1].Info) != `{"beat":1}` || !ns[1].Seen.Equal(first[1].Seen) {
		t.Fatalf("other = %+v after n's second heartbeat, was %+v", ns[1], first[1])
	}
}

// testNodesTTL waits on the real clock, by polling Nodes, for a heartbeat's
// ttl to run out: stores expire heartbeats by their own time (a Redis
// server's), which no injected clock reaches.
func testNodesTTL(t *testing.T, a admin) {
	const ttl = time.Second
	start := time.Now()
	heartbeat(t, a, "renewed", `{}`, ttl)
	heartbeat(t, a, "short", `{}`, ttl)
	heartbeat(t, a, "long", `{}`, time.Hour)
	heartbeat(t, a, "renewed", `{"renewed":true}`, time.Hour) // replaces the ttl too
	ns := nodes(t, a)
	if time.Since(start) < ttl/2 {
		if got := nodeNames(ns); !slices.Equal(got, []string{"long", "renewed", "short"}) {
			t.Fatalf("Nodes = %q within half the ttl, want [long renewed short]", got)
		}
	}
	for {
		ns = nodes(t, a)
		if !slices.Contains(nodeNames(ns), "short") {
			break
		}
		if time.Since(start) > NodeTTLWait {
			t.Fatalf("a node heartbeating with ttl %v is still listed after %v", ttl, NodeTTLWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := nodeNames(ns); !slices.Equal(got, []string{"long", "renewed"}) {
		t.Fatalf("Nodes = %q once short's ttl ran out, want [long renewed]", got)
	}
	if string(ns[1].Info) != `{"renewed":true}` {
		t.Fatalf("renewed has info %s, want the second heartbeat's", ns[1].Info)
	}
}

// --- RunAdmin's tests: cancel and close --------------------------------------

func testAdminCancelled(t *testing.T, a admin) {
	appendOK(t, a, pub("cancel", "1"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	wantCanceled := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", what, err)
		}
	}
	_, err := a.Topics(ctx, "", "", 10)
	wantCanceled("Topics", err)
	_, err = a.DeleteTopic(ctx, "cancel")
	wantCanceled("DeleteTopic", err)
	wantCanceled("Revoke", a.Revoke(ctx, longpoll.Revocation{Subject: "s", Before: second(0), Expires: second(time.Hour)}))
	_, err = a.Revocations(ctx)
	wantCanceled("Revocations", err)
	wantCanceled("Heartbeat", a.Heartbeat(ctx, "n", json.RawMessage(`{}`), time.Minute))
	_, err = a.Nodes(ctx)
	wantCanceled("Nodes", err)

	// Nothing was done.
	if st := stat(t, a, "cancel"); st.Head != 1 {
		t.Fatalf("Stat after a cancelled DeleteTopic = %+v, want head 1", st)
	}
	wantRevocations(t, a)
	if ns := nodes(t, a); len(ns) != 0 {
		t.Fatalf("Nodes after a cancelled Heartbeat = %+v, want none", ns)
	}
}

func testAdminClose(t *testing.T, a admin) {
	appendOK(t, a, pub("close", "1"))
	fn, _ := revocationChan(10)
	stop := a.WatchRevocations(fn)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	stop() // stopping a watch after Close is harmless

	wantClosed := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, longpoll.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	_, err := a.Topics(t.Context(), "", "", 10)
	wantClosed("Topics", err)
	_, err = a.DeleteTopic(t.Context(), "close")
	wantClosed("DeleteTopic", err)
	wantClosed("Revoke", a.Revoke(t.Context(), longpoll.Revocation{Subject: "s", Before: second(0), Expires: second(time.Hour)}))
	_, err = a.Revocations(t.Context())
	wantClosed("Revocations", err)
	wantClosed("Heartbeat", a.Heartbeat(t.Context(), "n", json.RawMessage(`{}`), time.Minute))
	_, err = a.Nodes(t.Context())
	wantClosed("Nodes", err)
	a.WatchRevocations(fn)() // may do nothing, must not panic or block
}

// --- RunAdminRetention's tests (maxMessages as given in the table) ---------

func testAdminRetention(t *testing.T, a admin) {
	data := []string{"1", "22", "333", "4444", "55555"}
	var rs []longpoll.Receipt
	for _, d := range data {
		rs = append(rs, appendOK(t, a, pub("ret-admin", d))...)
	}
	ti, ok := findTopic(t, a, "ret-admin")
	if !ok {
		t.Fatal("ret-admin not listed")
	}
	wantInfo(t, a, ti)
	want := longpoll.TopicInfo{Topic: "ret-admin", Epoch: rs[0].Epoch, Head: 5, Oldest: 3, Retained: 3, Bytes: 3 + 4 + 5}
	if ti.LastPublish = (time.Time{}); ti != want {
		t.Fatalf("listed %+v after 5 appends keeping 3, want %+v", ti, want)
	}

	// A batch larger than the limit keeps its own newest messages.
	appendOK(t, a, pub("ret-admin", `"a"`), pubID("ret-admin", "i", `"bb"`), pub("ret-admin", `"ccc"`), pub("ret-admin", `"dddd"`))
	ti, _ = findTopic(t, a, "ret-admin")
	wantInfo(t, a, ti)
	want = longpoll.TopicInfo{Topic: "ret-admin", Epoch: rs[0].Epoch, Head: 9, Oldest: 7, Retained: 3, Bytes: 4 + 5 + 6}
	if ti.LastPublish = (time.Time{}); ti != want {
		t.Fatalf("listed %+v after a batch of 4 keeping 3, want %+v", ti, want)
	}

	// A duplicate changes nothing.
	if r := appendOK(t, a, pubID("ret-admin", "i", `"again"`))[0]; !r.Duplicate {
		t.Fatalf("receipt %+v, want a duplicate", r)
	}
	ti, _ = findTopic(t, a, "ret-admin")
	wantInfo(t, a, ti)
	if ti.Head != 9 || ti.Retained != 3 || ti.Bytes != 15 {
		t.Fatalf("listed %+v after a duplicate, want head 9, 3 messages of 15 bytes", ti)
	}
	// One more drops the oldest retained.
	appendOK(t, a, pub("ret-admin", "1234567890"))
	ti, _ = findTopic(t, a, "ret-admin")
	wantInfo(t, a, ti)
	if ti.Head != 10 || ti.Oldest != 8 || ti.Retained != 3 || ti.Bytes != 5+6+10 {
		t.Fatalf("listed %+v, want head 10, oldest 8, 3 messages of 21 bytes", ti)
	}
}

func testAdminRetentionOne(t *testing.T, a admin) {
	for i, d := range []string{"1", `"longer"`, "[]", `{"k":"v"}`} {
		appendOK(t, a, pub("ret-one", d), pub("ret-one-other", d))
		for _, topic := range []string{"ret-one", "ret-one-other"} {
			ti, ok := findTopic(t, a, topic)
			if !ok {
				t.Fatalf("%s not listed", topic)
			}
			wantInfo(t, a, ti)
			if h := uint64(i + 1); ti.Head != h || ti.Oldest != h || ti.Retained != 1 || ti.Bytes != uint64(len(d)) {
				t.Fatalf("listed %+v, want head and oldest %d, one message of %d bytes", ti, h, len(d))
			}
		}
	}
}

func testAdminRetentionDelete(t *testing.T, a admin) {
	rs := appendOK(t, a, pubID("ret-del", "a", "1"), pubID("ret-del", "b", "2"), pubID("ret-del", "c", "3"))
	old := rs[0].Epoch
	if !deleteTopic(t, a, "ret-del") {
		t.Fatal("DeleteTopic reported false")
	}
	wantNoLog(t, a, "ret-del", old)
	// Both the dropped id and the retained ones are free.
	rs = appendOK(t, a, pubID("ret-del", "a", `"a"`), pubID("ret-del", "c", `"c"`))
	if rs[0].Duplicate || rs[1].Duplicate || rs[0].Seq != 1 || rs[1].Seq != 2 || rs[0].Epoch == old {
		t.Fatalf("receipts after delete %+v, want seqs 1 and 2 in a new epoch, no duplicate", rs)
	}
	ti, _ := findTopic(t, a, "ret-del")
	wantInfo(t, a, ti)
	if ti.Retained != 2 || ti.Bytes != 6 || ti.Oldest != 1 || ti.Head != 2 {
		t.Fatalf("listed %+v after delete and two appends", ti)
	}
}
