package multinode

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll/broker/redis/redistest"
)

// subscriber follows topics through the proxy from the earliest message
// until it has message want of each, checking every reply: per topic the
// data's index i goes 1, 2, 3, ... with no loss, duplicate or reordering,
// except right after a reset gap when resets are allowed (then i only
// grows). It records every i it got.
type subscriber struct {
	topics      []string
	allowResets bool
	got         map[string]map[int]bool
	resets      int
	unavailable int // 503 replies
}

func (s *subscriber) run(ctx context.Context, hc *http.Client, base string, want int) error {
	s.got = map[string]map[int]bool{}
	last := map[string]int{}
	lastSeq := map[string]uint64{}
	afterReset := map[string]bool{}
	for _, t := range s.topics {
		s.got[t] = map[int]bool{}
	}
	cursor := ""
	for {
		done := true
		for _, t := range s.topics {
			done = done && last[t] == want
		}
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("subscriber of %v: gave up with last %v", s.topics, last)
		}
		r, status, err := poll(ctx, hc, base, s.topics, cursor, 5*time.Second)
		if err != nil || status != http.StatusOK {
			if status == http.StatusServiceUnavailable {
				s.unavailable++
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		for _, g := range r.Gaps {
			if g.Reason != "reset" || !s.allowResets {
				return fmt.Errorf("subscriber of %v: unexpected gap %+v after i=%d", s.topics, g, last[g.Topic])
			}
			s.resets++
			afterReset[g.Topic] = true
		}
		for _, m := range r.Messages {
			i, err := dataIndex(m)
			if err != nil {
				return err
			}
			prev := last[m.Topic]
			switch {
			case i == prev+1 && m.Seq == lastSeq[m.Topic]+1:
			case afterReset[m.Topic]:
				// A reset loses the log and its idempotency index: a
				// publish whose acknowledgement was lost with the store
				// is retried into the new epoch, so data seen before the
				// reset may come again after it.
			default:
				return fmt.Errorf("subscriber of %v: %s: got i=%d seq=%d after i=%d seq=%d (reset before: %v)",
					s.topics, m.Topic, i, m.Seq, prev, lastSeq[m.Topic], afterReset[m.Topic])
			}
			if !s.allowResets && m.Seq != uint64(i) {
				return fmt.Errorf("%s: message i=%d has seq %d", m.Topic, i, m.Seq)
			}
			afterReset[m.Topic] = false
			last[m.Topic], lastSeq[m.Topic] = i, m.Seq
			s.got[m.Topic][i] = true
		}
		cursor = r.Cursor
	}
}

// publisher publishes data i = 1..n to one topic through the proxy, batch
// messages per request, retrying each request (with the same ids, so a
// retry never duplicates) until it is accepted.
type publisher struct {
	topic       string
	batch       int
	unavailable int
	// firstAfter is the first i whose publishing began after the flag
	// given to run was set; 0 if none.
	firstAfter int
}

func (p *publisher) run(ctx context.Context, hc *http.Client, base string, n int, published *atomic.Int64, after *atomic.Bool) error {
	for i := 1; i <= n; i += max(p.batch, 1) {
		k := min(max(p.batch, 1), n-i+1)
		if after != nil && after.Load() && p.firstAfter == 0 {
			p.firstAfter = i
		}
		for {
			status, err := publish(ctx, hc, base, p.topic, i, k)
			if err == nil && status == http.StatusOK {
				break
			}
			if status == http.StatusServiceUnavailable {
				p.unavailable++
			}
			if ctx.Err() != nil {
				return fmt.Errorf("publisher of %s: gave up at %d: %v", p.topic, i, ctx.Err())
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		published.Add(int64(k))
	}
	return nil
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// Three nodes behind a round-robin proxy, 100 subscribers whose polls hop
// between them, 10,000 messages published through all of them; one node
// is killed with SIGKILL a third of the way through. Every subscriber gets
// every message of its topics exactly once and in order.
func TestThreeNodesOneKilled(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	var nodes []*node
	var addrs []string
	for range 3 {
		n := startNode(t, srv.URL(), "--retention-messages", "20000", "--max-hold", "10s")
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr)
	}
	px := startProxy(t, addrs...)
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()

	const topics, perTopic, subscribers = 10, 1000, 100
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	start := time.Now()
	var published atomic.Int64
	errs := make(chan error, subscribers+topics)
	var wg sync.WaitGroup
	subs := make([]*subscriber, subscribers)
	for s := range subscribers {
		subs[s] = &subscriber{topics: []string{topicName(s % topics), topicName((s + 3) % topics)}}
		wg.Go(func() { errs <- subs[s].run(ctx, hc, px.url, perTopic) })
	}
	for k := range topics {
		p := &publisher{topic: topicName(k), batch: 25}
		wg.Go(func() { errs <- p.run(ctx, hc, px.url, perTopic, &published, nil) })
	}

	if !waitFor(30*time.Second, func() bool { return published.Load() >= topics*perTopic/3 }) {
		t.Fatalf("only %d messages published in 30s", published.Load())
	}
	nodes[1].kill()
	killedAt := published.Load()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d messages to %d subscribers via 3 nodes in %v; node 1 killed after %d messages; requests answered per node: %d %d %d",
		published.Load(), subscribers, time.Since(start).Round(time.Millisecond), killedAt,
		px.served[0].Load(), px.served[1].Load(), px.served[2].Load())
	for k := range nodes {
		if px.served[k].Load() == 0 {
			t.Errorf("node %d answered no request: polls did not hop", k)
		}
	}
}

// Redis is stopped for two seconds and started again, empty, while
// messages flow. During the outage requests get 503 and /readyz turns
// 503; then everything recovers without restarting a node. Clients are
// told of the lost log by reset gaps, never handed a wrong position, and
// get every message published after Redis came back.
func TestRedisRestart(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	var nodes []*node
	var addrs []string
	for range 2 {
		n := startNode(t, srv.URL(), "--retention-messages", "20000", "--max-hold", "10s")
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr)
	}
	px := startProxy(t, addrs...)
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()

	const topics, perTopic, subscribers = 5, 600, 40
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	var published atomic.Int64
	var restarted atomic.Bool
	errs := make(chan error, subscribers+topics)
	var wg sync.WaitGroup
	subs := make([]*subscriber, subscribers)
	for s := range subscribers {
		subs[s] = &subscriber{topics: []string{topicName(s % topics), topicName((s + 1) % topics)}, allowResets: true}
		wg.Go(func() { errs <- subs[s].run(ctx, hc, px.url, perTopic) })
	}
	pubs := make([]*publisher, topics)
	for k := range topics {
		pubs[k] = &publisher{topic: topicName(k), batch: 5}
		wg.Go(func() { errs <- pubs[k].run(ctx, hc, px.url, perTopic, &published, &restarted) })
	}

	if !waitFor(30*time.Second, func() bool { return published.Load() >= topics*perTopic/4 }) {
		t.Fatalf("only %d messages published in 30s", published.Load())
	}
	srv.Kill()
	down := time.Now()
	for _, n := range nodes {
		if !waitFor(5*time.Second, func() bool { return getStatus(hc, "http://"+n.addr+"/readyz") == http.StatusServiceUnavailable }) {
			t.Errorf("node %s: /readyz not 503 with Redis down", n.addr)
		}
	}
	time.Sleep(2*time.Second - time.Since(down)) // the outage itself, not a synchronisation
	srv.Restart()
	restarted.Store(true)
	for _, n := range nodes {
		if !waitFor(10*time.Second, func() bool { return getStatus(hc, "http://"+n.addr+"/readyz") == http.StatusOK }) {
			t.Errorf("node %s: /readyz not 200 10s after Redis came back:\n%s", n.addr, n.log())
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var resets, sub503, pub503 int
	for _, s := range subs {
		resets += s.resets
		sub503 += s.unavailable
		if s.resets == 0 {
			t.Errorf("subscriber of %v saw no reset gap across a Redis restart without persistence", s.topics)
		}
		for _, topic := range s.topics {
			var p *publisher
			for _, q := range pubs {
				if q.topic == topic {
					p = q
				}
			}
			if p.firstAfter == 0 {
				t.Fatalf("%s: nothing was published after the restart", topic)
			}
			for i := p.firstAfter; i <= perTopic; i++ {
				if !s.got[topic][i] {
					t.Fatalf("subscriber of %v missed %s i=%d, published after Redis came back", s.topics, topic, i)
				}
			}
		}
	}
	for _, p := range pubs {
		pub503 += p.unavailable
	}
	if sub503 == 0 || pub503 == 0 {
		t.Errorf("503s during the outage: %d to polls, %d to publishes; want some of each", sub503, pub503)
	}
	t.Logf("reset gaps %d, 503s to polls %d, to publishes %d", resets, sub503, pub503)
}
