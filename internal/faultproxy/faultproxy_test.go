package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/faultproxy"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup starts an HTTP server behind a proxy and returns the proxy and a
// client that does not retry on its own.
func setup(t *testing.T, h http.Handler) (*faultproxy.Proxy, *http.Client, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	p, err := faultproxy.New(ts.Listener.Addr().String(), 1)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		p.Close()
		ts.Close()
	})
	return p, &http.Client{Transport: tr}, &hits
}

func get(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	return io.ReadAll(res.Body)
}

var big = bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB

func bigHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
}

func TestForwardsWithDelays(t *testing.T) {
	p, hc, hits := setup(t, bigHandler())
	p.SetFaults(faultproxy.Faults{Delay: time.Millisecond})
	for i := range 5 {
		b, err := get(t.Context(), hc, p.URL())
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !bytes.Equal(b, big) {
			t.Fatalf("request %d: body of %d bytes differs from the %d sent", i, len(b), len(big))
		}
	}
	if hits.Load() != 5 {
		t.Fatalf("server saw %d requests, want 5", hits.Load())
	}
	if s := p.Stats(); s.Conns != 1 {
		t.Errorf("stats %+v: want 1 connection, reused", s)
	}
}

func TestCutBefore(t *testing.T) {
	p, hc, hits := setup(t, bigHandler())
	p.SetFaults(faultproxy.Faults{CutBefore: 1})
	if _, err := get(t.Context(), hc, p.URL()); err == nil {
		t.Fatal("request through a connection cut at once succeeded")
	}
	if hits.Load() != 0 {
		t.Fatalf("server saw %d requests, want 0", hits.Load())
	}
	if s := p.Stats(); s.CutBefore != 1 {
		t.Errorf("stats %+v: want CutBefore 1", s)
	}
}

func TestCutReply(t *testing.T) {
	p, hc, hits := setup(t, bigHandler())
	p.SetFaults(faultproxy.Faults{CutReply: 1, ReplyBytes: 1000})
	b, err := get(t.Context(), hc, p.URL())
	if err == nil {
		t.Fatalf("got a whole reply (%d bytes) through a connection cut within 1000 bytes", len(b))
	}
	if hits.Load() != 1 {
		t.Fatalf("server saw %d requests, want 1", hits.Load())
	}
	if s := p.Stats(); s.CutReply != 1 {
		t.Errorf("stats %+v: want CutReply 1", s)
	}
}

// holdHandler holds each request until its client leaves and reports that.
func holdHandler(left chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		left <- struct{}{}
	})
}

func TestCutHeld(t *testing.T) {
	left := make(chan struct{}, 1)
	p, hc, _ := setup(t, holdHandler(left))
	p.SetFaults(faultproxy.Faults{CutHeld: 1, HeldWithin: 50 * time.Millisecond})
	if _, err := get(t.Context(), hc, p.URL()); err == nil {
		t.Fatal("held request through a cut connection succeeded")
	}
	<-left // the server saw its client go
	if s := p.Stats(); s.CutHeld != 1 {
		t.Errorf("stats %+v: want CutHeld 1", s)
	}
}

func TestCutAll(t *testing.T) {
	left := make(chan struct{}, 1)
	arrived := make(chan struct{})
	p, hc, _ := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		holdHandler(left).ServeHTTP(w, r)
	}))
	errc := make(chan error, 1)
	go func() {
		_, err := get(t.Context(), hc, p.URL())
		errc <- err
	}()
	<-arrived
	p.CutAll()
	if err := <-errc; err == nil {
		t.Fatal("held request survived CutAll")
	}
	<-left
}

func TestStall(t *testing.T) {
	p, hc, hits := setup(t, bigHandler())
	p.SetFaults(faultproxy.Faults{Stall: 1, ReplyBytes: 0})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := get(ctx, hc, p.URL())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request through a stalled connection: %v, want the deadline to expire", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("server saw %d requests, want 1", hits.Load())
	}
	if s := p.Stats(); s.Stalled != 1 {
		t.Errorf("stats %+v: want Stalled 1", s)
	}
}

func TestRefuseResume(t *testing.T) {
	p, hc, _ := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p.Refuse()
	_, err := net.Dial("tcp", p.Addr())
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while refusing: %v, want connection refused", err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	b, err := get(t.Context(), hc, p.URL())
	if err != nil || string(b) != "ok" {
		t.Fatalf("after Resume: %q, %v", b, err)
	}
}

func TestMixedFaultsCount(t *testing.T) {
	p, _, _ := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 4000))
	}))
	p.SetFaults(faultproxy.Faults{CutBefore: 0.25, CutReply: 0.25, ReplyBytes: 100})
	failed := 0
	const n = 40
	for range n {
		// No keep-alive: net/http re-sends a GET cut on a reused
		// connection, which would hide the fault.
		tr := &http.Transport{DisableKeepAlives: true}
		if _, err := get(t.Context(), &http.Client{Transport: tr}, p.URL()); err != nil {
			failed++
		}
		tr.CloseIdleConnections()
	}
	s := p.Stats()
	if s.Conns != n || int64(failed) != s.CutBefore+s.CutReply {
		t.Fatalf("%d of %d requests failed; stats %+v", failed, n, s)
	}
	if s.CutBefore == 0 || s.CutReply == 0 || failed == n {
		t.Fatalf("faults not mixed: %d of %d failed; stats %+v", failed, n, s)
	}
}

func TestFaultsHitReusedConnections(t *testing.T) {
	p, hc, hits := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p.SetFaults(faultproxy.Faults{CutBefore: 0.3})
	// POST: net/http does not re-send it on its own, so every cut shows.
	failed := 0
	const n = 60
	for range n {
		res, err := hc.Post(p.URL(), "text/plain", strings.NewReader("x"))
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	s := p.Stats()
	if failed == 0 || failed == n || int64(failed) != s.CutBefore || hits.Load() != int64(n-failed) {
		t.Fatalf("%d of %d requests failed, server saw %d; stats %+v", failed, n, hits.Load(), s)
	}
	// Each cut costs a connection; the others are reused.
	if s.Conns != s.CutBefore+1 && s.Conns != s.CutBefore {
		t.Fatalf("%d connections for %d cuts: the healthy ones were not reused", s.Conns, s.CutBefore)
	}
}
