package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers each request read on a loopback connection with a
// reply whose body is the request's length; it closes the connection
// after closeAfter replies (0: never).
func echoServer(t *testing.T, closeAfter int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for n := 1; ; n++ {
			size := 0
			for { // a request is lines up to an empty one
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				size += len(line)
				if line == "\r\n" {
					break
				}
			}
			body := fmt.Sprint(size)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			if n == closeAfter {
				return
			}
		}
	}()
	return ln.Addr().String()
}

func dialStream(t *testing.T, addr string) (stream, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s, err := newStream(c)
	if err != nil {
		t.Fatal(err)
	}
	return s, bufio.NewReaderSize(s, 4096)
}

// A stream's round trips get their replies, each only once its request
// is written; a request larger than the socket takes at once (8 MiB) is
// written in full before its reply is read; the server's close reads as
// EOF.
func TestStreamRoundTrips(t *testing.T) {
	s, br := dialStream(t, echoServer(t, 3))
	big := "GET / HTTP/1.1\r\nX-Pad: " + strings.Repeat("p", 8<<20) + "\r\n\r\n"
	for i, req := range []string{"GET /a HTTP/1.1\r\n\r\n", big, "GET /b HTTP/1.1\r\n\r\n"} {
		var rep reply
		if err := roundTrip(s, br, []byte(req), &rep); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if want := fmt.Sprint(len(req)); rep.status != 200 || string(rep.body) != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, rep.status, rep.body, want)
		}
	}
	// Read without a request, so that nothing is written to the closed
	// socket (which would make the end a reset rather than EOF).
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the server closed: %v, want EOF", err)
	}
}

// A reply with no request before it is an error, not the next request's
// reply.
func TestStreamUnaskedReply(t *testing.T) {
	s, br := dialStream(t, echoServer(t, 0))
	if err := s.send([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := br.Peek(1); err != nil { // the reply is buffered, unread
		t.Fatal(err)
	}
	var rep reply
	if err := roundTrip(s, br, []byte("GET / HTTP/1.1\r\n\r\n"), &rep); !errors.Is(err, errMalformed) {
		t.Fatalf("got %v, want errMalformed", err)
	}
}

// Where the system gives receive times, a stream's arrived is the time
// the data reached the socket, not the time it was read. The kernel turns
// receive times on for all sockets a moment after the first asks (a
// deferred static key), so the first segments may come without one.
func TestStreamArrival(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, _ := dialStream(t, ln.Addr().String())
	if _, ok := s.arrived(); ok {
		t.Fatal("a receive time before anything was read")
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	_, plain := s.(netStream) // the other kind, rawStream, is Linux's only
	raw := !plain
	stamped := 0
	buf := make([]byte, 64)
	end := time.Now().Add(10 * time.Second)
	reads := 0
	for ; reads < 100_000 && stamped < 3 && time.Now().Before(end); reads++ {
		before := time.Now()
		if _, err := io.WriteString(peer, "HTTP/1.1 204 No Content\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		if _, err := s.Read(buf); err != nil {
			t.Fatal(err)
		}
		at, ok := s.arrived()
		if !ok {
			continue
		}
		if !raw {
			t.Fatalf("a receive time %v from a stream that cannot have one", at)
		}
		if at.Before(before.Round(0)) || at.After(written.Round(0)) {
			t.Fatalf("arrived %v, want between %v and %v", at, before, written)
		}
		stamped++
	}
	if raw && stamped < 3 {
		t.Errorf("%d of %d reads came with a receive time", stamped, reads)
	}
}
