// Package headtime gives a keep-alive connection's next request head the
// same time as the first, from the moment it starts.
//
// net/http starts a request's header timeout once it has four bytes of
// the head (it peeks at them under the idle timeout first), so a client
// that sends the next head a byte at a time gets the idle timeout and the
// header timeout both. A Conn, told by the server's ConnState hook when
// the connection turns idle, starts the header time at the first byte it
// reads while idle, and cuts every read deadline net/http sets to it until
// the head is in (StateActive).
package headtime

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Conn is a net.Conn whose read deadlines are cut to its head's time.
type Conn struct {
	net.Conn
	d time.Duration

	mu    sync.Mutex
	idle  bool      // between requests: a byte read starts the head's time
	limit time.Time // when the head being read must be in; zero: none
	want  time.Time // the read deadline the server asked for
}

// Wrap returns c with its next heads timed to d.
func Wrap(c net.Conn, d time.Duration) *Conn { return &Conn{Conn: c, d: d} }

// bufSize is the size of net/http's buffer of a connection's input: a
// read for less, while idle, is a read for the rest of a head of which
// the buffer holds the start already (net/http peeks at four bytes before
// it reads a head).
const bufSize = 4096

// Read reads from the connection. While idle, the first byte read starts
// the head's time, or the read itself when net/http holds the start of
// the head already (bytes that came pipelined behind the last request).
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) < bufSize {
		c.mu.Lock()
		if c.idle && c.limit.IsZero() {
			c.limit = time.Now().Add(c.d)
			c.applyLocked()
		}
		c.mu.Unlock()
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mu.Lock()
		if c.idle && c.limit.IsZero() {
			c.limit = time.Now().Add(c.d)
			c.applyLocked()
		}
		c.mu.Unlock()
	}
	return n, err
}

// SetReadDeadline sets the read deadline, cut to the head's time while a
// head is read.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want = t
	return c.applyLocked()
}

// SetDeadline sets both deadlines, the read one as SetReadDeadline.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *Conn) applyLocked() error {
	t := c.want
	if !c.limit.IsZero() && (t.IsZero() || t.After(c.limit)) {
		t = c.limit
	}
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite shuts down the writing side of the connection when it can
// (net/http does before it closes a connection whose request it refused,
// so that the client reads the answer rather than a reset).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom copies from r to the connection, with the wrapped connection's
// own ReadFrom when it has one (sendfile, splice).
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// Unwrap returns the wrapped connection.
func (c *Conn) Unwrap() net.Conn { return c.Conn }

// state follows the server's view of the connection.
func (c *Conn) state(s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateIdle:
		c.idle, c.limit = true, time.Time{}
	case http.StateActive:
		c.idle, c.limit = false, time.Time{}
		_ = c.applyLocked()
	}
}

// ConnState is an http.Server's ConnState hook that tells each Conn when
// it turns idle and active; next, if set, is called too.
func ConnState(next func(net.Conn, http.ConnState)) func(net.Conn, http.ConnState) {
	return func(nc net.Conn, s http.ConnState) {
		if c, ok := nc.(*Conn); ok {
			c.state(s)
		}
		if next != nil {
			next(nc, s)
		}
	}
}

// Listener wraps every connection ln accepts.
type Listener struct {
	net.Listener
	d time.Duration
}

// Listen returns ln with its connections' heads timed to d.
func Listen(ln net.Listener, d time.Duration) *Listener { return &Listener{Listener: ln, d: d} }

// Accept accepts the next connection and wraps it.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c, l.d), nil
}
