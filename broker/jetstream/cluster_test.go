package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/longpoll/longpoll"
)

// startCluster runs three current nats-servers as one JetStream cluster
// and returns the store URL naming all three.
func startCluster(t *testing.T) string {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var urls []string
	for i := range 3 {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "lpt", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("a cluster node did not start")
		}
		urls = append(urls, strings.TrimPrefix(s.ClientURL(), "nats://"))
	}
	return "nats://" + strings.Join(urls, ",")
}

// TestCluster runs two brokers on a stream of three replicas while its
// leader steps down again and again: every append gets a seq once, seqs
// stay gapless, and ids stay unique across the failovers.
func TestCluster(t *testing.T) {
	url := scope(t, startCluster(t))
	// Three nodes started together on the new cluster: each Open rides
	// out the others making the same streams and buckets, and their Raft
	// groups forming (Open tries again within WithStartTimeout).
	var opened [3]*Broker
	var errs [3]error
	var wg sync.WaitGroup
	for i := range opened {
		wg.Go(func() { opened[i], errs[i] = Open(url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d of three started together: Open: %v", i, err)
		}
		t.Cleanup(func() { opened[i].Close() })
	}
	a, b := opened[0], opened[1]
	if r := a.stream.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("replicas %d on a cluster of three, want 3", r)
	}

	stop := make(chan struct{})
	var stepdowns atomic.Int32
	var stepper sync.WaitGroup
	stepper.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if _, err := a.nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+a.name, nil, 2*time.Second); err == nil {
				stepdowns.Add(1)
			}
		}
	})
	const publishers, each = 4, 60
	type result struct {
		r   longpoll.Receipt
		id  string
		err error
	}
	results := make(chan result, publishers*each)
	var pubs sync.WaitGroup
	for k := range publishers {
		node := []*Broker{a, b}[k%2]
		pubs.Go(func() {
			for i := range each {
				id := fmt.Sprintf("%d-%d", k, i)
				p := longpoll.Publication{Topic: "hot", ID: id, Data: json.RawMessage(`"` + id + `"`)}
				// A publisher retries with its id until it gets a receipt.
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					rs, err := node.Append(ctx, []longpoll.Publication{p})
					cancel()
					if err == nil {
						results <- result{r: rs[0], id: id}
						break
					}
					if attempt == 50 {
						results <- result{err: err}
						break
					}
					time.Sleep(50 * time.Millisecond) // as a client backs off
				}
			}
		})
	}
	pubs.Wait()
	close(stop)
	stepper.Wait()
	close(results)
	seqOf := map[string]uint64{}
	bySeq := map[uint64]string{}
	for res := range results {
		if res.err != nil {
			t.Fatalf("a publisher gave up: %v", res.err)
		}
		seqOf[res.id] = res.r.Seq
		if other, ok := bySeq[res.r.Seq]; ok && other != res.id {
			t.Fatalf("seq %d given to %s and %s", res.r.Seq, other, res.id)
		}
		bySeq[res.r.Seq] = res.id
	}
	t.Logf("%d leader stepdowns during %d appends", stepdowns.Load(), publishers*each)
	st, err := a.Stat(t.Context(), "hot")
	if err != nil {
		t.Fatal(err)
	}
	if st.Head != publishers*each {
		t.Fatalf("head %d after %d distinct ids, want %d (an id appended twice, or a seq skipped)", st.Head, publishers*each, publishers*each)
	}
	p, err := b.Read(t.Context(), "hot", longpoll.Position{}, publishers*each)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Messages) != publishers*each {
		t.Fatalf("read %d messages, want %d", len(p.Messages), publishers*each)
	}
	for _, m := range p.Messages {
		if seqOf[m.ID] != m.Seq {
			t.Fatalf("seq %d holds id %s, whose receipt says seq %d", m.Seq, m.ID, seqOf[m.ID])
		}
	}
}
