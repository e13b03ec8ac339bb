package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/longpoll/longpoll"
)

func pub(topic, data string) longpoll.Publication {
	return longpoll.Publication{Topic: topic, Data: json.RawMessage(data)}
}

func appendOK(t *testing.T, b *Broker, pubs ...longpoll.Publication) []longpoll.Receipt {
	t.Helper()
	rs, err := b.Append(t.Context(), pubs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return rs
}

func wakeChan() (func(string), chan string) {
	c := make(chan string, 100)
	return func(topic string) {
		select {
		case c <- topic:
		default:
		}
	}, c
}

// TestTwoNodes runs two brokers on one stream, as two longpoll nodes do.
func TestTwoNodes(t *testing.T) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			url := scope(t, tg.url(t))
			a, b := open(t, url), open(t, url)

			t.Run("WakeAcrossNodes", func(t *testing.T) {
				wake, woken := wakeChan()
				defer b.Watch("x", wake)()
				otherWake, otherWoken := wakeChan()
				defer b.Watch("y", otherWake)()
				var worst time.Duration
				for i := range 20 {
					start := time.Now()
					appendOK(t, a, pub("x", fmt.Sprint(i)))
					select {
					case <-woken:
					case <-time.After(5 * time.Second):
						t.Fatal("no wake-up on the other node")
					}
					worst = max(worst, time.Since(start))
				}
				t.Logf("slowest append plus wake-up on the other node: %v", worst)
				select {
				case topic := <-otherWoken:
					t.Fatalf("watcher of y woken (%q) by appends to x", topic)
				default:
				}
			})

			t.Run("ConcurrentAppendsOneTopic", func(t *testing.T) {
				const each = 200
				var wg sync.WaitGroup
				errs := make(chan error, 4)
				seqs := make(chan uint64, 4*each)
				for k, node := range []*Broker{a, b, a, b} {
					wg.Go(func() {
						for i := range each {
							rs, err := node.Append(context.Background(), []longpoll.Publication{pub("shared", fmt.Sprintf(`"%d-%d"`, k, i))})
							if err != nil {
								errs <- err
								return
							}
							seqs <- rs[0].Seq
						}
					})
				}
				wg.Wait()
				close(errs)
				close(seqs)
				for err := range errs {
					t.Fatal(err)
				}
				seen := map[uint64]bool{}
				for s := range seqs {
					if seen[s] {
						t.Fatalf("seq %d given twice", s)
					}
					seen[s] = true
				}
				for s := uint64(1); s <= 4*each; s++ {
					if !seen[s] {
						t.Fatalf("seq %d missing", s)
					}
				}
			})

			t.Run("IDsAcrossNodes", func(t *testing.T) {
				r1 := appendOK(t, a, longpoll.Publication{Topic: "ids", ID: "x", Data: json.RawMessage("1")})[0]
				if r := appendOK(t, b, longpoll.Publication{Topic: "ids", ID: "x", Data: json.RawMessage("2")})[0]; !r.Duplicate || r.Seq != r1.Seq {
					t.Fatalf("id x again on the other node: %+v, want a duplicate of %+v", r, r1)
				}
				appendOK(t, b, pub("ids", "3")) // x is no longer in the last record
				if r := appendOK(t, a, longpoll.Publication{Topic: "ids", ID: "x", Data: json.RawMessage("4")})[0]; !r.Duplicate || r.Seq != r1.Seq {
					t.Fatalf("id x after another append: %+v, want a duplicate of %+v", r, r1)
				}
			})

			t.Run("RevocationsAcrossNodes", func(t *testing.T) {
				got := make(chan longpoll.Revocation, 10)
				defer b.WatchRevocations(func(r longpoll.Revocation) { got <- r })()
				r := longpoll.Revocation{Subject: "alice", Before: time.Now().Truncate(time.Second).UTC(), Expires: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
				if err := a.Revoke(t.Context(), r); err != nil {
					t.Fatal(err)
				}
				select {
				case g := <-got:
					if g != r {
						t.Fatalf("got %+v, want %+v", g, r)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the revocation did not reach the other node")
				}
			})
		})
	}
}

