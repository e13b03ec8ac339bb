package bench_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/cli"
)

// holdBack passes requests to a longpoll server, but holds back each
// reply to the first subscriber to poll ("late") until the other
// ("early") has polled again after as many messages, or until bound.
// It records, for each held reply, whether the early subscriber's
// re-poll released it.
type holdBack struct {
	h     http.Handler
	bound time.Duration

	mu       sync.Mutex
	late     string                // the late subscriber's remote address
	repolled map[int]chan struct{} // closed at the early one's n-th re-poll
	repolls  int                   // the early one's re-polls so far
	held     int                   // the late one's replies so far
	released []bool                // per held reply: by the early re-poll
}

func (hb *holdBack) repoll(n int) chan struct{} {
	ch := hb.repolled[n]
	if ch == nil {
		ch = make(chan struct{})
		hb.repolled[n] = ch
	}
	return ch
}

func (hb *holdBack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/poll" {
		hb.h.ServeHTTP(w, r)
		return
	}
	hb.mu.Lock()
	if hb.late == "" {
		hb.late = r.RemoteAddr
	}
	late := r.RemoteAddr == hb.late
	if !late && r.URL.Query().Get("cursor") != "" {
		hb.repolls++
		close(hb.repoll(hb.repolls))
	}
	hb.mu.Unlock()
	if !late {
		hb.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	hb.h.ServeHTTP(rec, r)
	if rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), `"data"`) {
		hb.mu.Lock()
		hb.held++
		ch := hb.repoll(hb.held)
		hb.mu.Unlock()
		byRepoll := false
		select {
		case <-ch:
			byRepoll = true
		case <-time.After(hb.bound):
		case <-r.Context().Done():
		}
		hb.mu.Lock()
		hb.released = append(hb.released, byRepoll)
		hb.mu.Unlock()
	}
	writeRecorded(w, rec, rec.Body.Bytes())
}

// writeRecorded writes a reply recorded by rec, with body for its own.
func writeRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder, body []byte) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// TestReadFirst checks that with --read-first a subscriber re-polls only
// once the other subscribers of its worker have read the round's message,
// and that without it, it re-polls at once.
func TestReadFirst(t *testing.T) {
	for _, readFirst := range []bool{true, false} {
		t.Run(fmt.Sprint("read-first=", readFirst), func(t *testing.T) {
			hb := &holdBack{bound: 500 * time.Millisecond, repolled: make(map[int]chan struct{})}
			url := newWrappedServer(t, func(h http.Handler) http.Handler { hb.h = h; return hb })
			args := []string{"--scenario", "fanout", "--server", url, "--subscribers", "2", "--workers", "1",
				"--messages", "2", "--warmup", "0", "--quiet"}
			if readFirst {
				args = append(args, "--read-first")
			}
			code, out, errOut, res := runBench(t, args...)
			if code != cli.ExitOK || res == nil {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			checkDelivery(t, res)
			if res.ReadFirst != readFirst {
				t.Errorf("read_first %v in the result", res.ReadFirst)
			}
			hb.mu.Lock()
			released := hb.released
			hb.mu.Unlock()
			if len(released) != 2 {
				t.Fatalf("%d replies held back, want 2", len(released))
			}
			for i, byRepoll := range released {
				// With --read-first, the early subscriber waits for the
				// late one to read; without, it re-polls at once.
				switch {
				case readFirst && byRepoll:
					t.Errorf("round %d: the early subscriber re-polled before the late one had read", i+1)
				case !readFirst && !byRepoll:
					t.Errorf("round %d: the early subscriber waited for the late one to read", i+1)
				}
			}
			if readFirst && !strings.Contains(out, "--read-first") {
				t.Errorf("the table does not say the subscribers read first:\n%s", out)
			}
		})
	}
}

// dropOne passes requests to a longpoll server, but answers the first
// reply that carries messages with none, keeping its cursor: that
// subscriber has lost the message.
type dropOne struct {
	h       http.Handler
	mu      sync.Mutex
	dropped bool
}

func (d *dropOne) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/poll" {
		d.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	d.h.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	d.mu.Lock()
	if !d.dropped && rec.Code == http.StatusOK && bytes.Contains(body, []byte(`"data"`)) {
		var reply map[string]any
		if err := json.Unmarshal(body, &reply); err == nil {
			reply["messages"] = []any{}
			body, _ = json.Marshal(reply)
			d.dropped = true
		}
	}
	d.mu.Unlock()
	writeRecorded(w, rec, body)
}

// TestFanoutGoesOnAfterALoss checks that a message the server never
// delivers to one subscriber counts as lost, and that the rounds after it
// still run, rather than the run waiting for it until --run-timeout.
func TestFanoutGoesOnAfterALoss(t *testing.T) {
	url := newWrappedServer(t, func(h http.Handler) http.Handler { return &dropOne{h: h} })
	code, out, errOut, res := runBench(t, "--scenario", "fanout", "--server", url, "--subscribers", "3",
		"--messages", "2", "--warmup", "0", "--quiet", "--run-timeout", "30s")
	if code != cli.ExitOK || res == nil {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if res.Published != 2 || res.Lost != 1 || res.Delivered != 5 || res.Duplicates != 0 || res.Reordered != 0 {
		t.Errorf("published %d, delivered %d, lost %d, duplicates %d, reordered %d; want 2, 5, 1, 0, 0",
			res.Published, res.Delivered, res.Lost, res.Duplicates, res.Reordered)
	}
}
