//go:build linux

package eventloop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/internal/testrun"
	"github.com/longpoll/longpoll/internal/transport"
)

// TestMain checks for leaked goroutines, and then runs the tests once
// more in a child process with one processor and every fixture serving
// inline (Config.Inline), so that each holds for both ways of serving.
func TestMain(m *testing.M) {
	testrun.Main(m, os.Getenv(envInline) == "",
		testrun.Pass{What: "with one processor, serving on the loop", Env: []string{envInline + "=1", "GOMAXPROCS=1"}})
}

// envInline set makes start serve inline.
const envInline = "LONGPOLL_TEST_INLINE"

type fixture struct {
	srv  *longpoll.Server
	addr string
	t    *Transport
}

// start serves a memory-backed server over a Transport on loopback.
func start(t *testing.T, cfg Config, opts ...longpoll.Option) *fixture {
	t.Helper()
	b := memory.New()
	srv, err := longpoll.New(b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if ps, ok := cfg.Server.(*pausingServer); ok {
		ps.Server = srv.Transport()
	} else {
		cfg.Server = srv.Transport()
	}
	if os.Getenv(envInline) != "" {
		cfg.Inline = true
	}
	if cfg.Std == nil {
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		cfg.Std = &http.Server{Handler: srv, Protocols: p, ReadHeaderTimeout: 5 * time.Second}
	}
	tr := New(cfg)
	done := make(chan error, 1)
	go func() { done <- tr.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		tr.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
		b.Close()
	})
	return &fixture{srv: srv, addr: ln.Addr().String(), t: tr}
}

// served returns the number of connections on the loop, not handed to
// net/http.
func (t *Transport) served() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

func readReply(t *testing.T, br *bufio.Reader) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return resp, v
}

// waitFor polls cond every few milliseconds for up to 10 s: the server's
// own counters are the only view of when a poll is held.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func publish(t *testing.T, srv *longpoll.Server, topic, data string) {
	t.Helper()
	if _, err := srv.Publish(t.Context(), longpoll.Publication{Topic: topic, Data: json.RawMessage(data)}); err != nil {
		t.Fatal(err)
	}
}

