package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longpoll/longpoll/client"
)

// fakeServer is an http.RoundTripper that answers from a handler in the
// calling goroutine, without a network, so that a test can run in a
// synctest bubble where the backoff's waits take no real time. It records
// when each request arrived.
type fakeServer struct {
	handle   func(n int, w http.ResponseWriter, r *http.Request)
	arrivals []time.Time
	stopAt   int // cancel after this many requests
	cancel   context.CancelFunc
}

func (f *fakeServer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	f.arrivals = append(f.arrivals, time.Now())
	n := len(f.arrivals)
	if n >= f.stopAt {
		f.cancel()
		return nil, r.Context().Err()
	}
	w := httptest.NewRecorder()
	f.handle(n, w, r)
	return w.Result(), nil
}

func (f *fakeServer) gaps() []time.Duration {
	var d []time.Duration
	for i := 1; i < len(f.arrivals); i++ {
		d = append(d, f.arrivals[i].Sub(f.arrivals[i-1]))
	}
	return d
}

// runFake subscribes through f until it cancels, in the caller's bubble.
func runFake(t *testing.T, f *fakeServer, opts ...client.Option) error {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f.cancel = cancel
	c, err := client.New("http://longpoll.test", append(opts, client.WithHTTPClient(&http.Client{Transport: f}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var last error
	for ev, err := range c.Subscribe(ctx, []string{"t"}) {
		if err != nil {
			last = err
			continue
		}
		t.Logf("event %s", describe(ev))
	}
	return last
}

func reply503(retryAfterHeader string, retryAfterMS int) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if retryAfterHeader != "" {
			w.Header().Set("Retry-After", retryAfterHeader)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		if retryAfterMS > 0 {
			fmt.Fprintf(w, `{"error":{"code":"overloaded","message":"busy","retry_after_ms":%d}}`, retryAfterMS)
		} else {
			io.WriteString(w, `{"error":{"code":"overloaded","message":"busy"}}`)
		}
	}
}

func TestRetryAfterIsTheFloor(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
		ms     int
		floor  time.Duration
	}{
		{"header", "2", 0, 2 * time.Second},
		{"retry_after_ms", "2", 1300, 1300 * time.Millisecond}, // the precise one wins
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeServer{handle: reply503(tc.header, tc.ms), stopAt: 8}
				err := runFake(t, f, client.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("ended with %v", err)
				}
				for i, d := range f.gaps() {
					// The backoff alone would wait under 100ms.
					if d < tc.floor || d > tc.floor+100*time.Millisecond {
						t.Fatalf("wait %d was %v, want %v to %v", i, d, tc.floor, tc.floor+100*time.Millisecond)
					}
				}
			})
		})
	}
}

func TestShutdownReplyRetryAfterIsTheFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{stopAt: 4, handle: func(n int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			switch n {
			case 1: // a held poll answered at shutdown
				io.WriteString(w, `{"messages":[],"cursor":"AQEC","timeout":false,"gaps":[],"retry_after_ms":3000}`)
			default: // the node is gone; nothing listens
				w.WriteHeader(http.StatusBadGateway)
			}
		}}
		runFake(t, f, client.WithBackoff(10*time.Millisecond, 20*time.Millisecond))
		g := f.gaps()
		if g[0] != 3*time.Second {
			t.Fatalf("polled again %v after the shutdown reply, want 3s", g[0])
		}
		if g[1] >= 10*time.Millisecond {
			t.Fatalf("first retry after a failure waited %v, want under the base 10ms", g[1])
		}
	})
}

func TestBackoffIsBoundedAndResets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Five failures, a success, then failures again.
		f := &fakeServer{stopAt: 10, handle: func(n int, w http.ResponseWriter, _ *http.Request) {
			if n == 6 {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"messages":[],"cursor":"AQEC","timeout":true,"gaps":[]}`)
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
		}}
		base, cap := 100*time.Millisecond, 500*time.Millisecond
		runFake(t, f, client.WithBackoff(base, cap))
		g := f.gaps()
		// Gap i follows attempt i+1. Ceilings: 100, 200, 400, 500, 500ms;
		// then none after the success; then 100ms again.
		ceilings := []time.Duration{100, 200, 400, 500, 500, 0, 100, 200}
		for i, c := range ceilings {
			c *= time.Millisecond
			if c == 0 {
				if g[i] != 0 {
					t.Fatalf("waited %v after a success, want an immediate poll", g[i])
				}
				continue
			}
			if g[i] >= c {
				t.Fatalf("wait %d: %v, want below %v (waits %v)", i, g[i], c, g)
			}
		}
	})
}

func TestTokenExpiredEveryTimeIsNotAHotLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hooks := 0
		hook := func(context.Context) (string, error) {
			hooks++
			return fmt.Sprintf("t%d", hooks), nil
		}
		f := &fakeServer{stopAt: 21, handle: func(_ int, w http.ResponseWriter, r *http.Request) {
			writeErr(w, http.StatusUnauthorized, "token_expired")
		}}
		runFake(t, f, client.WithToken(hook), client.WithBackoff(100*time.Millisecond, time.Second))
		// Each attempt refreshes at once once; the second expiry backs off.
		if hooks != 11 {
			t.Fatalf("hook called %d times for 20 answers, want 11", hooks)
		}
		// Even gaps follow a fresh expiry: the refresh is retried at once.
		// Odd gaps follow a second expiry in a row: a full-jitter backoff,
		// drawn below 100ms, 200ms, 400ms, 800ms, then the 1s cap. A draw
		// is uniform, so each is above zero but the total has no floor.
		t.Logf("gaps %v", f.gaps())
		ceiling := 100 * time.Millisecond
		for i, d := range f.gaps() {
			if i%2 == 0 {
				if d != 0 {
					t.Fatalf("gap %d: %v: the refresh was not retried at once", i, d)
				}
				continue
			}
			if d <= 0 || d >= ceiling {
				t.Fatalf("gap %d: %v, want a backoff in (0, %v)", i, d, ceiling)
			}
			ceiling = min(2*ceiling, time.Second)
		}
	})
}

func TestStalledConnectionIsGivenUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The first poll never gets an answer: its deadline, the hold plus
		// the margin, must end it.
		f := &fakeServer{stopAt: 3}
		f.handle = func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				<-r.Context().Done()
				w.WriteHeader(599)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"messages":[],"cursor":"AQEC","timeout":true,"gaps":[]}`)
		}
		runFake(t, f, client.WithPollTimeout(5*time.Second), client.WithPollMargin(2*time.Second), client.WithBackoff(time.Millisecond, time.Millisecond))
		if g := f.gaps()[0]; g < 7*time.Second || g > 7*time.Second+time.Millisecond {
			t.Fatalf("gave up the stalled poll after %v, want 7s", g)
		}
	})
}

func TestPollAsksForTheHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var query string
		f := &fakeServer{stopAt: 2, handle: func(_ int, w http.ResponseWriter, r *http.Request) {
			query = r.URL.RawQuery
			w.WriteHeader(500)
		}}
		runFake(t, f, client.WithPollTimeout(1500*time.Millisecond))
		if !strings.Contains(query, "timeout=1.5s") || !strings.Contains(query, "topic=t") {
			t.Fatalf("query %q", query)
		}
	})
}
