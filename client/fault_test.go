package client_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/client"
	"github.com/longpoll/longpoll/internal/faultproxy"
)

// received is what one subscriber got of one topic: the n of each message,
// in arrival order, and each seq.
type received struct {
	ns, seqs []int
}

// audit compares what a subscriber got of a topic with 1..want in order
// and counts the losses, duplicates and reorderings.
func audit(r received, want int) (lost, dups, reordered int) {
	count := make(map[int]int, want)
	for i, v := range r.ns {
		count[v]++
		if i > 0 && v < r.ns[i-1] {
			reordered++
		}
		if r.seqs[i] != v {
			reordered++ // seq and publish order disagree
		}
	}
	for v := 1; v <= want; v++ {
		switch c := count[v]; {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	return lost, dups, reordered
}

// TestFaultInjection runs 100 subscribers over 10 topics and publishes
// 10,000 messages, every byte of it through a proxy that cuts
// connections before requests, while held and in the middle of replies,
// stalls some, delays bytes and refuses connections for a while. Every
// subscriber must get every message of its topics exactly once, in order.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("long test")
	}
	subscribers := 100
	if os.Getenv("NOSUBS") != "" {
		subscribers = 0
	}
	const (
		topics   = 10
		perTopic = 1000
		batch    = 50
	)
	s := startServer(t, serverConfig{broker: []memory.Option{memory.WithMaxMessages(2 * perTopic)}})
	seed := uint64(time.Now().UnixNano())
	t.Logf("fault seed %d", seed)
	p, err := faultproxy.New(s.addr, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetFaults(faultproxy.Faults{
		CutBefore:  0.03,
		CutHeld:    0.05,
		HeldWithin: 3 * time.Second,
		CutReply:   0.05,
		ReplyBytes: 16 << 10,
		Stall:      0.005,
		Delay:      200 * time.Microsecond,
	})
	opts := []client.Option{
		client.WithPollTimeout(2 * time.Second),
		client.WithPollMargin(time.Second),
		client.WithBackoff(5*time.Millisecond, 100*time.Millisecond),
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()

	// Subscribers: each on two topics, all from the start of the logs.
	results := make([]map[string]*received, subscribers)
	gaps := make([][]string, subscribers)
	errs := make([]error, subscribers)
	var subs sync.WaitGroup
	for i := range subscribers {
		mine := []string{fmt.Sprintf("topic.%d", i%topics), fmt.Sprintf("topic.%d", (i+3)%topics)}
		results[i] = map[string]*received{mine[0]: {}, mine[1]: {}}
		c := newClient(t, p.URL(), opts...)
		subs.Go(func() {
			distinct := map[string]map[int]bool{mine[0]: {}, mine[1]: {}}
			full := 0
			for ev, err := range c.Subscribe(ctx, mine, client.WithSince(client.Earliest), client.WithLimit(250)) {
				if err != nil {
					errs[i] = err
					return
				}
				if g := ev.Gap; g != nil {
					gaps[i] = append(gaps[i], fmt.Sprintf("%s %s %d", g.Topic, g.Reason, g.Missed))
					continue
				}
				m := ev.Message
				r := results[i][m.Topic]
				v := n(t, m)
				r.ns = append(r.ns, v)
				r.seqs = append(r.seqs, int(m.Seq))
				if d := distinct[m.Topic]; !d[v] {
					d[v] = true
					if len(d) == perTopic {
						if full++; full == len(mine) {
							return
						}
					}
				}
			}
		})
	}

	// Publishers: one per topic, in batches, through the same proxy.
	var pubs sync.WaitGroup
	pubErrs := make([]error, topics)
	for k := range topics {
		topic := fmt.Sprintf("topic.%d", k)
		c := newClient(t, p.URL(), opts...)
		pubs.Go(func() {
			for b := 0; b < perTopic/batch; b++ {
				if k == 0 && b == perTopic/batch/3 {
					// Refuse every new connection for a while.
					p.Refuse()
					time.AfterFunc(200*time.Millisecond, func() { p.Resume() })
				}
				msgs := make([]client.Publication, batch)
				for j := range msgs {
					v := b*batch + j + 1
					msgs[j] = client.Publication{Topic: topic, Data: map[string]int{"n": v}, ID: fmt.Sprintf("%s-%d", topic, v)}
				}
				rs, err := c.PublishBatch(ctx, msgs)
				if err != nil {
					pubErrs[k] = err
					return
				}
				for j, r := range rs {
					if want := uint64(b*batch + j + 1); r.Seq != want {
						pubErrs[k] = fmt.Errorf("%s: message %d got seq %d", topic, want, r.Seq)
						return
					}
				}
			}
		})
	}
	pubs.Wait()
	published := time.Since(start)
	subs.Wait()
	elapsed := time.Since(start)
	for k, err := range pubErrs {
		if err != nil {
			t.Errorf("publisher %d: %v", k, err)
		}
	}

	var lost, dups, reordered, gapCount, failed int
	for i := range subscribers {
		if errs[i] != nil {
			failed++
			t.Errorf("subscriber %d ended with %v", i, errs[i])
		}
		gapCount += len(gaps[i])
		if len(gaps[i]) > 0 {
			t.Errorf("subscriber %d got gaps %v", i, gaps[i])
		}
		for topic, r := range results[i] {
			l, d, o := audit(*r, perTopic)
			lost, dups, reordered = lost+l, dups+d, reordered+o
			if l+d+o > 0 {
				t.Errorf("subscriber %d, %s: %d lost, %d duplicated, %d out of order", i, topic, l, d, o)
			}
		}
	}
	st := p.Stats()
	t.Logf("published %d messages in %v; %d subscribers done in %v", topics*perTopic, published.Round(time.Millisecond), subscribers, elapsed.Round(time.Millisecond))
	t.Logf("deliveries %d: lost %d, duplicated %d, out of order %d, gaps %d, failed subscribers %d",
		subscribers*2*perTopic, lost, dups, reordered, gapCount, failed)
	t.Logf("proxy: %d connections; cut before the request %d, while held %d, mid-reply %d; stalled %d",
		st.Conns, st.CutBefore, st.CutHeld, st.CutReply, st.Stalled)
	if st.CutBefore == 0 || st.CutHeld == 0 || st.CutReply == 0 {
		t.Errorf("some faults never happened: %+v", st)
	}
}
