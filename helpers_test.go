package longpoll_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/internal/eventloop"
)

// env is a server on a real loopback socket over a memory broker.
type env struct {
	t      *testing.T
	srv    *longpoll.Server
	broker *memory.Broker
	url    string
	hc     *http.Client
}

func newEnv(t *testing.T, bopts []memory.Option, sopts ...longpoll.Option) *env {
	t.Helper()
	b := memory.New(bopts...)
	srv, err := longpoll.New(b, sopts...)
	if err != nil {
		t.Fatal(err)
	}
	url, stop := serveTest(t, srv)
	tr := &http.Transport{MaxIdleConnsPerHost: 200}
	e := &env{t: t, srv: srv, broker: b, url: url, hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		stop()
		tr.CloseIdleConnections()
		b.Close()
	})
	return e
}

// envTransport names the transport the end-to-end tests run over: unset
// for net/http, "dense" for the event loop with its workers, "inline" for
// the event loop serving requests itself (Config.Inline, with GOMAXPROCS
// 1). TestMain runs the package's tests once more over each.
const envTransport = "LONGPOLL_TEST_TRANSPORT"

// serveTest serves srv on a loopback socket over the transport under test
// and returns its base URL and a function that stops it.
func serveTest(t *testing.T, srv *longpoll.Server) (string, func()) {
	kind := os.Getenv(envTransport)
	if kind != "dense" && kind != "inline" {
		ts := httptest.NewServer(srv)
		return ts.URL, ts.Close
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dt := eventloop.New(eventloop.Config{Server: srv.Transport(), Std: &http.Server{Handler: srv}, Inline: kind == "inline"})
	done := make(chan error, 1)
	go func() { done <- dt.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		// Shutdown, not Close: it waits for the connections handed to
		// net/http, as httptest.Server.Close does for std, so that none
		// outlives the test (net/http lingers up to 500 ms on one whose
		// request body it refused, in closeWriteAndWait).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dt.Shutdown(ctx)
		dt.Close()
		<-done
	}
}

// reply is a decoded poll reply.
type reply struct {
	Messages []struct {
		Topic string          `json:"topic"`
		Seq   uint64          `json:"seq"`
		Time  string          `json:"time"`
		ID    *string         `json:"id"`
		Data  json.RawMessage `json:"data"`
	} `json:"messages"`
	Cursor  string `json:"cursor"`
	Timeout bool   `json:"timeout"`
	Gaps    []struct {
		Topic  string `json:"topic"`
		Reason string `json:"reason"`
		Missed uint64 `json:"missed"`
	} `json:"gaps"`
	RetryAfterMS *int64 `json:"retry_after_ms"`
}

type errReply struct {
	Error struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		RequestID    string `json:"request_id"`
		RetryAfterMS int64  `json:"retry_after_ms"`
	} `json:"error"`
}

// do sends a request and returns the status, headers and body.
func (e *env) do(ctx context.Context, method, path, contentType, body string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// publish publishes one message and returns its seq.
func (e *env) publish(topic string, data any) uint64 {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"topic": topic, "data": data})
	status, _, b := e.do(context.Background(), "POST", "/v1/publish", "application/json", string(body))
	if status != 200 {
		e.t.Fatalf("publish: %d %s", status, b)
	}
	var r struct{ Messages []struct{ Seq uint64 } }
	if err := json.Unmarshal(b, &r); err != nil || len(r.Messages) != 1 {
		e.t.Fatalf("publish reply %s: %v", b, err)
	}
	return r.Messages[0].Seq
}

// poll sends GET /v1/poll with q and decodes a 200 reply.
func (e *env) poll(q url.Values) reply {
	e.t.Helper()
	return e.pollCtx(context.Background(), q)
}

func (e *env) pollCtx(ctx context.Context, q url.Values) reply {
	e.t.Helper()
	status, h, b := e.do(ctx, "GET", "/v1/poll?"+q.Encode(), "", "")
	if status != 200 {
		e.t.Fatalf("poll %v: %d %s", q, status, b)
	}
	checkJSONHeaders(e.t, h)
	return decodeReply(e.t, b)
}

func decodeReply(t *testing.T, b []byte) reply {
	t.Helper()
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("poll reply %s: %v", b, err)
	}
	if !bytes.Contains(b, []byte(`"messages":[`)) || !bytes.Contains(b, []byte(`"gaps":[`)) {
		t.Fatalf("poll reply %s: messages and gaps must be arrays", b)
	}
	if r.Cursor == "" {
		t.Fatalf("poll reply %s: no cursor", b)
	}
	return r
}

func checkJSONHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for k, v := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := h.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if h.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id header")
	}
}

// q builds a query.
func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// waitWaiting blocks until topic has n polls held on the server, without
// sleeping: it polls the server's own count between scheduler yields.
func (e *env) waitWaiting(topic string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.Waiting(topic) != n {
		if time.Now().After(deadline) {
			e.t.Fatalf("topic %s: %d waiting, want %d", topic, e.srv.Waiting(topic), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func newGet(ctx context.Context, u string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, "GET", u, nil)
}

func (e *env) doHeader(method, path, k, v string) (int, http.Header, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, nil)
	req.Header.Set(k, v)
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}
