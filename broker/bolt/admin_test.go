package bolt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

func mustTopics(t testing.TB, b *Broker, prefix, after string, limit int) []longpoll.TopicInfo {
	t.Helper()
	ts, err := b.Topics(t.Context(), prefix, after, limit)
	if err != nil {
		t.Fatalf("Topics(%q, %q, %d): %v", prefix, after, limit, err)
	}
	return ts
}

func topicNames(ts []longpoll.TopicInfo) []string {
	var names []string
	for _, ti := range ts {
		names = append(names, ti.Topic)
	}
	return names
}

func TestTopicsPaging(t *testing.T) {
	b := openTest(t)
	// Byte order: upper case before lower, "a" before "a.b" before "a/".
	names := []string{"b", "a/x", "a.b", "a", "B", "ab", "a/y", "c"}
	for _, n := range names {
		mustAppend(t, b, pub(n, "1"))
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)

	cases := []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"", "", 100, sorted},
		{"", "", 3, []string{"B", "a", "a.b"}},
		{"", "a.b", 3, []string{"a/x", "a/y", "ab"}},
		{"", "a.a", 1, []string{"a.b"}}, // after need not be a topic
		{"", "c", 5, nil},
		{"a", "", 100, []string{"a", "a.b", "a/x", "a/y", "ab"}},
		{"a/", "", 100, []string{"a/x", "a/y"}},
		{"a/", "a/x", 100, []string{"a/y"}},
		{"a/", "A", 100, []string{"a/x", "a/y"}}, // after before the prefix
		{"a/", "a/y", 100, nil},
		{"a/", "b", 100, nil}, // after past the prefix
		{"zz", "", 100, nil},
	}
	for _, c := range cases {
		if got := topicNames(mustTopics(t, b, c.prefix, c.after, c.limit)); !slices.Equal(got, c.want) {
			t.Errorf("Topics(%q, %q, %d) = %q, want %q", c.prefix, c.after, c.limit, got, c.want)
		}
	}

	// Paging one at a time meets every topic once, in order.
	var paged []string
	for after := ""; ; {
		ts := mustTopics(t, b, "", after, 1)
		if len(ts) == 0 {
			break
		}
		paged = append(paged, ts[0].Topic)
		after = ts[0].Topic
	}
	if !slices.Equal(paged, sorted) {
		t.Errorf("paged listing %q, want %q", paged, sorted)
	}

	if _, err := b.Topics(t.Context(), "", "", 0); err == nil {
		t.Error("Topics with limit 0: no error")
	}
}

func TestTopicsInfo(t *testing.T) {
	clock := newFakeClock()
	t0 := clock.Now()
	b := openTest(t, WithClock(clock.Now), WithMaxAge(time.Hour), WithMaxMessages(4), WithReclaimInterval(time.Hour))

	// IDs and topic names do not count in Bytes, only the data.
	rs := mustAppend(t, b, pubID("t", "a-long-idempotency-id", `"one"`), pub("t", `2`))
	clock.Advance(30 * time.Minute)
	mustAppend(t, b, pub("t", `[3,3]`), pubID("t", "x", `{"n":4}`))
	clock.Advance(time.Minute)
	t2 := clock.Now()
	mustAppend(t, b, pub("t", `55555`)) // retention drops seq 1
	epoch := rs[0].Epoch

	want := longpoll.TopicInfo{Topic: "t", Epoch: epoch, Head: 5, Oldest: 2, Retained: 4,
		Bytes: uint64(len(`2`) + len(`[3,3]`) + len(`{"n":4}`) + len(`55555`)), LastPublish: t2}
	check := func(want longpoll.TopicInfo) {
		t.Helper()
		ts := mustTopics(t, b, "", "", 10)
		if len(ts) != 1 || ts[0] != want {
			t.Fatalf("Topics = %+v, want [%+v]", ts, want)
		}
		st := mustStat(t, b, "t")
		if st != (longpoll.TopicStat{Epoch: want.Epoch, Head: want.Head, Oldest: want.Oldest}) {
			t.Fatalf("Stat = %+v, the listing %+v", st, want)
		}
	}
	check(want)

	// Seq 2 expires by age: dropped for readers, not yet reclaimed.
	clock.Set(t0.Add(time.Hour + time.Nanosecond))
	if raw := inspect(t, b, "t"); raw.stored != 4 {
		t.Fatalf("%d messages stored, want 4: this test needs them not reclaimed", raw.stored)
	}
	want.Oldest, want.Retained, want.Bytes = 3, 3, want.Bytes-uint64(len(`2`))
	check(want)

	// Everything expired: listed until the reclaimer forgets it, with
	// nothing retained.
	clock.Set(t2.Add(time.Hour + time.Nanosecond))
	want.Oldest, want.Retained, want.Bytes, want.LastPublish = 0, 0, 0, time.Time{}
	check(want)
	if _, err := b.reclaim(); err != nil {
		t.Fatal(err)
	}
	if ts := mustTopics(t, b, "", "", 10); len(ts) != 0 {
		t.Fatalf("Topics after the reclaimer forgot the topic = %+v", ts)
	}
}