// TestLostAck: a publish stored by the server but whose acknowledgement
// was lost is retried in the same call and reported once.
func TestLostAck(t *testing.T) {
	url := scope(t, startEmbedded(t).url())
	b, other := open(t, url), open(t, url)
	var n int
	b.afterPublish = func(err error) error {
		n++
		if n == 1 && err == nil {
			return nats.ErrTimeout
		}
		return err
	}
	rs := appendOK(t, b, pub("lost", "1"), pub("lost", "2"))
	if rs[0].Seq != 1 || rs[1].Seq != 2 || rs[0].Duplicate {
		t.Fatalf("receipts %+v, want seqs 1 and 2", rs)
	}
	// Another node appends between the lost acknowledgement and the
	// retry: the Nats-Msg-Id tells the retry it was stored.
	n = 0
	b.afterPublish = func(err error) error {
		n++
		if n == 1 && err == nil {
			if _, err := other.Append(context.Background(), []longpoll.Publication{pub("lost", `"other"`)}); err != nil {
				t.Error(err)
			}
			return nats.ErrTimeout
		}
		return err
	}
	rs = appendOK(t, b, pub("lost", "3"))
	if rs[0].Seq != 3 {
		t.Fatalf("receipt %+v, want seq 3", rs[0])
	}
	p, err := b.Read(t.Context(), "lost", longpoll.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var data []string
	for _, m := range p.Messages {
		data = append(data, string(m.Data))
	}
	if got := strings.Join(data, " "); got != `1 2 3 "other"` {
		t.Fatalf("log holds %s, want each message once", got)
	}
}

// TestReadModel reads a log of records of several messages, under count
// and byte retention, from every position and with several limits, and
// compares with a model: the forward search and the bulk fetch must agree
// with the walk back.
func TestReadModel(t *testing.T) {
	const maxMessages, maxBytes = 40, 3000
	b := open(t, scope(t, startEmbedded(t).url()), WithMaxMessages(maxMessages), WithMaxBytes(maxBytes))
	type msg struct {
		seq  uint64
		data string
		cost int
		rec  int
	}
	var model []msg
	rng := rand.New(rand.NewPCG(1, 2))
	const topic = "model"
	records := 0
	for range 120 {
		var pubs []longpoll.Publication
		for range 1 + rng.IntN(3) {
			d := fmt.Sprintf(`"%s"`, strings.Repeat("x", rng.IntN(40)))
			pubs = append(pubs, pub(topic, d))
			model = append(model, msg{seq: uint64(len(model) + 1), data: d, cost: len(d) + len(topic) + MessageOverhead, rec: records})
		}
		records++
		appendOK(t, b, pubs...)
		// Other topics' records between this one's, so that stream
		// sequences have holes.
		appendOK(t, b, pub("noise", "0"), pub(fmt.Sprint("noise-", rng.IntN(3)), "1"))
	}
	head := uint64(len(model))
	// Retained: the newest maxMessages, within maxBytes (the newest
	// always), and in the records JetStream keeps (the newest maxMessages).
	oldest := head
	for i, sum := len(model)-1, 0; i >= 0; i-- {
		sum += model[i].cost
		if model[i].seq+maxMessages <= head || sum > maxBytes && model[i].seq != head || model[i].rec < records-maxMessages {
			break
		}
		oldest = model[i].seq
	}
	st, err := b.Stat(t.Context(), topic)
	if err != nil || st.Head != head || st.Oldest != oldest {
		t.Fatalf("Stat = %+v, %v; want head %d, oldest %d", st, err, head, oldest)
	}
	for from := uint64(0); from <= head; from++ {
		for _, limit := range []int{1, 3, 50} {
			p, err := b.Read(t.Context(), topic, longpoll.Position{Epoch: st.Epoch, Seq: from}, limit)
			if err != nil {
				t.Fatal(err)
			}
			begin := max(from+1, oldest)
			wantMissed := uint64(0)
			if from+1 < oldest {
				wantMissed = oldest - from - 1
			}
			if gotMissed := uint64(0); p.Gap != nil {
				gotMissed = p.Gap.Missed
				if gotMissed != wantMissed {
					t.Fatalf("from %d: gap %+v, want %d missed", from, *p.Gap, wantMissed)
				}
			} else if wantMissed != 0 {
				t.Fatalf("from %d: no gap, want %d missed", from, wantMissed)
			}
			want := min(uint64(limit), head-min(head, begin-1))
			if uint64(len(p.Messages)) != want {
				t.Fatalf("from %d limit %d: %d messages, want %d", from, limit, len(p.Messages), want)
			}
			for k, m := range p.Messages {
				w := model[begin-1+uint64(k)]
				if m.Seq != w.seq || string(m.Data) != w.data {
					t.Fatalf("from %d limit %d: message %d = seq %d %s, want seq %d %s", from, limit, k, m.Seq, m.Data, w.seq, w.data)
				}
			}
		}
	}
	ti, ok, err := b.describe(t.Context(), topic)
	if err != nil || !ok || ti.Oldest != oldest || ti.Retained != head-oldest+1 {
		t.Fatalf("describe = %+v, %v, %v; want oldest %d", ti, ok, err, oldest)
	}
	var bytes uint64
	for _, m := range model[oldest-1:] {
		bytes += uint64(len(m.data))
	}
	if ti.Bytes != bytes {
		t.Fatalf("describe gives %d bytes, want %d", ti.Bytes, bytes)
	}
}

// TestExpiryNeverRestartsAnEpoch: once every message of a topic expired,
// the next append either continues the epoch's seqs or starts a new
// epoch; a reader of the old epoch never sees seq 1 again in it.
func TestExpiryNeverRestartsAnEpoch(t *testing.T) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			b := open(t, scope(t, tg.url(t)), WithMaxAge(500*time.Millisecond))
			rs := appendOK(t, b, pub("exp", "1"), pub("exp", "2"), pub("exp", "3"))
			old := rs[0].Epoch
			deadline := time.Now().Add(10 * time.Second)
			for {
				st, err := b.Stat(t.Context(), "exp")
				if err != nil {
					t.Fatal(err)
				}
				if st.Oldest == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Stat = %+v after the max age", st)
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Wait for JetStream to drop the record too, so that the
			// next append finds no log.
			for {
				h, err := b.lastRecord(t.Context(), b.topicSubject("exp"))
				if err != nil {
					t.Fatal(err)
				}
				if h == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("JetStream kept the record past its max age")
				}
				time.Sleep(50 * time.Millisecond)
			}
			r := appendOK(t, b, pub("exp", "4"))[0]
			if r.Epoch == old && r.Seq != 4 {
				t.Fatalf("append after expiry: %+v: seq restarted within epoch %d", r, old)
			}
			p, err := b.Read(t.Context(), "exp", longpoll.Position{Epoch: old, Seq: 3}, 10)
			if err != nil {
				t.Fatal(err)
			}
			if r.Epoch != old && (p.Gap == nil || p.Gap.Reason != longpoll.GapReset) {
				t.Fatalf("a reader of the expired epoch got %+v, want a reset", p)
			}
		})
	}
}

