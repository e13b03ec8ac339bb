package client_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/bolt"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/client"
)

// testServer is a longpoll server over a memory broker on a real loopback
// socket. Restart replaces it with a new server and a fresh broker on the
// same address, as a restarted process would be.
type testServer struct {
	t     *testing.T
	addr  string
	URL   string
	bopts []memory.Option
	sopts []longpoll.Option
	wrap  func(http.Handler) http.Handler
	cfg   serverConfig

	mu  sync.Mutex
	srv *longpoll.Server
	b   longpoll.Broker
	hs  *httptest.Server
}

type serverConfig struct {
	broker []memory.Option
	server []longpoll.Option
	// wrap, when set, wraps the server's handler (to count or refuse
	// requests).
	wrap func(http.Handler) http.Handler
	// h2c serves cleartext HTTP/2 besides HTTP/1.1; tls serves HTTPS with
	// HTTP/2 (the URL is then https).
	h2c, tls bool
	// conns, when set, counts the connections accepted.
	conns *atomic.Int64
	// dataDir, when set, makes the server use the durable disk broker
	// there instead of a fresh memory broker.
	dataDir string
}

func startServer(t *testing.T, cfg serverConfig) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, addr: ln.Addr().String(), bopts: cfg.broker, sopts: cfg.server, wrap: cfg.wrap, cfg: cfg}
	s.URL = "http://" + s.addr
	if cfg.tls {
		s.URL = "https://" + s.addr
	}
	s.start(ln)
	t.Cleanup(func() { s.stop(false) })
	return s
}

func (s *testServer) start(ln net.Listener) {
	s.t.Helper()
	var b longpoll.Broker = memory.New(s.bopts...)
	if s.cfg.dataDir != "" {
		b.Close()
		var err error
		if b, err = bolt.Open(s.cfg.dataDir); err != nil {
			s.t.Fatal(err)
		}
	}
	srv, err := longpoll.New(b, s.sopts...)
	if err != nil {
		s.t.Fatal(err)
	}
	var h http.Handler = srv
	if s.wrap != nil {
		h = s.wrap(h)
	}
	hs := httptest.NewUnstartedServer(h)
	hs.Listener.Close()
	hs.Listener = ln
	if s.cfg.conns != nil {
		hs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.cfg.conns.Add(1)
			}
		}
	}
	switch {
	case s.cfg.tls:
		hs.EnableHTTP2 = true
		hs.StartTLS()
	case s.cfg.h2c:
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		hs.Config.Protocols = &p
		hs.Start()
	default:
		hs.Start()
	}
	s.mu.Lock()
	s.srv, s.b, s.hs = srv, b, hs
	s.mu.Unlock()
}

// stop stops the server: gracefully (held polls are answered with a
// retry_after_ms) or as a crash (connections cut, nothing answered).
func (s *testServer) stop(graceful bool) {
	s.mu.Lock()
	srv, b, hs := s.srv, s.b, s.hs
	s.srv, s.b, s.hs = nil, nil, nil
	s.mu.Unlock()
	if hs == nil {
		return
	}
	hs.Listener.Close()
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		srv.Shutdown(ctx)
		cancel()
	}
	hs.CloseClientConnections()
	hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	srv.Shutdown(ctx)
	cancel()
	b.Close()
}

// restart stops the server and starts a new one, with a fresh broker, on
// the same address. A graceful restart answers the held polls (with a
// retry_after_ms) before the new server starts listening; a crash binds the
// new server first and then cuts the old one's connections unanswered, so
// that every reconnect attempt reaches the new server.
func (s *testServer) restart(graceful bool) {
	s.t.Helper()
	if graceful {
		s.stop(true)
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			s.t.Fatal(err)
		}
		s.start(ln)
		return
	}
	s.mu.Lock()
	old, oldSrv, oldB := s.hs, s.srv, s.b
	s.mu.Unlock()
	old.Listener.Close()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.start(ln)
	old.CloseClientConnections()
	old.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	oldSrv.Shutdown(ctx)
	oldB.Close()
}

// certificate returns the TLS server's certificate.
func (s *testServer) certificate() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hs.Certificate()
}

func newClient(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fast are client options for tests: short holds and backoff.
func fast(opts ...client.Option) []client.Option {
	return append([]client.Option{
		client.WithPollTimeout(2 * time.Second),
		client.WithPollMargin(2 * time.Second),
		client.WithBackoff(10*time.Millisecond, 200*time.Millisecond),
	}, opts...)
}

func publishN(t *testing.T, c *client.Client, topic string, from, to int) {
	t.Helper()
	var pubs []client.Publication
	for i := from; i <= to; i++ {
		pubs = append(pubs, client.Publication{Topic: topic, Data: map[string]int{"n": i}, ID: fmt.Sprintf("%s-%d", topic, i)})
	}
	for chunk := range slices.Chunk(pubs, 500) {
		if _, err := c.PublishBatch(t.Context(), chunk); err != nil {
			t.Fatal(err)
		}
	}
}

// n returns the "n" of a message published by publishN.
func n(t testing.TB, m *longpoll.Message) int {
	var v struct{ N int }
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("message %s/%d: data %s: %v", m.Topic, m.Seq, m.Data, err)
	}
	return v.N
}

// collect ranges over a subscription until want events arrived, and
// returns them; any error fails the test.
func collect(t *testing.T, seq func(func(client.Event, error) bool), want int) []client.Event {
	t.Helper()
	var got []client.Event
	if want == 0 {
		return nil
	}
	for ev, err := range seq {
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		got = append(got, ev)
		if len(got) == want {
			break
		}
	}
	return got
}

func describe(ev client.Event) string {
	if ev.Gap != nil {
		return fmt.Sprintf("gap %s %s %d", ev.Gap.Topic, ev.Gap.Reason, ev.Gap.Missed)
	}
	return fmt.Sprintf("msg %s %d %s", ev.Message.Topic, ev.Message.Seq, ev.Message.Data)
}