func TestTopicsSkipsDamagedRecord(t *testing.T) {
	b := openTest(t)
	for _, n := range []string{"a", "b", "c"} {
		mustAppend(t, b, pub(n, "1"))
	}
	putRaw(t, b, bucketTopics, "b", []byte("not a record"))
	if got := topicNames(mustTopics(t, b, "", "", 10)); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("Topics = %q, want the damaged b left out", got)
	}
	if _, err := b.Stat(t.Context(), "b"); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Stat of the damaged topic: %v, want ErrDamaged", err)
	}
	// Deleting it is the way to be rid of it.
	if had, err := b.DeleteTopic(t.Context(), "b"); err != nil || !had {
		t.Fatalf("DeleteTopic(damaged) = %v, %v; want true", had, err)
	}
	if st := mustStat(t, b, "b"); st != (longpoll.TopicStat{}) {
		t.Fatalf("Stat after deleting = %+v", st)
	}
	if raw := inspect(t, b, "b"); raw.exists || raw.stored != 0 || raw.topicsCnt != 2 {
		t.Fatalf("after deleting the damaged topic: %+v", raw)
	}
	r := mustAppend(t, b, pub("b", "2"))[0]
	if r.Seq != 1 {
		t.Fatalf("append after deleting: %+v, want seq 1", r)
	}
	// The old due key, which the damaged record no longer told, is the
	// reclaimer's to drop.
	if raw := inspect(t, b, "b"); raw.dueKeys != 2 {
		t.Fatalf("%d due keys for b, want the new one and the leftover", raw.dueKeys)
	}
}

// putRaw overwrites a key of a root bucket.
func putRaw(t testing.TB, b *Broker, bucket []byte, key string, v []byte) {
	t.Helper()
	err := b.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), v) })
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeleteTopic(t *testing.T) {
	dir := t.TempDir()
	b := openDir(t, dir)
	rs := mustAppend(t, b, pubID("t", "id-1", "1"), pubID("t", "id-2", "2"), pub("t", "3"))
	mustAppend(t, b, pub("other", "1"))
	old := rs[0].Epoch
	if raw := inspect(t, b, "t"); !raw.exists || raw.stored != 3 || raw.ids != 2 || raw.dueKeys != 1 || raw.topicsCnt != 2 {
		t.Fatalf("before deleting: %+v", raw)
	}

	if had, err := b.DeleteTopic(t.Context(), "t"); err != nil || !had {
		t.Fatalf("DeleteTopic = %v, %v; want true", had, err)
	}
	// Every trace is gone, in the same transaction.
	if raw := inspect(t, b, "t"); raw.exists || raw.stored != 0 || raw.ids != 0 || raw.dueKeys != 0 || raw.topicsCnt != 1 {
		t.Fatalf("after deleting: %+v", raw)
	}
	err := b.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMsgs).Bucket([]byte("t")) != nil || tx.Bucket(bucketIDs).Bucket([]byte("t")) != nil {
			return errors.New("a bucket of the deleted topic is left")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if had, err := b.DeleteTopic(t.Context(), "t"); err != nil || had {
		t.Fatalf("DeleteTopic again = %v, %v; want false", had, err)
	}
	if had, err := b.DeleteTopic(t.Context(), "never"); err != nil || had {
		t.Fatalf("DeleteTopic of a topic never written = %v, %v; want false", had, err)
	}
	if _, err := b.DeleteTopic(t.Context(), ""); err == nil {
		t.Fatal("DeleteTopic of an empty name: no error")
	}
	checkDeleted := func(b *Broker) {
		t.Helper()
		if st := mustStat(t, b, "t"); st != (longpoll.TopicStat{}) {
			t.Fatalf("Stat after deleting = %+v, want zero", st)
		}
		for _, seq := range []uint64{0, 1, 3, 4} {
			p := mustRead(t, b, "t", longpoll.Position{Epoch: old, Seq: seq}, 10)
			if p.Gap == nil || p.Gap.Reason != longpoll.GapReset || len(p.Messages) != 0 || p.Next != (longpoll.Position{}) {
				t.Fatalf("Read from seq %d of the deleted epoch = %+v, want a reset to nothing", seq, p)
			}
		}
		if ts := mustTopics(t, b, "", "", 10); !slices.Equal(topicNames(ts), []string{"other"}) {
			t.Fatalf("Topics = %q, want the deleted topic left out", topicNames(ts))
		}
		if st := mustStat(t, b, "other"); st.Head != 1 {
			t.Fatalf("another topic after deleting: %+v", st)
		}
	}
	checkDeleted(b)

	// Durable: deleted after a restart too.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openDir(t, dir)
	checkDeleted(b)

	// A new log: a new epoch, seq 1, and the old IDs are free.
	r := mustAppend(t, b, pubID("t", "id-1", "new"))[0]
	if r.Epoch == old || r.Seq != 1 || r.Duplicate {
		t.Fatalf("append after deleting = %+v, want seq 1 of an epoch other than %d", r, old)
	}
	p := mustRead(t, b, "t", longpoll.Position{Epoch: old, Seq: 3}, 10)
	if p.Gap == nil || p.Gap.Reason != longpoll.GapReset || len(p.Messages) != 1 || string(p.Messages[0].Data) != "new" ||
		p.Next != (longpoll.Position{Epoch: r.Epoch, Seq: 1}) {
		t.Fatalf("Read from the deleted epoch = %+v, want a reset then the new message", p)
	}
}

