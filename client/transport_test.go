package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/longpoll/longpoll/client"
)

// protoRecorder wraps a handler to note the HTTP major version of every
// request.
type protoRecorder struct {
	mu     sync.Mutex
	majors map[int]int
}

func (p *protoRecorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if p.majors == nil {
			p.majors = map[int]int{}
		}
		p.majors[r.ProtoMajor]++
		p.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (p *protoRecorder) only(major int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.majors) != 1 || p.majors[major] == 0 {
		return fmt.Errorf("requests by HTTP major version: %v, want all %d", p.majors, major)
	}
	return nil
}

// shareOneConnection runs 5 subscriptions and their publishes on c and
// checks that they all arrive.
func shareOneConnection(t *testing.T, c *client.Client) {
	var wg sync.WaitGroup
	for i := range 5 {
		topic := fmt.Sprintf("t%d", i)
		publishN(t, c, topic, 1, 3)
		wg.Go(func() {
			got := collect(t, c.Subscribe(t.Context(), []string{topic}, client.WithSince(client.Earliest)), 3)
			if n(t, got[2].Message) != 3 {
				t.Errorf("%s: got %s", topic, describe(got[2]))
			}
		})
	}
	wg.Wait()
}

func TestH2C(t *testing.T) {
	var protos protoRecorder
	var conns atomic.Int64
	s := startServer(t, serverConfig{h2c: true, wrap: protos.wrap, conns: &conns})
	c := newClient(t, s.URL, fast(client.WithH2C())...)
	shareOneConnection(t, c)
	if err := protos.only(2); err != nil {
		t.Fatal(err)
	}
	if conns.Load() != 1 {
		t.Fatalf("%d connections, want 1 shared by every request", conns.Load())
	}
}

func TestWithoutH2CSpeaksHTTP1(t *testing.T) {
	var protos protoRecorder
	s := startServer(t, serverConfig{h2c: true, wrap: protos.wrap})
	c := newClient(t, s.URL, fast()...)
	publishN(t, c, "t", 1, 1)
	if err := protos.only(1); err != nil {
		t.Fatal(err)
	}
}

func TestHTTP2OverTLS(t *testing.T) {
	var protos protoRecorder
	var conns atomic.Int64
	s := startServer(t, serverConfig{tls: true, wrap: protos.wrap, conns: &conns})
	pool := x509.NewCertPool()
	pool.AddCert(s.certificate())
	c := newClient(t, s.URL, fast(client.WithTLSConfig(&tls.Config{RootCAs: pool}))...)
	shareOneConnection(t, c)
	if err := protos.only(2); err != nil {
		t.Fatal(err)
	}
	if conns.Load() != 1 {
		t.Fatalf("%d connections, want 1 shared by every request", conns.Load())
	}
}

// authServer puts a bearer-token check in front of a real server: tokens
// "t1", "t2", ... are valid, except that t1 expires after expireAfter
// requests. Every request after the expiry must carry a later token.
type authServer struct {
	expireAfter int64
	requests    atomic.Int64
	expired     atomic.Int64 // token_expired answers
	mu          sync.Mutex
	seen        []string
}

func (a *authServer) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := a.requests.Add(1)
		auth := r.Header.Get("Authorization")
		a.mu.Lock()
		a.seen = append(a.seen, auth)
		a.mu.Unlock()
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		switch {
		case !ok || !strings.HasPrefix(tok, "t"):
			writeErr(w, 401, "unauthorized")
		case tok == "t1" && n > a.expireAfter:
			a.expired.Add(1)
			writeErr(w, 401, "token_expired")
		default:
			h.ServeHTTP(w, r)
		}
	})
}

func writeErr(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":"test"}}`, code)
}