// TestOutage stops the embedded server under a running broker and starts
// it again on the same port and store: calls fail with ErrUnavailable
// meanwhile, watchers are woken, and everything works again once it is
// back, without a new broker.
func TestOutage(t *testing.T) {
	e := startEmbedded(t)
	b := open(t, scope(t, e.url()), WithTimeout(500*time.Millisecond))
	rs := appendOK(t, b, pub("out", "1"))
	wake, woken := wakeChan()
	defer b.Watch("out", wake)()
	revs := make(chan longpoll.Revocation, 10)
	defer b.WatchRevocations(func(r longpoll.Revocation) { revs <- r })()

	e.stop()
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("watchers not woken when the connection dropped")
	}
	if err := b.Ping(t.Context()); !errors.Is(err, longpoll.ErrUnavailable) {
		t.Fatalf("Ping with the server down: %v, want ErrUnavailable", err)
	}
	if _, err := b.Append(t.Context(), []longpoll.Publication{pub("out", "2")}); !errors.Is(err, longpoll.ErrUnavailable) {
		t.Fatalf("Append with the server down: %v, want ErrUnavailable", err)
	}
	if _, err := b.Read(t.Context(), "out", longpoll.Position{}, 10); !errors.Is(err, longpoll.ErrUnavailable) {
		t.Fatalf("Read with the server down: %v, want ErrUnavailable", err)
	}

	e.start(t)
	back := time.Now()
	deadline := back.Add(20 * time.Second)
	for b.Ping(t.Context()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Ping still fails after the server is back: %v", b.Ping(t.Context()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var r longpoll.Receipt
	for {
		got, err := b.Append(t.Context(), []longpoll.Publication{pub("out", "2")})
		if err == nil {
			r = got[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append after the server is back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("appends work again %v after the server is back", time.Since(back))
	if r.Epoch != rs[0].Epoch || r.Seq != 2 {
		t.Fatalf("append after the outage: %+v, want seq 2 in epoch %d", r, rs[0].Epoch)
	}
	rev := longpoll.Revocation{Subject: "after", Before: time.Unix(1000, 0).UTC(), Expires: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	if err := b.Revoke(t.Context(), rev); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case g := <-revs:
			if g.Subject != "after" {
				continue
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a revocation after the outage did not reach the watcher")
		}
		break
	}
	t.Logf("revocations are watched again %v after the server is back", time.Since(back))
}

// TestStoreFull: a stream an operator capped (max_bytes, discard new)
// refuses appends with ErrStoreFull.
func TestStoreFull(t *testing.T) {
	url := scope(t, startEmbedded(t).url())
	b := open(t, url)
	js, err := natsjs.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.stream.CachedInfo().Config
	cfg.MaxBytes, cfg.Discard = 4096, natsjs.DiscardNew
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	big := `"` + strings.Repeat("x", 1000) + `"`
	for i := range 10 {
		_, err := b.Append(t.Context(), []longpoll.Publication{pub("full", big)})
		if err == nil {
			continue
		}
		if !errors.Is(err, longpoll.ErrStoreFull) {
			t.Fatalf("append %d to a full stream: %v, want ErrStoreFull", i, err)
		}
		return
	}
	t.Fatal("10 KB appended to a stream of 4 KB")
}

// TestStreamSettings: a node whose retention differs from the stream's
// refuses to start unless told to update the stream.
func TestStreamSettings(t *testing.T) {
	url := scope(t, startEmbedded(t).url())
	open(t, url, WithMaxMessages(10)).Close()
	_, err := Open(url, WithMaxMessages(20))
	if err == nil || !strings.Contains(err.Error(), "max_msgs_per_subject 10, want 20") || !strings.Contains(err.Error(), "--nats-update-stream") {
		t.Fatalf("Open with other limits: %v, want an error naming the difference and the flag", err)
	}
	b := open(t, url, WithMaxMessages(20), WithUpdateStream())
	if got := b.stream.CachedInfo().Config.MaxMsgsPerSubject; got != 20 {
		t.Fatalf("max_msgs_per_subject %d after the update, want 20", got)
	}
	b.Close()
	open(t, url, WithMaxMessages(20)).Close() // agrees now
}

func TestOpenErrors(t *testing.T) {
	start := time.Now()
	_, err := Open("nats://127.0.0.1:1", WithDialTimeout(200*time.Millisecond))
	if !errors.Is(err, longpoll.ErrUnavailable) {
		t.Fatalf("Open of a closed port: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open of a closed port took %v", d)
	}
	_, err = Open("nats://u:secret@h?replicas=0")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Open of a bad URL: %v, want an error without the password", err)
	}
	if _, err := Open("nats://h", WithMaxMessages(0)); err == nil || !strings.Contains(err.Error(), "WithMaxMessages") {
		t.Fatalf("Open with a bad option: %v", err)
	}
}

// TestStreamPurged: an operator's purge of the whole stream empties every
// topic; each starts a new epoch at its next append, and a reader of the
// old one gets a reset, never a position in the new log. A stream deleted
// under the nodes makes calls fail with ErrUnavailable.
func TestStreamPurged(t *testing.T) {
	b := open(t, scope(t, startEmbedded(t).url()))
	old := appendOK(t, b, pub("p", "1"), pub("p", "2"))[0].Epoch
	if err := b.stream.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := appendOK(t, b, pub("p", "3"))[0]
	if r.Epoch == old || r.Seq != 1 {
		t.Fatalf("append after the purge: %+v, want seq 1 in an epoch other than %d", r, old)
	}
	p, err := b.Read(t.Context(), "p", longpoll.Position{Epoch: old, Seq: 2}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if p.Gap == nil || p.Gap.Reason != longpoll.GapReset || len(p.Messages) != 1 || string(p.Messages[0].Data) != "3" {
		t.Fatalf("a reader of the purged epoch got %+v, want a reset and the new log", p)
	}

	js, err := natsjs.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(t.Context(), b.name); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(t.Context(), "p", longpoll.Position{}, 10); !errors.Is(err, longpoll.ErrUnavailable) {
		t.Fatalf("Read with the stream deleted: %v, want ErrUnavailable", err)
	}
	if err := b.Ping(t.Context()); !errors.Is(err, longpoll.ErrUnavailable) {
		t.Fatalf("Ping with the stream deleted: %v, want ErrUnavailable", err)
	}
}

// TestBatchIDs: a batch retried whole, after other appends, is all
// duplicates with the first receipts' seqs, whether its ids are found in
// the topic's last record or in the index, and on whichever node.
func TestBatchIDs(t *testing.T) {
	url := scope(t, startEmbedded(t).url())
	a, b := open(t, url), open(t, url)
	var pubs []longpoll.Publication
	for i := range 300 {
		pubs = append(pubs, longpoll.Publication{Topic: "batch", ID: fmt.Sprint("id-", i), Data: json.RawMessage(fmt.Sprint(i))})
	}
	first := appendOK(t, a, pubs...)
	for round, node := range []*Broker{a, b, b} {
		again := appendOK(t, node, pubs...)
		for i, r := range again {
			if !r.Duplicate || r.Seq != first[i].Seq || r.Epoch != first[i].Epoch {
				t.Fatalf("round %d: receipt %d = %+v, want a duplicate of %+v", round, i, r, first[i])
			}
		}
		appendOK(t, node, pub("batch", `"between"`)) // the ids leave the last record
	}
}