// Each delete and re-create draws a new epoch, across restarts too.
func TestDeleteTopicEpochsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	seen := map[uint64]bool{}
	for i := range 5 {
		b, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		r := mustAppend(t, b, pub("t", fmt.Sprint(i)))[0]
		if seen[r.Epoch] || r.Seq != 1 {
			t.Fatalf("round %d: %+v, want seq 1 of an epoch not seen before", i, r)
		}
		seen[r.Epoch] = true
		if had, err := b.DeleteTopic(t.Context(), "t"); err != nil || !had {
			t.Fatalf("DeleteTopic = %v, %v", had, err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDeleteTopicWakesWatchers(t *testing.T) {
	b := openTest(t)
	mustAppend(t, b, pub("t", "1"))
	woken := make(chan string, 10)
	stop := b.Watch("t", func(topic string) { woken <- topic })
	defer stop()
	stopOther := b.Watch("other", func(topic string) { woken <- topic })
	defer stopOther()

	// A poll parked on the topic: it wakes, reads, and learns of the reset.
	st := mustStat(t, b, "t")
	if had, err := b.DeleteTopic(t.Context(), "t"); err != nil || !had {
		t.Fatalf("DeleteTopic = %v, %v", had, err)
	}
	select {
	case topic := <-woken:
		if topic != "t" {
			t.Fatalf("woken for %q", topic)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher was not woken by the delete")
	}
	p := mustRead(t, b, "t", longpoll.Position{Epoch: st.Epoch, Seq: st.Head}, 10)
	if p.Gap == nil || p.Gap.Reason != longpoll.GapReset {
		t.Fatalf("the woken reader's Read = %+v, want a reset", p)
	}
	// Deleting nothing wakes nobody.
	if had, err := b.DeleteTopic(t.Context(), "t"); err != nil || had {
		t.Fatalf("DeleteTopic again = %v, %v", had, err)
	}
	select {
	case topic := <-woken:
		t.Fatalf("woken for %q by deleting a topic with no log", topic)
	default:
	}
	// The watcher stays: the next append wakes it.
	mustAppend(t, b, pub("t", "2"))
	if topic := <-woken; topic != "t" {
		t.Fatalf("woken for %q", topic)
	}
}

// A delete racing appends: every append lands in the old log (deleted) or
// in a new one; the topic is never half deleted.
func TestDeleteTopicWhileAppending(t *testing.T) {
	b := openTest(t)
	done := make(chan error)
	go func() {
		for i := range 200 {
			if _, err := b.Append(t.Context(), []longpoll.Publication{pubID("t", fmt.Sprint("id", i), fmt.Sprint(i))}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range 20 {
		if _, err := b.DeleteTopic(t.Context(), "t"); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mustAppend(t, b, pubID("t", "last", "0"))
	raw := inspect(t, b, "t")
	st := raw.st
	if st.first != 1 || uint64(raw.stored) != st.head || uint64(raw.ids) != st.head || raw.dueKeys < 1 {
		t.Fatalf("the topic after deletes and appends: %+v", raw)
	}
	p := mustRead(t, b, "t", longpoll.Position{}, 1000)
	if p.Gap != nil || uint64(len(p.Messages)) != st.head {
		t.Fatalf("Read = gap %+v, %d messages; want %d", p.Gap, len(p.Messages), st.head)
	}
}

func TestRevocations(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	dir := t.TempDir()
	b := openDir(t, dir, WithClock(clock.Now))

	got := make(chan longpoll.Revocation, 10)
	stop := b.WatchRevocations(func(r longpoll.Revocation) { got <- r })
	revoke := func(sub string, before, expires time.Time) {
		t.Helper()
		if err := b.Revoke(t.Context(), longpoll.Revocation{Subject: sub, Before: before, Expires: expires}); err != nil {
			t.Fatalf("Revoke(%q): %v", sub, err)
		}
	}
	wantWatched := func(want longpoll.Revocation) {
		t.Helper()
		select {
		case r := <-got:
			if r.Subject != want.Subject || !r.Before.Equal(want.Before) || !r.Expires.Equal(want.Expires) {
				t.Fatalf("watched %+v, want %+v", r, want)
			}
		default:
			t.Fatalf("no callback for %+v", want)
		}
	}
	wantStored := func(b *Broker, want ...longpoll.Revocation) {
		t.Helper()
		rs, err := b.Revocations(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != len(want) {
			t.Fatalf("Revocations = %+v, want %+v", rs, want)
		}
		for i := range rs {
			if rs[i].Subject != want[i].Subject || !rs[i].Before.Equal(want[i].Before) || !rs[i].Expires.Equal(want[i].Expires) ||
				rs[i].Before.Location() != time.UTC {
				t.Fatalf("Revocations[%d] = %+v, want %+v", i, rs[i], want[i])
			}
		}
	}
	sec := time.Second
	bob := longpoll.Revocation{Subject: "bob", Before: now.Add(-sec), Expires: now.Add(time.Hour + 123*time.Nanosecond)}
	revoke(bob.Subject, bob.Before.In(time.FixedZone("X", 7200)), bob.Expires)
	wantWatched(bob)
	alice := longpoll.Revocation{Subject: "alice", Before: now, Expires: now.Add(2 * time.Hour)}
	revoke(alice.Subject, alice.Before, alice.Expires)
	wantWatched(alice)
	wantStored(b, alice, bob)

	// Over an earlier one: the later Before and the later Expires.
	revoke("bob", now.Add(-time.Hour), now.Add(3*time.Hour))
	bob.Expires = now.Add(3 * time.Hour)
	wantWatched(bob)
	revoke("bob", now.Add(sec), now.Add(time.Minute))
	bob.Before = now.Add(sec)
	wantWatched(bob)
	wantStored(b, alice, bob)

	// An expired revocation is not returned, and the next Revoke deletes
	// it; one expired already is not kept nor told.
	clock.Set(now.Add(2 * time.Hour))
	wantStored(b, bob)
	if n := rawKeys(t, b, bucketRevoked); n != 2 {
		t.Fatalf("%d revocations stored, want 2 before a Revoke prunes", n)
	}
	revoke("carol", now, now.Add(time.Hour))
	select {
	case r := <-got:
		t.Fatalf("watched %+v, expired already", r)
	default:
	}
	if n := rawKeys(t, b, bucketRevoked); n != 1 {
		t.Fatalf("%d revocations stored after a Revoke, want 1", n)
	}

	stop()
	revoke("dave", now, now.Add(4*time.Hour))
	select {
	case r := <-got:
		t.Fatalf("watched %+v after stop", r)
	default:
	}
	dave := longpoll.Revocation{Subject: "dave", Before: now, Expires: now.Add(4 * time.Hour)}
	wantStored(b, bob, dave)

	if err := b.Revoke(t.Context(), longpoll.Revocation{Expires: now.Add(time.Hour)}); err == nil {
		t.Fatal("Revoke with no subject: no error")
	}

	// Durable: they survive a restart, and a backup carries them.
	backup := filepath.Join(t.TempDir(), "copy", FileName)
	if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := b.BackupFile(t.Context(), backup); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openDir(t, dir, WithClock(clock.Now))
	wantStored(b, bob, dave)
	wantStored(openDir(t, filepath.Dir(backup), WithClock(clock.Now)), bob, dave)
}

func rawKeys(t testing.TB, b *Broker, bucket []byte) int {
	t.Helper()
	n := 0
	err := b.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRevocationDamaged(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	b := openTest(t, WithClock(clock.Now))
	putRaw(t, b, bucketRevoked, "bob", []byte("garbage"))
	if err := b.Revoke(t.Context(), longpoll.Revocation{Subject: "eve", Before: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	rs, err := b.Revocations(t.Context())
	if err != nil || len(rs) != 1 || rs[0].Subject != "eve" {
		t.Fatalf("Revocations = %+v, %v; want eve alone", rs, err)
	}
	// Revoke pruned the damaged value; one stored over a damaged one
	// takes its place.
	if n := rawKeys(t, b, bucketRevoked); n != 1 {
		t.Fatalf("%d revocations stored, want 1", n)
	}
	putRaw(t, b, bucketRevoked, "bob", []byte("garbage"))
	if err := b.Revoke(t.Context(), longpoll.Revocation{Subject: "bob", Before: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if rs, err := b.Revocations(t.Context()); err != nil || len(rs) != 2 || rs[0].Subject != "bob" || !rs[0].Before.Equal(now) {
		t.Fatalf("Revocations = %+v, %v; want bob then eve", rs, err)
	}
}

func TestNodes(t *testing.T) {
	clock := newFakeClock()
	b := openTest(t, WithClock(clock.Now))
	ctx := t.Context()
	info := []byte(`{"addr":"10.0.0.2"}`)
	if err := b.Heartbeat(ctx, "n2", info, time.Minute); err != nil {
		t.Fatal(err)
	}
	info[2] = 'X' // the store keeps its own copy
	t0 := clock.Now()
	clock.Advance(10 * time.Second)
	if err := b.Heartbeat(ctx, "n1", []byte(`{}`), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	t1 := clock.Now()
	ns, err := b.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 2 || ns[0].Node != "n1" || ns[1].Node != "n2" || string(ns[1].Info) != `{"addr":"10.0.0.2"}` ||
		!ns[0].Seen.Equal(t1) || !ns[1].Seen.Equal(t0) {
		t.Fatalf("Nodes = %+v", ns)
	}
	ns[1].Info[2] = 'Y'

	// n1 lapses at t1+20s; n2, beating again, lives on.
	clock.Advance(19 * time.Second)
	if err := b.Heartbeat(ctx, "n2", []byte(`{"v":2}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	t2 := clock.Now()
	clock.Advance(time.Second)
	ns, err = b.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || ns[0].Node != "n2" || string(ns[0].Info) != `{"v":2}` || !ns[0].Seen.Equal(t2) {
		t.Fatalf("Nodes after n1's ttl = %+v", ns)
	}

	if err := b.Heartbeat(ctx, "", nil, time.Minute); err == nil {
		t.Error("Heartbeat with no name: no error")
	}
	if err := b.Heartbeat(ctx, "n3", nil, 0); err == nil {
		t.Error("Heartbeat with ttl 0: no error")
	}
}

func TestAdminAfterClose(t *testing.T) {
	b := openTest(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, err1 := b.Topics(ctx, "", "", 1)
	_, err2 := b.DeleteTopic(ctx, "t")
	err3 := b.Revoke(ctx, longpoll.Revocation{Subject: "s", Expires: time.Now().Add(time.Hour)})
	_, err4 := b.Revocations(ctx)
	err5 := b.Heartbeat(ctx, "n", nil, time.Minute)
	_, err6 := b.Nodes(ctx)
	for i, err := range []error{err1, err2, err3, err4, err5, err6} {
		if !errors.Is(err, longpoll.ErrClosed) {
			t.Errorf("call %d after Close: %v, want ErrClosed", i+1, err)
		}
	}
	b.WatchRevocations(func(longpoll.Revocation) {})()
}