func TestTokenExpiredRefreshesAndLosesNothing(t *testing.T) {
	auth := &authServer{expireAfter: 4}
	s := startServer(t, serverConfig{wrap: auth.wrap})
	var hooks atomic.Int64
	hook := func(context.Context) (string, error) {
		return fmt.Sprintf("t%d", hooks.Add(1)), nil
	}
	c := newClient(t, s.URL, fast(client.WithToken(hook))...)
	const total = 30
	done := make(chan []int)
	go func() {
		var got []int
		for ev, err := range c.Subscribe(t.Context(), []string{"t"}, client.WithSince(client.Earliest)) {
			if err != nil {
				t.Error(err)
				break
			}
			got = append(got, n(t, ev.Message))
			if len(got) == total {
				break
			}
		}
		done <- got
	}()
	for i := 1; i <= total; i++ {
		if _, err := c.Publish(t.Context(), "t", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	got := <-done
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("got %v, want 1..%d in order", got, total)
		}
	}
	if len(got) != total {
		t.Fatalf("got %d messages, want %d", len(got), total)
	}
	if auth.expired.Load() == 0 {
		t.Fatal("the server never answered token_expired")
	}
	if hooks.Load() != 2 {
		t.Fatalf("hook called %d times, want 2: the first token and one refresh", hooks.Load())
	}
	auth.mu.Lock()
	defer auth.mu.Unlock()
	last := auth.seen[len(auth.seen)-1]
	if last != "Bearer t2" {
		t.Fatalf("last request carried %q", last)
	}
}

func TestTokenHookErrorIsFatal(t *testing.T) {
	auth := &authServer{expireAfter: 0}
	s := startServer(t, serverConfig{wrap: auth.wrap})
	boom := errors.New("identity provider says no")
	calls := 0
	hook := func(context.Context) (string, error) {
		calls++
		if calls == 1 {
			return "t1", nil
		}
		return "", boom
	}
	c := newClient(t, s.URL, fast(client.WithToken(hook))...)
	for _, err := range c.Subscribe(t.Context(), []string{"t"}) {
		if !errors.Is(err, boom) {
			t.Fatalf("subscription ended with %v, want the hook's error", err)
		}
	}
	if calls != 2 {
		t.Fatalf("hook called %d times, want 2", calls)
	}
}

// TestPublishRetriesWithTheSameID loses the answer of a publish that the
// server applied, then refuses the retry with a 503, and checks that the
// third attempt finds the first one's message rather than adding another.
func TestPublishRetriesWithTheSameID(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	attempt := 0
	s := startServer(t, serverConfig{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/publish" {
				h.ServeHTTP(w, r)
				return
			}
			mu.Lock()
			attempt++
			a := attempt
			mu.Unlock()
			body := new(strings.Builder)
			r.Body = teeBody(r, body)
			switch a {
			case 1: // applied, but the answer is lost with the connection
				h.ServeHTTP(httptest.NewRecorder(), r)
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
			case 2:
				w.Header().Set("Retry-After", "0")
				writeErr(w, 503, "overloaded")
			default:
				h.ServeHTTP(w, r)
			}
			mu.Lock()
			ids = append(ids, idOf(body.String()))
			mu.Unlock()
		})
	}})
	c := newClient(t, s.URL, fast()...)
	r, err := c.Publish(t.Context(), "t", "once")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Duplicate || r.Seq != 1 {
		t.Fatalf("receipt %+v: want the first attempt's message, seq 1, as a duplicate", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 3 || ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] || ids[0] != r.ID {
		t.Fatalf("ids of the attempts: %q, receipt id %q: want one id throughout", ids, r.ID)
	}
	if h := head(t, s.URL, "t"); h != 1 {
		t.Fatalf("topic head %d after retries, want 1", h)
	}
}

// head asks the server for a topic's head seq.
func head(t *testing.T, url, topic string) uint64 {
	t.Helper()
	res, err := http.Get(url + "/v1/topics/" + topic)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var info struct{ Head uint64 }
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return info.Head
}

func teeBody(r *http.Request, into *strings.Builder) io.ReadCloser {
	b, _ := io.ReadAll(r.Body)
	into.Write(b)
	return io.NopCloser(bytes.NewReader(b))
}

func idOf(body string) string {
	var v struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(body), &v)
	return v.ID
}
