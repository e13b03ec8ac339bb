package longpoll_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

func TestShutdownAnswersHeldPolls(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("s", 1)
	first := e.poll(q("topic", "s", "since", "earliest", "timeout", "0"))
	const n = 20
	got := make(chan reply, n)
	for range n {
		go func() { got <- e.poll(q("topic", "s", "cursor", first.Cursor, "timeout", "50")) }()
	}
	e.waitWaiting("s", n)
	status, _, _ := e.do(t.Context(), "GET", "/readyz", "", "")
	if status != 200 {
		t.Fatalf("readyz before shutdown: %d", status)
	}
	if err := e.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for range n {
		r := <-got
		if len(r.Messages) != 0 || r.Timeout || r.RetryAfterMS == nil || *r.RetryAfterMS <= 0 {
			t.Fatalf("held poll at shutdown: %+v", r)
		}
		// The cursor is the poll's own: nothing lost.
		if r.Cursor != first.Cursor {
			t.Fatalf("cursor changed at shutdown")
		}
		seen[*r.RetryAfterMS] = true
	}
	if len(seen) < 3 {
		t.Errorf("retry_after_ms not spread: %v", seen)
	}
	status, _, _ = e.do(t.Context(), "GET", "/readyz", "", "")
	if status != 503 {
		t.Fatalf("readyz during shutdown: %d", status)
	}
	status, h, _ := e.do(t.Context(), "POST", "/v1/publish", "application/json", `{"topic":"s","data":1}`)
	if status != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("publish during shutdown: %d", status)
	}
}

// TestHoldJitter checks, on a fake clock, that every hold ends between
// timeout-timeout/16 and timeout, that the holds are spread, and that
// timeouts above the maximum hold are capped.
func TestHoldJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New()
		defer b.Close()
		srv, err := longpoll.New(b, longpoll.WithMaxHold(40*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			query    string
			min, max time.Duration
		}{
			{"timeout=16", 15 * time.Second, 16 * time.Second},
			{"timeout=1.6", 1500 * time.Millisecond, 1600 * time.Millisecond},
			{"timeout=3200ms", 3 * time.Second, 3200 * time.Millisecond},
			{"", 25*time.Second - 25*time.Second/16, 25 * time.Second},
			{"timeout=600", 40*time.Second - 40*time.Second/16, 40 * time.Second},
		}
		for _, c := range cases {
			ends := map[time.Duration]bool{}
			for range 20 {
				start := time.Now()
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/poll?topic=j&"+c.query, nil))
				d := time.Since(start)
				if rec.Code != 200 || d < c.min || d > c.max {
					t.Fatalf("%s: status %d after %v, want a hold in [%v, %v]", c.query, rec.Code, d, c.min, c.max)
				}
				ends[d] = true
			}
			if len(ends) < 10 {
				t.Errorf("%s: holds not spread: %v", c.query, ends)
			}
		}
		// timeout=0 answers at once.
		start := time.Now()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/poll?topic=j&timeout=0", nil))
		if time.Since(start) != 0 || rec.Code != 200 {
			t.Fatalf("timeout=0 took %v", time.Since(start))
		}
	})
}

// TestMaxHoldOverRealHTTP holds a poll for the whole maximum hold behind an
// http.Server whose read and write timeouts are far shorter, over HTTP/1.1
// and h2c: the per-poll deadlines must let it complete normally.
func TestMaxHoldOverRealHTTP(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2c=%v", h2c), func(t *testing.T) {
			b := memory.New()
			defer b.Close()
			srv, err := longpoll.New(b, longpoll.WithMaxHold(2*time.Second), longpoll.WithWriteMargin(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewUnstartedServer(srv)
			ts.Config.ReadTimeout = 500 * time.Millisecond
			ts.Config.WriteTimeout = 500 * time.Millisecond
			p := new(http.Protocols)
			p.SetHTTP1(!h2c)
			p.SetUnencryptedHTTP2(h2c)
			ts.Config.Protocols = p
			ts.Start()
			defer ts.Close()
			tr := &http.Transport{Protocols: p}
			defer tr.CloseIdleConnections()
			start := time.Now()
			resp, err := (&http.Client{Transport: tr}).Get(ts.URL + "/v1/poll?topic=long&timeout=60")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || err != nil || (resp.ProtoMajor == 2) != h2c {
				t.Fatalf("%s status %d, %v", resp.Proto, resp.StatusCode, err)
			}
			r := decodeReply(t, body)
			if !r.Timeout || time.Since(start) < 2*time.Second-2*time.Second/16 {
				t.Fatalf("hold ended after %v: %+v", time.Since(start), r)
			}
		})
	}
}
