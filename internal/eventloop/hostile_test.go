//go:build linux

package eventloop

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

// setVar sets *v to d for the test, before its fixture starts: the value
// is put back after the fixture's cleanup, once no timer of its
// connections reads it.
func setVar(t *testing.T, v *time.Duration, d time.Duration) {
	old := *v
	*v = d
	t.Cleanup(func() { *v = old })
}

// dialSmall dials addr with a 4 KiB receive buffer, so that a client that
// does not read soon fills the server's socket.
func dialSmall(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

// conn returns the loop's newest connection, or nil.
func (f *fixture) conn() *conn {
	f.t.mu.Lock()
	l := f.t.l
	f.t.mu.Unlock()
	if l == nil {
		return nil
	}
	var last *conn
	for _, c := range l.all() {
		if last == nil || c.gen > last.gen {
			last = c
		}
	}
	return last
}

// held reports the input and output c holds in the process.
func (c *conn) heldBytes() (in, out int) {
	c.mu.Lock()
	in = len(c.buf)
	if c.std != nil {
		c.std.mu.Lock()
		in += len(c.std.buf)
		c.std.mu.Unlock()
	}
	c.mu.Unlock()
	c.io.Lock()
	if c.o != nil {
		out = len(c.o.buf)
	}
	c.io.Unlock()
	return in, out
}

// TestHalfCloseIsAnswered: a client that ends its input after its
// requests still gets every reply, and a held poll is answered at once,
// with its cursor unchanged; then the server closes.
func TestHalfCloseIsAnswered(t *testing.T) {
	f := start(t, Config{})
	t.Run("healthz", func(t *testing.T) {
		c, br := dial(t, f.addr)
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		c.(*net.TCPConn).CloseWrite()
		if resp, v := readReply(t, br); resp.StatusCode != 200 || v["status"] != "ok" {
			t.Fatalf("%d %v", resp.StatusCode, v)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the reply: %v, want EOF", err)
		}
	})
	t.Run("publishes", func(t *testing.T) {
		c, br := dial(t, f.addr)
		var reqs strings.Builder
		for i := range 5 {
			body := `{"topic":"hc","data":` + itoa(i) + `}`
			reqs.WriteString("POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body)
		}
		io.WriteString(c, reqs.String())
		c.(*net.TCPConn).CloseWrite()
		for i := range 5 {
			resp, v := readReply(t, br)
			if resp.StatusCode != 200 || v["messages"].([]any)[0].(map[string]any)["seq"] != float64(i+1) {
				t.Fatalf("publish %d: %d %v", i, resp.StatusCode, v)
			}
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the replies: %v, want EOF", err)
		}
	})
	t.Run("held poll", func(t *testing.T) {
		c, br := dial(t, f.addr)
		io.WriteString(c, "GET /v1/poll?topic=hp&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
		_, first := readReply(t, br)
		io.WriteString(c, "GET /v1/poll?topic=hp&timeout=30&cursor="+first["cursor"].(string)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		waitFor(t, "the poll to be held", func() bool { return f.srv.Waiting("hp") == 1 })
		c.(*net.TCPConn).CloseWrite()
		resp, v := readReply(t, br)
		if resp.StatusCode != 200 || v["timeout"] != true || len(v["messages"].([]any)) != 0 || v["cursor"] != first["cursor"] {
			t.Fatalf("%d %v, want a timeout reply with cursor %v", resp.StatusCode, v, first["cursor"])
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the reply: %v, want EOF", err)
		}
		waitFor(t, "the poll to stop waiting", func() bool { return f.srv.Waiting("hp") == 0 })
	})
	t.Run("partial head", func(t *testing.T) {
		c, br := dial(t, f.addr)
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHo")
		c.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(br); err != nil || string(rest) != badHeadReply {
			t.Fatalf("got %q, %v; want net/http's 400", rest, err)
		}
	})
	t.Run("handed over", func(t *testing.T) {
		c, br := dial(t, f.addr)
		io.WriteString(c, "GET /no/such/page HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/poll?topic=ho&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
		c.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 404 {
			t.Fatalf("page: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp, v := readReply(t, br); resp.StatusCode != 200 || v["timeout"] != true {
			t.Fatalf("poll: %d %v", resp.StatusCode, v)
		}
	})
}

// TestPipelineWithoutReadingHoldsOneReply: a client that pipelines
// requests and reads none of the replies makes the connection hold at
// most one reply and a bounded input: it waits in the client's socket.
func TestPipelineWithoutReadingHoldsOneReply(t *testing.T) {
	f := start(t, Config{})
	big := `"` + strings.Repeat("x", 60<<10) + `"`
	for range 40 {
		publish(t, f.srv, "pw", big)
	}
	c := dialSmall(t, f.addr)
	req := []byte(strings.Repeat("GET /v1/poll?topic=pw&since=earliest&limit=100&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n", 200))
	written := make(chan struct{})
	go func() {
		defer close(written)
		for { // until the connection is closed below
			if _, err := c.Write(req); err != nil {
				return
			}
		}
	}()
	defer func() { c.Close(); <-written }()
	var dc *conn
	waitFor(t, "the connection", func() bool { dc = f.conn(); return dc != nil })
	// Output waits on the connection, and the loop no longer reads it:
	// the client's writes wait in its socket.
	waitFor(t, "output to wait and input to be held back", func() bool {
		_, out := dc.heldBytes()
		return out > 0 && dc.held.Load()
	})
	in, out := dc.heldBytes()
	if maxIn := maxPending + 64<<10; in > maxIn {
		t.Errorf("input held: %d bytes, want at most %d", in, maxIn)
	}
	if maxOut := longpoll.DefaultMaxReplyBytes + 4<<10; out > maxOut {
		t.Errorf("output held: %d bytes, want at most one reply, %d", out, maxOut)
	}
	// The budget counts what waits, and at most one more reply, built
	// for the next request once the socket took some (the kernel's
	// buffers may grow meanwhile).
	if used, most := f.srv.ReplyBytesPending(), int64(2*(longpoll.DefaultMaxReplyBytes+4<<10)); used > most || used <= 0 {
		t.Errorf("reply budget counts %d bytes, with %d waiting; want between 1 and %d", used, out, most)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestHandedConnectionHoldsLittle: a connection handed to net/http whose
// handler reads its body slowly holds at most stdWatermark and one read
// of input; a handler that writes more than the client reads waits, as
// on a socket. Both ends get every byte.
func TestHandedConnectionHoldsLittle(t *testing.T) {
	release := make(chan struct{})
	var got bytes.Buffer
	readDone := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /in", func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.Copy(&got, r.Body)
		close(readDone)
	})
	const outSize = 8 << 20
	mux.HandleFunc("GET /out", func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("z"), outSize))
	})
	f := start(t, Config{Std: &http.Server{Handler: mux}})

	t.Run("input", func(t *testing.T) {
		c, br := dial(t, f.addr)
		const size = 8 << 20
		sent := make(chan error, 1)
		go func() {
			_, err := io.WriteString(c, "POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: "+itoa(size)+"\r\n\r\n"+strings.Repeat("b", size))
			sent <- err
		}()
		var dc *conn
		waitFor(t, "the connection", func() bool { dc = f.conn(); return dc != nil })
		waitFor(t, "input to be held back", func() bool { return dc.held.Load() })
		if in, _ := dc.heldBytes(); in > stdWatermark+64<<10 {
			t.Errorf("input held: %d bytes", in)
		}
		close(release)
		<-readDone
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		if got.Len() != size {
			t.Fatalf("the handler read %d bytes, want %d", got.Len(), size)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
	})
	t.Run("output", func(t *testing.T) {
		c := dialSmall(t, f.addr)
		io.WriteString(c, "GET /out HTTP/1.1\r\nHost: x\r\n\r\n")
		var dc *conn
		waitFor(t, "the connection", func() bool { dc = f.conn(); return dc != nil })
		waitFor(t, "output to wait", func() bool {
			if dc = f.conn(); dc == nil { // the newest: the last subtest's may linger
				return false
			}
			_, out := dc.heldBytes()
			return out > 0
		})
		if _, out := dc.heldBytes(); out > 2*stdWatermark {
			t.Errorf("output held: %d bytes, want at most %d", out, 2*stdWatermark)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != outSize {
			t.Fatalf("read %d bytes, %v; want %d", n, err, outSize)
		}
	})
}

// TestSlowReadersAreCut: while replies wait for clients that read slower
// than slowRate and the budget is more than half used, those holding more
// than their share are cut until it is not; each client then polls again
// from its cursor and gets every message.
// A poll whose reply the budget cannot take meanwhile gets 503.
func TestSlowReadersAreCut(t *testing.T) {
	setVar(t, &slowCheck, 200*time.Millisecond)
	// Two replies of 7.5 MB each, of which the kernel's buffers take
	// about 3 MB and the process holds the rest: one weighs less than
	// half the budget, two more.
	const budget = 16 << 20
	f := start(t, Config{}, longpoll.WithMaxReplyBytes(bigReply), longpoll.WithMaxReplyMemory(budget))
	big := `"` + strings.Repeat("s", 60<<10) + `"`
	const n = 120
	for range n {
		publish(t, f.srv, "slow", big)
	}
	const poll = "GET /v1/poll?topic=slow&since=earliest&limit=1000&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"
	var readers []*net.TCPConn
	for i := range 2 {
		c := dialSmall(t, f.addr)
		io.WriteString(c, poll)
		readers = append(readers, c)
		if i == 0 {
			// One after the other: replies reserved at once could take
			// the whole budget, and the second be refused.
			waitFor(t, "the reply to wait", func() bool { return f.t.holding.Load() == 1 })
		}
	}
	// Each reads a little, far below slowRate, until it is cut or the
	// budget is no longer under pressure.
	cut := make(chan int, len(readers))
	stop := make(chan struct{})
	for i, c := range readers {
		go func() {
			buf := make([]byte, 16)
			tick := time.NewTicker(50 * time.Millisecond) // the slow reader's pace
			defer tick.Stop()
			for {
				if _, err := c.Read(buf); err != nil {
					if !isTimeout(err) {
						cut <- i
					}
					return
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	select {
	case <-cut:
	case <-time.After(20 * time.Second):
		t.Fatal("no slow reader was cut")
	}
	waitFor(t, "the budget to be under half full", func() bool { return f.srv.ReplyBytesPending() <= budget/2 })
	close(stop)
	for _, c := range readers {
		c.Close()
	}
	waitFor(t, "the budget to be let go", func() bool { return f.srv.ReplyBytesPending() == 0 })
	// At full speed, from the same start, every message arrives.
	for i := range readers {
		c, br := dial(t, f.addr)
		cur := ""
		seq := 0
		for seq < n {
			q := "GET /v1/poll?topic=slow&since=earliest&limit=1000&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"
			if cur != "" {
				q = "GET /v1/poll?topic=slow&limit=1000&timeout=0&cursor=" + cur + " HTTP/1.1\r\nHost: x\r\n\r\n"
			}
			io.WriteString(c, q)
			resp, v := readReply(t, br)
			if resp.StatusCode != 200 {
				t.Fatalf("reader %d: %d %v", i, resp.StatusCode, v)
			}
			for _, m := range v["messages"].([]any) {
				seq++
				if s := m.(map[string]any)["seq"]; s != float64(seq) {
					t.Fatalf("reader %d: seq %v, want %d", i, s, seq)
				}
			}
			cur = v["cursor"].(string)
		}
	}
}

// TestRepliesBeyondTheBudgetAreRefused: while a client that does not read
// holds output past the reply budget, a poll with messages gets 503
// overloaded with Retry-After, and its cursor still serves it later.
func TestRepliesBeyondTheBudgetAreRefused(t *testing.T) {
	f := start(t, Config{}, longpoll.WithMaxReplyBytes(bigReply), longpoll.WithMaxReplyMemory(1<<20))
	big := `"` + strings.Repeat("r", 60<<10) + `"`
	for range 120 { // 7.5 MB, more than the kernel's buffers take
		publish(t, f.srv, "rb", big)
	}
	stuck := dialSmall(t, f.addr)
	io.WriteString(stuck, "GET /v1/poll?topic=rb&since=earliest&limit=1000&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "output to wait past the budget", func() bool { return f.srv.ReplyBytesPending() > 1<<20 })
	c, br := dial(t, f.addr)
	io.WriteString(c, "GET /v1/poll?topic=rb&since=earliest&limit=5&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, v := readReply(t, br)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d, Retry-After %q, with %d bytes of replies pending", resp.StatusCode, resp.Header.Get("Retry-After"), f.srv.ReplyBytesPending())
	}
	if code := v["error"].(map[string]any)["code"]; code != longpoll.CodeOverloaded {
		t.Fatalf("code %v", code)
	}
	stuck.Close()
	waitFor(t, "the budget to be let go", func() bool { return f.srv.ReplyBytesPending() == 0 })
	io.WriteString(c, "GET /v1/poll?topic=rb&since=earliest&limit=5&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, v = readReply(t, br); resp.StatusCode != 200 || len(v["messages"].([]any)) != 5 {
		t.Fatalf("%d, %d messages", resp.StatusCode, len(v["messages"].([]any)))
	}
}

// TestHeadTimeFromAccept: a connection that sends nothing, and one whose
// next head comes one byte at a time behind a request, are cut at the
// header timeout, counted from the accept and from the moment the
// connection was free to read that head; a head handed to net/http
// midway has only what is left of it.
func TestHeadTimeFromAccept(t *testing.T) {
	const rht = 1500 * time.Millisecond
	f := start(t, Config{ReadHeaderTimeout: rht})
	cut := func(t *testing.T, c net.Conn, from time.Time) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("not cut: %v", err)
		}
		// The wheel looks once a second: the cut comes within one more.
		if d := time.Since(from); d < rht || d > rht+time.Second+500*time.Millisecond {
			t.Fatalf("cut after %v, want %v to %v", d, rht, rht+time.Second)
		}
	}
	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		from := time.Now()
		c, _ := dial(t, f.addr)
		cut(t, c, from)
	})
	t.Run("pipelined slow head", func(t *testing.T) {
		t.Parallel()
		c, br := dial(t, f.addr)
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nG")
		from := time.Now()
		readReply(t, br)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(300 * time.Millisecond)
			defer tick.Stop()
			for _, b := range []byte("ET /healthz HTTP/1.1\r\nHost: x\r\n") {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != badHeadReply {
			t.Fatalf("not cut with net/http's 400: %q, %v", rest, err)
		}
		if d := time.Since(from); d < rht-100*time.Millisecond || d > rht+time.Second+500*time.Millisecond {
			t.Fatalf("cut after %v", d)
		}
	})
	t.Run("handed over", func(t *testing.T) {
		t.Parallel()
		from := time.Now()
		c, _ := dial(t, f.addr)
		io.WriteString(c, "GET /v1/poll?topic=h HTTP/1.1\r\nHost: x\r\n")
		time.Sleep(rht / 2) // the client's pace
		// A byte the loop leaves to net/http: the connection is handed over.
		io.WriteString(c, "X-Odd: \xc3\xa9\r\n")
		cut(t, c, from)
	})
}

// TestReplyBound: a reply stops before the message that would take it
// past --max-reply-bytes, but holds one at least.
func TestReplyBound(t *testing.T) {
	f := start(t, Config{}, longpoll.WithMaxReplyBytes(100000), longpoll.WithMaxMessageSize(300000))
	m := `"` + strings.Repeat("m", 30000) + `"`
	for range 10 {
		publish(t, f.srv, "rb", m)
	}
	publish(t, f.srv, "rb", `"`+strings.Repeat("L", 200000)+`"`)
	c, br := dial(t, f.addr)
	cur := ""
	var sizes []int
	for seq := 0; seq < 11; {
		q := "GET /v1/poll?topic=rb&since=earliest&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"
		if cur != "" {
			q = "GET /v1/poll?topic=rb&timeout=0&cursor=" + cur + " HTTP/1.1\r\nHost: x\r\n\r\n"
		}
		io.WriteString(c, q)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		var v struct {
			Messages []struct{ Seq int } `json:"messages"`
			Cursor   string              `json:"cursor"`
		}
		if err := json.Unmarshal(body, &v); err != nil || len(v.Messages) == 0 {
			t.Fatalf("reply %d bytes: %v, %d messages", len(body), err, len(v.Messages))
		}
		for _, m := range v.Messages {
			if seq++; m.Seq != seq {
				t.Fatalf("seq %d, want %d", m.Seq, seq)
			}
		}
		if len(body) > 100000 && len(v.Messages) > 1 {
			t.Fatalf("a reply of %d messages is %d bytes", len(v.Messages), len(body))
		}
		sizes = append(sizes, len(v.Messages))
		cur = v.Cursor
	}
	if want := []int{3, 3, 3, 1, 1}; len(sizes) != len(want) || sizes[0] != 3 || sizes[4] != 1 {
		t.Fatalf("messages per reply %v, want %v", sizes, want)
	}
}

// BenchmarkPipelined pipelines small requests over one connection, 100 a
// write, reading the replies as they come, on the loop and on net/http
// alone: what one request costs, client included (run with -cpu 1 to
// keep the two apart). The server alone is measured by the same load
// from another process against longpoll serve (docs/performance.md).
func BenchmarkPipelined(b *testing.B) {
	for _, tr := range []string{"dense", "std"} {
		for _, path := range []string{"/healthz", "/v1/poll?topic=a&timeout=0"} {
			b.Run(tr+path, func(b *testing.B) {
				mb := memory.New()
				defer mb.Close()
				srv, err := longpoll.New(mb)
				if err != nil {
					b.Fatal(err)
				}
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				std := &http.Server{Handler: srv}
				var tp *Transport
				done := make(chan error, 1)
				if tr == "dense" {
					tp = New(Config{Server: srv.Transport(), Std: std})
					go func() { done <- tp.Serve(ln) }()
				} else {
					go func() { done <- std.Serve(ln) }()
				}
				defer func() {
					if tp != nil {
						tp.Close()
					} else {
						std.Close()
					}
					<-done
				}()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				req := strings.Repeat("GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", 100)
				br := bufio.NewReaderSize(c, 64<<10)
				b.ResetTimer()
				for i := 0; i < b.N; i += 100 {
					if _, err := io.WriteString(c, req); err != nil {
						b.Fatal(err)
					}
					for range 100 {
						resp, err := http.ReadResponse(br, nil)
						if err != nil {
							b.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
					}
				}
			})
		}
	}
}

// TestSlowReadersInTheSocketAreCut: replies the socket takes whole (on
// loopback it takes a few MiB) are watched until their clients read
// them; clients that read slower than slowRate while such bytes weigh
// more than half the budget are reset, which drops what the socket
// holds, and so, whatever the budget, are those slower than minRate; each
// then gets every message from its cursor.
func TestSlowReadersInTheSocketAreCut(t *testing.T) {
	// Under pressure at 300 ms; then, the budget relieved, the floor at
	// 2 s cuts the last.
	setVar(t, &slowCheck, 300*time.Millisecond)
	setVar(t, &stallTime, 2*time.Second)
	// Three replies of 1 MB reserved at once fit; in the sockets they
	// weigh more than half.
	const budget = 4 << 20
	f := start(t, Config{}, longpoll.WithMaxReplyMemory(budget))
	big := `"` + strings.Repeat("k", 60<<10) + `"`
	const n = 16 // one reply of about 1 MB: the socket takes it whole
	for range n {
		publish(t, f.srv, "ks", big)
	}
	const poll = "GET /v1/poll?topic=ks&since=earliest&limit=1000&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"
	var readers []*net.TCPConn
	for range 3 {
		c := dialSmall(t, f.addr)
		io.WriteString(c, poll)
		readers = append(readers, c)
	}
	// Watched in the sockets, held by the process no more. (They may be
	// cut soon after: the budget is under pressure at once.)
	var unread, used int64
	waitFor(t, "a reply to be in its socket, watched", func() bool {
		unread, used = f.srv.ReplyBytesUnread(), f.srv.ReplyBytesPending()
		return unread > socketWatch && used == 0
	})
	for i, c := range readers {
		// Each reads a little, far below slowRate, until it is cut.
		buf := make([]byte, 16)
		for {
			_, err := c.Read(buf)
			if err != nil {
				if isTimeout(err) {
					t.Fatalf("reader %d was not cut", i)
				}
				break
			}
			time.Sleep(20 * time.Millisecond) // the slow reader's pace
		}
	}
	waitFor(t, "the sockets' bytes to be let go", func() bool { return f.srv.ReplyBytesUnread() == 0 })
	c, br := dial(t, f.addr)
	io.WriteString(c, poll)
	if resp, v := readReply(t, br); resp.StatusCode != 200 || len(v["messages"].([]any)) != n {
		t.Fatalf("after the cut: %d, %d messages", resp.StatusCode, len(v["messages"].([]any)))
	}
	waitFor(t, "a reader at full speed to be let go", func() bool { return f.srv.ReplyBytesUnread() == 0 })
}
