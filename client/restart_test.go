package client_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/client"
)

// TestServerRestartReportsReset stops the server mid-stream and starts a
// new one, with a fresh memory broker, on the same address. Each
// subscriber must report a reset gap for each topic and go on with the new
// server's messages, none lost or repeated.
func TestServerRestartReportsReset(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		name := "crash"
		if graceful {
			name = "graceful"
		}
		t.Run(name, func(t *testing.T) {
			testRestart(t, graceful, "")
		})
	}
}

// TestServerRestartDurableNoGap: the same restart over the durable disk
// broker loses nothing and reports no gap at all.
func TestServerRestartDurableNoGap(t *testing.T) {
	testRestart(t, true, t.TempDir())
}

func testRestart(t *testing.T, graceful bool, dataDir string) {
	const subscribers, half = 5, 50
	topics := []string{"a", "b"}
	s := startServer(t, serverConfig{server: []longpoll.Option{longpoll.WithRetryAfter(50 * time.Millisecond)}, dataDir: dataDir})
	opts := fast()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// Each subscriber notes, per topic, its events as "n" or "reset".
	got := make([]map[string][]string, subscribers)
	firstHalf := make(chan struct{}, subscribers)
	var wg sync.WaitGroup
	for i := range subscribers {
		got[i] = map[string][]string{}
		c := newClient(t, s.URL, opts...)
		wg.Go(func() {
			msgs, signalled := 0, false
			for ev, err := range c.Subscribe(ctx, topics, client.WithSince(client.Earliest)) {
				if err != nil {
					t.Errorf("subscriber %d: %v", i, err)
					return
				}
				if g := ev.Gap; g != nil {
					got[i][g.Topic] = append(got[i][g.Topic], string(g.Reason))
					continue
				}
				got[i][ev.Message.Topic] = append(got[i][ev.Message.Topic], fmt.Sprint(n(t, ev.Message)))
				msgs++
				if msgs == len(topics)*half && !signalled {
					signalled = true
					firstHalf <- struct{}{}
				}
				if msgs == 2*len(topics)*half {
					return
				}
			}
		})
	}
	pub := newClient(t, s.URL, opts...)
	for _, topic := range topics {
		publishN(t, pub, topic, 1, half)
	}
	for range subscribers {
		<-firstHalf
	}
	s.restart(graceful)
	for _, topic := range topics {
		publishN(t, pub, topic, half+1, 2*half)
	}
	wg.Wait()

	var want []string
	for v := 1; v <= half; v++ {
		want = append(want, fmt.Sprint(v))
	}
	if dataDir == "" {
		want = append(want, "reset")
	}
	for v := half + 1; v <= 2*half; v++ {
		want = append(want, fmt.Sprint(v))
	}
	for i := range subscribers {
		for _, topic := range topics {
			if g := got[i][topic]; !slices.Equal(g, want) {
				t.Errorf("subscriber %d, topic %s got\n%s\nwant\n%s", i, topic, strings.Join(g, " "), strings.Join(want, " "))
			}
		}
	}
}

// TestReconnectsAreSpreadAfterRestart holds 1000 subscribers' polls on a
// server, crashes it with a new one already listening, and measures when
// each client dials again: the jitter of the backoff (base 1s) must spread
// the first attempts over the second, not send them together. The dial
// times are taken in the clients, so that the new server's own queueing
// does not blur them.
func TestReconnectsAreSpreadAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("long test")
	}
	const clients = 1000
	const base = time.Second

	// Server A answers each client's first poll at once, so that the
	// held one comes on a reused connection (as in a long-running
	// client), and tells when all the held ones have arrived.
	arrivedA := make(chan struct{}, clients)
	s := startServer(t, serverConfig{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if q.Get("cursor") == "" {
				q.Set("timeout", "0")
				r.URL.RawQuery = q.Encode()
			} else {
				arrivedA <- struct{}{}
			}
			h.ServeHTTP(w, r)
		})
	}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	var (
		crashed atomic.Bool
		mu      sync.Mutex
		dials   = make([]time.Time, clients) // each client's first dial after the crash
	)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range clients {
		var d net.Dialer
		tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if crashed.Load() {
				now := time.Now()
				mu.Lock()
				if dials[i].IsZero() {
					dials[i] = now
				}
				mu.Unlock()
			}
			return d.DialContext(ctx, network, addr)
		}}
		t.Cleanup(tr.CloseIdleConnections)
		c := newClient(t, s.URL, client.WithHTTPClient(&http.Client{Transport: tr}),
			client.WithPollTimeout(30*time.Second), client.WithBackoff(base, base))
		wg.Go(func() {
			for _, err := range c.Subscribe(ctx, []string{fmt.Sprintf("j.%d", i)}) {
				if err != nil {
					return // the new server's 404, or the end of the test
				}
			}
		})
	}
	for range clients {
		select {
		case <-arrivedA:
		case <-ctx.Done():
			t.Fatal("the polls did not all arrive")
		}
	}

	// Server B, on the same address, ends each subscription with a 404
	// (fewer goroutines to hold) and tells when every client came back.
	var back sync.Map
	var count atomic.Int64
	all := make(chan struct{})
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, loaded := back.LoadOrStore(r.URL.Query().Get("topic"), true); !loaded && count.Add(1) == clients {
			close(all)
		}
		writeErr(w, http.StatusNotFound, "not_found")
	}))
	s.mu.Lock()
	a := s.hs
	s.mu.Unlock()
	a.Listener.Close()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	b.Listener.Close()
	b.Listener = ln
	b.Start()
	defer b.Close()
	cut := time.Now()
	crashed.Store(true)
	a.CloseClientConnections()

	select {
	case <-all:
	case <-ctx.Done():
		t.Fatalf("only %d of %d clients came back", count.Load(), clients)
	}
	mu.Lock()
	offsets := make([]time.Duration, 0, clients)
	for _, at := range dials {
		offsets = append(offsets, at.Sub(cut))
	}
	mu.Unlock()
	slices.Sort(offsets)
	q := func(f float64) time.Duration { return offsets[int(f*float64(clients-1))] }
	var buckets [300]int // 10ms each, over 3s
	for _, d := range offsets {
		buckets[min(max(d/(10*time.Millisecond), 0), 299)]++
	}
	busiest := slices.Max(buckets[:])
	t.Logf("first reconnect attempts after the crash: min %v, p10 %v, median %v, p90 %v, max %v; p10-p90 %v; busiest 10ms holds %d of %d",
		q(0).Round(time.Millisecond), q(0.1).Round(time.Millisecond), q(0.5).Round(time.Millisecond),
		q(0.9).Round(time.Millisecond), q(1).Round(time.Millisecond), (q(0.9) - q(0.1)).Round(time.Millisecond), busiest, clients)
	// Full jitter over [0, 1s): p10 near 100ms, p90 near 900ms, about 10
	// clients per 10ms. Synchronised clients would come within a few ms.
	if q(0.9)-q(0.1) < base/2 {
		t.Errorf("the middle 80%% of reconnect attempts came within %v: not spread by the jitter", q(0.9)-q(0.1))
	}
	if busiest > clients/20 {
		t.Errorf("%d of %d reconnect attempts came within the same 10ms", busiest, clients)
	}
}
