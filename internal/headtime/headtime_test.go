package headtime

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines; net/http's wait of half a second
// after half-closing a refused connection may still be asleep at the end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// serve runs an http.Server on loopback with a header timeout of d, its
// connections wrapped when wrap is set.
func serve(t *testing.T, d time.Duration, wrap bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ReadHeaderTimeout: d,
		IdleTimeout:       time.Minute,
	}
	var l net.Listener = ln
	if wrap {
		l = Listen(ln, d)
		hs.ConnState = ConnState(nil)
	}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// cutAfter sends a request and, in the same write, the first byte of the
// next head, then one byte every 300 ms, and returns how long after the
// first reply the server closed the connection, and what it sent after
// that reply.
func cutAfter(t *testing.T, addr string) (time.Duration, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\nG")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	from := time.Now()
	stop := make(chan struct{})
	done := make(chan struct{})
	defer func() { close(stop); <-done }()
	go func() {
		defer close(done)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for _, b := range []byte("ET / HTTP/1.1\r\nHost: x\r\n") {
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
	rest, _ := io.ReadAll(br)
	return time.Since(from), string(rest)
}

// TestNextHeadTimedFromItsFirstByte: with Conn, a pipelined head that
// comes a byte at a time is cut at the header timeout from the end of the
// reply ahead, when the connection could read it; without, net/http
// waits for four bytes first.
func TestNextHeadTimedFromItsFirstByte(t *testing.T) {
	const d = time.Second
	got, rest := cutAfter(t, serve(t, d, true))
	if got < d || got > d+200*time.Millisecond {
		t.Errorf("wrapped: cut after %v, want %v from the end of the reply ahead", got, d)
	}
	// Four bytes of the head came (one pipelined, then one every 300
	// ms): net/http read a part of it, and answers 400.
	if rest == "" {
		t.Errorf("wrapped: no 400 before the cut")
	}
	plain, _ := cutAfter(t, serve(t, d, false))
	if plain < d+800*time.Millisecond {
		t.Errorf("plain net/http cut after %v: the test no longer shows its four-byte wait", plain)
	}
}

// TestBodyKeepsItsDeadline: once the head is in, the read deadline the
// server sets for the body is not cut to the head's time.
func TestBodyKeepsItsDeadline(t *testing.T) {
	const d = 500 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- len(b)
		}),
		ReadHeaderTimeout: d,
		ReadTimeout:       10 * time.Second,
		ConnState:         ConnState(nil),
	}
	go hs.Serve(Listen(ln, d))
	defer hs.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A first request, then a second whose body comes slower than the
	// head's time allows, but within ReadTimeout.
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
	<-got
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")
	time.Sleep(2 * d) // the client's pace
	io.WriteString(c, "yz")
	select {
	case n := <-got:
		if n != 2 {
			t.Fatalf("body of %d bytes, want 2", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the body was not read")
	}
}

// TestRefusedBodyAnswered: a request refused before its large body is
// read gets its answer, not a reset: the server half-closes the wrapped
// connection before it closes it, as it does a plain one.
func TestRefusedBodyAnswered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}),
		ReadHeaderTimeout: time.Second,
		ConnState:         ConnState(nil),
	}
	go hs.Serve(Listen(ln, time.Second))
	defer hs.Close()
	if _, ok := any(&Conn{}).(interface{ CloseWrite() error }); !ok {
		t.Fatal("Conn has no CloseWrite")
	}
	for range 5 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// Far more body than the server reads: unread input at close
		// would reset the connection without the half-close first.
		body := make([]byte, 4<<20)
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n")
			c.Write(body)
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		<-sent
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%v %v", resp, err)
		}
	}
}