func TestHeldPollIsWokenOnTheLoop(t *testing.T) {
	f := start(t, Config{})
	c, br := dial(t, f.addr)
	io.WriteString(c, "GET /v1/poll?topic=a&timeout=30 HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1\r\n\r\n")
	waitFor(t, "the poll to be held", func() bool { return f.srv.Waiting("a") == 1 })
	publish(t, f.srv, "a", `{"hello":1}`)
	resp, v := readReply(t, br)
	msgs := v["messages"].([]any)
	if resp.StatusCode != 200 || len(msgs) != 1 || resp.Header.Get("X-Request-Id") != "r1" || resp.Close {
		t.Fatalf("%d %v %v", resp.StatusCode, v, resp.Header)
	}
	// The connection serves the next poll, from the reply's cursor.
	io.WriteString(c, "GET /v1/poll?topic=a&timeout=0&cursor="+v["cursor"].(string)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, v = readReply(t, br)
	if resp.StatusCode != 200 || len(v["messages"].([]any)) != 0 || v["timeout"] != true {
		t.Fatalf("second poll: %d %v", resp.StatusCode, v)
	}
}

func TestPipelinedRequestReleasesTheHeldPoll(t *testing.T) {
	f := start(t, Config{})
	c, br := dial(t, f.addr)
	io.WriteString(c, "GET /v1/poll?topic=p&timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the poll to be held", func() bool { return f.srv.Waiting("p") == 1 })
	start := time.Now()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, v := readReply(t, br)
	if resp.StatusCode != 200 || v["timeout"] != true || v["cursor"] == "" {
		t.Fatalf("held poll: %d %v", resp.StatusCode, v)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("held poll answered after %v", d)
	}
	resp, v = readReply(t, br)
	if resp.StatusCode != 200 || v["status"] != "ok" {
		t.Fatalf("pipelined request: %d %v", resp.StatusCode, v)
	}
}

func TestOtherRequestsGoToNetHTTP(t *testing.T) {
	f := start(t, Config{})
	c, br := dial(t, f.addr)
	// A poll and a publish on the loop, then a request the loop does not
	// serve on the same connection, which moves it to net/http; the next
	// poll is served there.
	io.WriteString(c, "GET /v1/poll?topic=h&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := readReply(t, br); resp.StatusCode != 200 {
		t.Fatalf("poll: %d", resp.StatusCode)
	}
	body := `{"topic":"h","data":1}`
	io.WriteString(c, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-Id: pub-1\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	if resp, v := readReply(t, br); resp.StatusCode != 200 || v["messages"] == nil || resp.Header.Get("X-Request-Id") != "pub-1" {
		t.Fatalf("publish: %d %v %v", resp.StatusCode, v, resp.Header)
	}
	if n := f.t.served(); n != 1 {
		t.Fatalf("%d connections on the loop, want 1", n)
	}
	io.WriteString(c, "GET /no/such/page HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := readReply(t, br); resp.StatusCode != 404 {
		t.Fatalf("page: %d", resp.StatusCode)
	}
	if n := f.t.served(); n != 0 {
		t.Fatalf("%d connections on the loop after the hand-over, want 0", n)
	}
	io.WriteString(c, "GET /v1/poll?topic=h&since=earliest&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, v := readReply(t, br); resp.StatusCode != 200 || len(v["messages"].([]any)) != 1 {
		t.Fatalf("poll after the hand-over: %d %v", resp.StatusCode, v)
	}
	// Malformed input gets net/http's answer.
	c2, br2 := dial(t, f.addr)
	io.WriteString(c2, "GET /v1/poll?topic=h HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n")
	resp, err := http.ReadResponse(br2, nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("malformed: %v %v", resp, err)
	}
}

// TestSmallRequestsOnTheLoop checks that the protocol's small requests are
// served on the loop, keeping the connection there, with the same answer
// as net/http gives them.
func TestSmallRequestsOnTheLoop(t *testing.T) {
	f := start(t, Config{}, longpoll.WithCORS("https://app.example"))
	publish(t, f.srv, "s", `1`)
	reqs := []string{
		"GET /v1/topics/s HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1\r\n\r\n",
		"HEAD /v1/topics/s HTTP/1.1\r\nHost: x\r\nX-Request-Id: r2\r\n\r\n",
		"GET /v1/topics/%2F HTTP/1.1\r\nHost: x\r\nX-Request-Id: r3\r\n\r\n",
		"OPTIONS /v1/poll HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: GET\r\nX-Request-Id: r4\r\n\r\n",
		"OPTIONS /v1/publish HTTP/1.1\r\nHost: x\r\nOrigin: https://elsewhere.example\r\nAccess-Control-Request-Method: POST\r\nX-Request-Id: r5\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: r6\r\n\r\n",
		"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Request-Id: r7\r\n\r\n",
	}
	type answer struct {
		status int
		header http.Header
		body   string
	}
	ask := func(c net.Conn, br *bufio.Reader, raw string) answer {
		t.Helper()
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(br, &http.Request{Method: raw[:strings.IndexByte(raw, ' ')]})
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Header.Del("Date")
		return answer{resp.StatusCode, resp.Header, string(b)}
	}
	loop, lbr := dial(t, f.addr)
	std, sbr := dial(t, f.addr)
	if a := ask(std, sbr, "GET /no/such/page HTTP/1.1\r\nHost: x\r\n\r\n"); a.status != 404 {
		t.Fatalf("hand-over: %v", a)
	}
	for _, raw := range reqs {
		got, want := ask(loop, lbr, raw), ask(std, sbr, raw)
		if got.status != want.status || got.body != want.body || !reflect.DeepEqual(got.header, want.header) {
			t.Errorf("%q:\non the loop %v\nnet/http    %v", raw, got, want)
		}
	}
	if n := f.t.served(); n != 1 {
		t.Errorf("%d connections on the loop, want 1: a small request moved it to net/http", n)
	}
}

// TestPublishOnTheLoop covers the publishes the loop serves itself and the
// ones it hands to net/http: a body that comes after its head, and the
// handler's own refusals.
func TestPublishOnTheLoop(t *testing.T) {
	f := start(t, Config{})
	c, br := dial(t, f.addr)
	body := `{"topic":"pl","data":{"a":1}}`
	head := "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n"
	// Two publishes pipelined in one write, answered in order.
	io.WriteString(c, head+body+head+body)
	for seq := 1.0; seq <= 2; seq++ {
		resp, v := readReply(t, br)
		got := v["messages"].([]any)[0].(map[string]any)
		if resp.StatusCode != 200 || got["seq"] != seq {
			t.Fatalf("publish %v: %d %v", seq, resp.StatusCode, v)
		}
	}
	// The body after a pause: net/http reads it.
	c2, br2 := dial(t, f.addr)
	io.WriteString(c2, head)
	// Let the head arrive alone: no signal says the server has read it, and
	// if both arrive together the publish is served on the loop, which the
	// test above covers, so only the hand-over's coverage depends on this.
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c2, body)
	if resp, v := readReply(t, br2); resp.StatusCode != 200 || v["messages"].([]any)[0].(map[string]any)["seq"] != 3.0 {
		t.Fatalf("slow body: %d %v", resp.StatusCode, v)
	}
	// The handler's refusals come through unchanged.
	c3, br3 := dial(t, f.addr)
	io.WriteString(c3, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}")
	if resp, v := readReply(t, br3); resp.StatusCode != 415 || v["error"].(map[string]any)["code"] != "unsupported_media_type" {
		t.Fatalf("text/plain: %d %v", resp.StatusCode, v)
	}
	io.WriteString(c3, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	if resp, _ := readReply(t, br3); resp.StatusCode != 400 {
		t.Fatalf("empty publish: %d", resp.StatusCode)
	}
	// No body at all: net/http's path, and still the publish endpoint.
	io.WriteString(c3, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n")
	if resp, v := readReply(t, br3); resp.StatusCode != 400 || v["error"].(map[string]any)["code"] != "invalid_body" {
		t.Fatalf("publish without a body: %d %v", resp.StatusCode, v)
	}
	rc, err := f.srv.Publish(t.Context(), longpoll.Publication{Topic: "pl", Data: json.RawMessage(`0`)})
	if err != nil || rc[0].Seq != 4 {
		t.Fatalf("next publish: %v %v, want seq 4: a publish was lost or doubled", rc, err)
	}
}

// TestInputLargerThanOneRead sends more in one write than the loop reads
// at once: connections are edge-triggered, so the loop must read on
// without another event.
func TestInputLargerThanOneRead(t *testing.T) {
	f := start(t, Config{})
	c, br := dial(t, f.addr)
	data := `"` + strings.Repeat("y", 50<<10) + `"`
	body := `{"messages":[`
	for i := range 6 {
		if i > 0 {
			body += ","
		}
		body += `{"topic":"big","data":` + data + `}`
	}
	body += `]}`
	io.WriteString(c, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	if resp, v := readReply(t, br); resp.StatusCode != 200 || len(v["messages"].([]any)) != 6 {
		t.Fatalf("batch of %d bytes: %d", len(body), resp.StatusCode)
	}
}

// TestRequestThenEndInOneEvent sends a poll and the end of the
// connection together: the loop, edge-triggered, must see the end as
// well as the request.
func TestRequestThenEndInOneEvent(t *testing.T) {
	f := start(t, Config{})
	for range 20 {
		c, _ := dial(t, f.addr)
		io.WriteString(c, "GET /v1/poll?topic=end&timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n")
		c.Close()
	}
	waitFor(t, "the connections to close", func() bool { return f.t.served() == 0 && f.srv.Waiting("end") == 0 })
}

func TestH2CPriorKnowledge(t *testing.T) {
	f := start(t, Config{})
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + f.addr + "/v1/poll?topic=z&timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
	}
}

func TestClientLeavingCancelsItsPoll(t *testing.T) {
	f := start(t, Config{})
	c, _ := dial(t, f.addr)
	io.WriteString(c, "GET /v1/poll?topic=gone&timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the poll to be held", func() bool { return f.srv.Waiting("gone") == 1 })
	c.Close()
	waitFor(t, "the poll to end", func() bool { return f.srv.Waiting("gone") == 0 })
}

func TestSlowHeadIsCut(t *testing.T) {
	f := start(t, Config{ReadHeaderTimeout: 300 * time.Millisecond})
	c, br := dial(t, f.addr)
	io.WriteString(c, "GET /v1/poll?topic=s HTTP/1.1\r\nHo")
	start := time.Now()
	// net/http's answer to a head it could not read whole, then the end.
	if rest, err := io.ReadAll(br); err != nil || string(rest) != badHeadReply {
		t.Fatalf("got %q, %v", rest, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cut after %v", d)
	}
}

func TestConnectionClose(t *testing.T) {
	f := start(t, Config{})
	c, br := dial(t, f.addr)
	io.WriteString(c, "GET /v1/poll?topic=cc&timeout=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, _ := readReply(t, br)
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the reply: %v, want EOF", err)
	}
}

func TestShutdownAnswersAndCloses(t *testing.T) {
	f := start(t, Config{})
	held, hbr := dial(t, f.addr)
	io.WriteString(held, "GET /v1/poll?topic=sd&timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n")
	idle, ibr := dial(t, f.addr)
	io.WriteString(idle, "GET /v1/poll?topic=sd2&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	readReply(t, ibr)
	waitFor(t, "the poll to be held", func() bool { return f.srv.Waiting("sd") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- f.t.Shutdown(ctx) }()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	resp, v := readReply(t, hbr)
	if resp.StatusCode != 200 || v["retry_after_ms"] == nil {
		t.Fatalf("held poll at shutdown: %d %v", resp.StatusCode, v)
	}
	if _, err := hbr.ReadByte(); err != io.EOF {
		t.Fatalf("after the shutdown reply: %v, want EOF", err)
	}
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestShutdownRightAfterServe stops transports as they start, at every
// point of Serve's start-up.
func TestShutdownRightAfterServe(t *testing.T) {
	b := memory.New()
	defer b.Close()
	srv, _ := longpoll.New(b)
	for i := range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tr := New(Config{Server: srv.Transport(), Std: &http.Server{Handler: srv}})
		done := make(chan error, 1)
		go func() { done <- tr.Serve(ln) }()
		if i%2 == 1 {
			runtime.Gosched() // vary how far Serve gets before Shutdown
		}
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			shut <- tr.Shutdown(ctx)
		}()
		select {
		case err := <-shut:
			if err != nil {
				t.Fatalf("round %d: Shutdown: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Shutdown hangs", i)
		}
		select {
		case err := <-done:
			if err != http.ErrServerClosed {
				t.Fatalf("round %d: Serve returned %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Serve did not return after Shutdown", i)
		}
		ln.Close()
	}
}

// askForBigReply publishes 100 messages of 60 KiB and asks for them all
// on a connection with a 4 KiB receive buffer: more than the server's
// socket buffer (at most 4 MiB here) and the client's can hold, and more
// than nbio's 1 MiB cap on waiting output, which cut such a reply. It
// returns one message's data, as JSON, and the connection.
// bigReply bounds the reply askForBigReply asks for, over what the
// kernel's socket buffers take on loopback.
const bigReply = 8 << 20

func askForBigReply(t *testing.T, f *fixture) (string, net.Conn) {
	t.Helper()
	big := `"` + strings.Repeat("x", 60<<10) + `"`
	for range 100 {
		publish(t, f.srv, "big", big)
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET /v1/poll?topic=big&since=earliest&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	return big, c
}

// TestReplyLargerThanTheSocketTakes writes a reply the client's small
// receive buffer cannot take at once: what the socket does not take waits
// on the connection and the loop sends it as the client reads, intact.
func TestReplyLargerThanTheSocketTakes(t *testing.T) {
	f := start(t, Config{}, longpoll.WithMaxReplyBytes(bigReply))
	big, c := askForBigReply(t, f)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	resp, v := readReply(t, br)
	msgs := v["messages"].([]any)
	if resp.StatusCode != 200 || len(msgs) != 100 {
		t.Fatalf("%d, %d messages", resp.StatusCode, len(msgs))
	}
	for i, m := range msgs {
		if m.(map[string]any)["data"] != big[1:len(big)-1] {
			t.Fatalf("message %d damaged", i)
		}
	}
	// The connection goes on serving.
	io.WriteString(c, "GET /v1/poll?topic=big&timeout=0&cursor="+v["cursor"].(string)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, v = readReply(t, br); resp.StatusCode != 200 || v["timeout"] != true {
		t.Fatalf("next poll: %d %v", resp.StatusCode, v)
	}
}

// TestClientThatDoesNotReadIsCut: a reply the client does not read at
// all is dropped with its connection after stallTime.
func TestClientThatDoesNotReadIsCut(t *testing.T) {
	setVar(t, &stallTime, 300*time.Millisecond)
	f := start(t, Config{}, longpoll.WithMaxReplyBytes(bigReply))
	askForBigReply(t, f)
	conns := func() int {
		f.t.mu.Lock()
		l := f.t.l
		f.t.mu.Unlock()
		if l == nil {
			return -1
		}
		return len(l.all())
	}
	waitFor(t, "a connection", func() bool { return conns() == 1 })
	waitFor(t, "the stalled connection to be cut", func() bool { return conns() == 0 })
}

// TestIdleConnectionIsClosed: a keep-alive connection with no request for
// the idle timeout is closed; one with a held poll is not.
func TestIdleConnectionIsClosed(t *testing.T) {
	f := start(t, Config{IdleTimeout: time.Second})
	idle, br := dial(t, f.addr)
	io.WriteString(idle, "GET /v1/poll?topic=i&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	readReply(t, br)
	held, hbr := dial(t, f.addr)
	io.WriteString(held, "GET /v1/poll?topic=h&timeout=5 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the poll to be held", func() bool { return f.srv.Waiting("h") == 1 })
	begin := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("closed after %v idle, want about 1-2s", d)
	}
	if f.srv.Waiting("h") != 1 {
		t.Fatal("the held poll's connection was closed as idle")
	}
	publish(t, f.srv, "h", `1`)
	if resp, v := readReply(t, hbr); resp.StatusCode != 200 || len(v["messages"].([]any)) != 1 {
		t.Fatalf("held poll: %d %v", resp.StatusCode, v)
	}
}

// loopPause holds the loop in its server's Pause at its first fetch after
// hold is set, until unpause; entered receives once it is held there.
type loopPause struct {
	hold    atomic.Bool
	entered chan struct{}
	unpause func()
}

// pausingServer is the server with a Pause that loopPause controls.
type pausingServer struct {
	transport.Server
	lp      *loopPause
	release chan struct{}
}

func (ps *pausingServer) Pause() {
	if ps.lp.hold.CompareAndSwap(true, false) {
		ps.lp.entered <- struct{}{}
		<-ps.release
	}
}

// pauseLoop starts a fixture whose server's Pause is held by loopPause. A
// failure never leaves the loop held: unpause runs before the fixture's
// clean-up.
func pauseLoop(t *testing.T) (*fixture, *loopPause) {
	release := make(chan struct{})
	lp := &loopPause{entered: make(chan struct{}, 1), unpause: sync.OnceFunc(func() { close(release) })}
	f := start(t, Config{Server: &pausingServer{lp: lp, release: release}})
	t.Cleanup(lp.unpause)
	return f, lp
}

// held waits until the loop is held in its server's Pause.
func (lp *loopPause) held(t *testing.T) {
	t.Helper()
	select {
	case <-lp.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not ask its server to Pause before taking more input")
	}
}

// TestLoopWaitsForAFanOut: while the server's Pause holds (a large fan-out
// is being written), the loop takes no more input; once it returns, the
// request that came meanwhile is served.
func TestLoopWaitsForAFanOut(t *testing.T) {
	f, lp := pauseLoop(t)
	c, br := dial(t, f.addr)
	const poll = "GET /v1/poll?topic=fo&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"
	io.WriteString(c, poll)
	if resp, _ := readReply(t, br); resp.StatusCode != 200 {
		t.Fatalf("poll: %d", resp.StatusCode)
	}
	// The loop asks its server to Pause before each fetch of events, including
	// the one this poll's arrival wakes it for.
	lp.hold.Store(true)
	io.WriteString(c, poll)
	lp.held(t)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a request was served while the loop was paused")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	lp.unpause()
	if resp, _ := readReply(t, br); resp.StatusCode != 200 {
		t.Fatalf("poll after the pause: %d", resp.StatusCode)
	}
}

func TestRunQueuesForTheWorkers(t *testing.T) {
	tr := &Transport{jobs: make(chan job, 1), quit: make(chan struct{})}
	c := &conn{t: tr}
	ran := make(chan int, 3)
	c.Run(func() { ran <- 1 }) // queued for a worker
	c.Run(func() { ran <- 2 }) // the queue is full: a goroutine of its own
	if v := <-ran; v != 2 {
		t.Fatalf("ran %d first, want the one that found the queue full", v)
	}
	select {
	case v := <-ran:
		t.Fatalf("ran %d with no worker", v)
	default:
	}
	if len(tr.jobs) != 1 {
		t.Fatalf("%d jobs queued, want 1", len(tr.jobs))
	}
	// A worker stopping runs what was queued.
	tr.wg.Add(1)
	go tr.work()
	tr.stopWorkers(1)
	ranAlready(t, ran, 1, "the queued work")
	// Once the workers stop, work runs on a goroutine of its own rather
	// than wait in the queue for none.
	c.Run(func() { ran <- 3 })
	if len(tr.jobs) != 0 {
		t.Fatal("work was queued after the workers stopped")
	}
	if v := <-ran; v != 3 {
		t.Fatalf("ran %d", v)
	}
	// Work that reached the queue behind the stop jobs (its Run began
	// before quit closed) runs when the workers have stopped.
	late := &Transport{jobs: make(chan job, 1), quit: make(chan struct{})}
	late.jobs <- job{fn: func() { ran <- 4 }}
	late.stopWorkers(0)
	ranAlready(t, ran, 4, "work queued behind the stop jobs")
}

// ranAlready checks that the work numbered want has run, and run first
// of what is not yet checked: stopWorkers returns after it.
func ranAlready(t *testing.T, ran <-chan int, want int, what string) {
	t.Helper()
	select {
	case v := <-ran:
		if v != want {
			t.Fatalf("ran %d, want %d (%s)", v, want, what)
		}
	default:
		t.Fatalf("%s did not run", what)
	}
}

// TestLongPipelineIsReadAsServed pipelines several times maxPending behind
// a held poll: the loop stops reading the connection while the requests
// ahead are served, and serves every one, in order, without cutting it.
func TestLongPipelineIsReadAsServed(t *testing.T) {
	f := start(t, Config{})
	c, br := dial(t, f.addr)
	io.WriteString(c, "GET /v1/poll?topic=lp&timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the poll to be held", func() bool { return f.srv.Waiting("lp") == 1 })
	body := `{"topic":"lq","data":"` + strings.Repeat("x", 4000) + `"}`
	req := "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	const n = 100 // about 400 KiB
	written := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, strings.Repeat(req, n))
		written <- err
	}()
	if resp, v := readReply(t, br); resp.StatusCode != 200 || v["timeout"] != true {
		t.Fatalf("held poll: %d %v", resp.StatusCode, v)
	}
	for i := 1; i <= n; i++ {
		resp, v := readReply(t, br)
		if resp.StatusCode != 200 || v["messages"].([]any)[0].(map[string]any)["seq"] != float64(i) {
			t.Fatalf("publish %d: %d %v", i, resp.StatusCode, v)
		}
	}
	if err := <-written; err != nil {
		t.Fatalf("writing the pipeline: %v", err)
	}
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, v := readReply(t, br); resp.StatusCode != 200 || v["status"] != "ok" {
		t.Fatalf("after the pipeline: %d %v", resp.StatusCode, v)
	}
}

// TestLongPipelinedBodyGoesToNetHTTP sends a poll and, in the same write,
// a publish larger than maxPending: the loop holds the input back while
// the poll is served, then hands the connection to net/http with the part
// it has read, and net/http reads the rest.
func TestLongPipelinedBodyGoesToNetHTTP(t *testing.T) {
	f := start(t, Config{})
	c, br := dial(t, f.addr)
	m := `{"topic":"lb","data":"` + strings.Repeat("y", 60000) + `"}`
	body := `{"messages":[` + strings.Repeat(m+",", 4) + m + `]}` // 300 KB
	written := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, "GET /v1/poll?topic=lb&timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n"+
			"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
		written <- err
	}()
	if resp, v := readReply(t, br); resp.StatusCode != 200 || v["timeout"] != true {
		t.Fatalf("poll: %d %v", resp.StatusCode, v)
	}
	if resp, v := readReply(t, br); resp.StatusCode != 200 || v["messages"].([]any)[4].(map[string]any)["seq"] != 5.0 {
		t.Fatalf("publish: %d %v", resp.StatusCode, v)
	}
	if err := <-written; err != nil {
		t.Fatalf("writing: %v", err)
	}
}

// More connections become ready at once than two fetches take: no new
// event announces the rest, so the loop must fetch again before waiting.
// (Two, because the writes made while the loop is paused report the set
// readable to the runtime once more, which is worth one more fetch.)
func TestMoreReadyThanOneFetch(t *testing.T) {
	f, lp := pauseLoop(t)
	const poll = "GET /v1/poll?topic=many&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"
	n := 2*fetchSize + 40
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], readers[i] = dial(t, f.addr)
		io.WriteString(conns[i], poll) // on the loop once, before the pause
		if resp, _ := readReply(t, readers[i]); resp.StatusCode != 200 {
			t.Fatalf("poll %d: %d", i, resp.StatusCode)
		}
	}
	lp.hold.Store(true)
	io.WriteString(conns[0], poll)
	lp.held(t)
	for _, c := range conns[1:] {
		io.WriteString(c, poll) // each in its socket when Write returns
	}
	lp.unpause()
	for i, br := range readers {
		conns[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, _ := readReply(t, br); resp.StatusCode != 200 {
			t.Fatalf("poll %d after the pause: %d", i, resp.StatusCode)
		}
	}
}

// With Config.Inline and one processor, the loop serves polls and
// publishes itself, and a publish's fan-out after its reply: all are
// answered while the only worker is busy. With more processors they go
// to the workers again.
func TestInlineServesOnTheLoop(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f := start(t, Config{Inline: true, Workers: 1})
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	f.t.jobs <- job{fn: func() { close(started); <-release }}
	<-started // the only worker is taken

	held, heldBr := dial(t, f.addr)
	held.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(held, "GET /v1/poll?topic=a&timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the poll to be held", func() bool { return f.srv.Waiting("a") == 1 })

	c, br := dial(t, f.addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	body := `{"topic":"a","data":1}`
	fmt.Fprintf(c, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if resp, _ := readReply(t, br); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s", resp.Status)
	}
	resp, v := readReply(t, heldBr) // the fan-out, not left to the busy worker
	if msgs, _ := v["messages"].([]any); resp.StatusCode != http.StatusOK || len(msgs) != 1 {
		t.Fatalf("held poll: %s %v", resp.Status, v)
	}
	io.WriteString(c, "GET /v1/poll?topic=a&since=earliest&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, v = readReply(t, br)
	if msgs, _ := v["messages"].([]any); resp.StatusCode != http.StatusOK || len(msgs) != 1 {
		t.Fatalf("poll: %s %v", resp.Status, v)
	}

	runtime.GOMAXPROCS(2)
	f.t.checkProcs()
	if f.t.inline.Load() {
		t.Error("still serving on the loop with two processors")
	}
	runtime.GOMAXPROCS(1)
	f.t.checkProcs()
	if !f.t.inline.Load() {
		t.Error("not serving on the loop with one processor")
	}
}

// What an inline request sets off runs after it, on its goroutine, and
// so does what that sets off in turn; with no request being served,
// nothing is queued.
func TestRunAfterInlineRequests(t *testing.T) {
	tr := &Transport{}
	if tr.runAfter(func() {}) {
		t.Fatal("queued with no request being served")
	}
	var order []string
	tr.doInline(job{fn: func() {
		queued := tr.runAfter(func() {
			order = append(order, "fan-out")
			tr.runAfter(func() { order = append(order, "its fan-out") })
		})
		if !queued {
			t.Error("not queued while a request is served")
		}
		order = append(order, "request")
	}})
	if want := []string{"request", "fan-out", "its fan-out"}; !reflect.DeepEqual(order, want) {
		t.Errorf("ran %q, want %q", order, want)
	}
	if tr.runAfter(func() {}) {
		t.Error("queued after the request ended")
	}
}
