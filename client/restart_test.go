package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
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

// testRestart runs the restart with the clients' options extra (the
// transport).
func testRestart(t *testing.T, graceful bool, dataDir string, extra ...client.Option) {
	const subscribers, half = 5, 50
	topics := []string{"a", "b"}
	s := startServer(t, serverConfig{server: []longpoll.Option{longpoll.WithRetryAfter(50 * time.Millisecond)}, dataDir: dataDir})
	opts := fast(extra...)
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
// server, crashes it with a new one already listening, and notes when each
// client dials again: the jitter of the backoff (base 1s) must spread the
// first attempts over the second, not send them together, and net/http
// must not re-send the held polls at once on its own.
//
// It runs in a synctest bubble, over an in-memory network, with the real
// server, client and http.Transport: the clock moves only when every
// goroutine waits, so a dial's instant is the one its client chose, however
// late a loaded machine runs the goroutine. Over loopback sockets the
// instants would be the machine's: a stalled process bunches them.
func TestReconnectsAreSpreadAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("long test")
	}
	synctest.Test(t, testReconnectsAreSpread)
}

func testReconnectsAreSpread(t *testing.T) {
	const clients = 1000
	const base = time.Second
	var network pipeNet

	// Server A, a longpoll server, answers each client's first poll at
	// once, so that the held one comes on a reused connection (as in a
	// long-running client), and tells when all the held ones have arrived.
	arrivedA := make(chan struct{}, clients)
	brokerA := memory.New()
	srvA, err := longpoll.New(brokerA)
	if err != nil {
		t.Fatal(err)
	}
	a := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("cursor") == "" {
			q.Set("timeout", "0")
			r.URL.RawQuery = q.Encode()
		} else {
			arrivedA <- struct{}{}
		}
		srvA.ServeHTTP(w, r)
	})}
	go a.Serve(network.listen())
	defer func() {
		a.Close()
		srvA.Shutdown(context.Background())
		brokerA.Close()
	}()
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
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if crashed.Load() {
				now := time.Now()
				mu.Lock()
				if dials[i].IsZero() {
					dials[i] = now
				}
				mu.Unlock()
			}
			return network.dial(ctx)
		}}
		defer tr.CloseIdleConnections()
		c := newClient(t, "http://longpoll.test", client.WithHTTPClient(&http.Client{Transport: tr}),
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

	// Server B takes the network's new connections before A's are cut. It
	// ends each subscription with a 404 (fewer goroutines to hold) and
	// tells when every client came back.
	var back sync.Map
	var count atomic.Int64
	all := make(chan struct{})
	b := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, loaded := back.LoadOrStore(r.URL.Query().Get("topic"), true); !loaded && count.Add(1) == clients {
			close(all)
		}
		writeErr(w, http.StatusNotFound, "not_found")
	})}
	go b.Serve(network.listen())
	defer b.Close()
	cut := time.Now()
	crashed.Store(true)
	a.Close() // its listener and every connection, nothing answered

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
		q(0), q(0.1).Round(time.Millisecond), q(0.5).Round(time.Millisecond),
		q(0.9).Round(time.Millisecond), q(1).Round(time.Millisecond), (q(0.9) - q(0.1)).Round(time.Millisecond), busiest, clients)
	// Full jitter over [0, 1s): p10 near 100ms, p90 near 900ms, about 10
	// clients per 10ms. Synchronised clients, or net/http re-sending the
	// held polls, would all come at the same instant.
	if q(0) < 0 || q(1) >= base {
		t.Errorf("reconnect attempts from %v to %v after the crash, outside the backoff's [0, %v)", q(0), q(1), base)
	}
	if q(0.9)-q(0.1) < base/2 {
		t.Errorf("the middle 80%% of reconnect attempts came within %v: not spread by the jitter", q(0.9)-q(0.1))
	}
	if busiest > clients/20 {
		t.Errorf("%d of %d reconnect attempts came within the same 10ms", busiest, clients)
	}
}

// pipeNet is a network in memory, for a synctest bubble, where a loopback
// socket's wait would not count as blocked: a dial hands one end of a
// net.Pipe to the listener that listened last.
type pipeNet struct {
	mu    sync.Mutex
	ln    *pipeListener
	ports int
}

func (n *pipeNet) listen() *pipeListener {
	ln := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	n.mu.Lock()
	n.ln = ln
	n.mu.Unlock()
	return ln
}

func (n *pipeNet) dial(ctx context.Context) (net.Conn, error) {
	n.mu.Lock()
	ln := n.ln
	n.ports++
	// The server reads the client's address as an IP and port.
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1024 + n.ports}
	n.mu.Unlock()
	c, s := net.Pipe()
	select {
	case ln.conns <- addrConn{s, remote}:
		return c, nil
	case <-ln.done:
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: errors.New("connection refused")}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

// addrConn is a connection with the remote address a socket would have.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
