//go:build linux

package eventloop

import (
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/longpoll/longpoll/internal/headtime"
)

// stdConn is a loop connection handed to net/http: input arrives from the
// loop through feed, output goes to the loop's non-blocking writes. It
// implements net.Conn with read deadlines, which net/http uses for its
// header, read and idle timeouts and to abort a background read.
//
// Both ways hold little in the process, as a socket would: past
// stdWatermark of input net/http has not read, the loop stops reading
// the connection until net/http takes it; and a Write waits while more
// than stdWatermark of output waits for the client.
type stdConn struct {
	c     *conn
	ready chan struct{} // signalled when input, EOF or a new deadline arrives

	mu       sync.Mutex
	buf      []byte
	eof      bool
	full     bool // buf passed stdWatermark: the loop reads no more
	deadline time.Time
	timer    *time.Timer
	// headLimit is when the head being read when the loop handed the
	// connection over must be in: net/http's first read deadline, that of
	// the head, is cut to it, so that a head's time is not counted twice.
	headLimit time.Time
}

func (c *stdConn) signal() {
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

func (c *stdConn) feed(data []byte) {
	c.mu.Lock()
	c.buf = append(c.buf, data...)
	if len(c.buf) > stdWatermark && !c.full {
		c.full = true
		c.c.held.Store(true) // read on once net/http takes it (Read)
	}
	c.mu.Unlock()
	c.signal()
}

func (c *stdConn) closeRead() {
	c.mu.Lock()
	c.eof = true
	c.mu.Unlock()
	c.signal()
}

func (c *stdConn) Read(b []byte) (int, error) {
	for {
		c.mu.Lock()
		switch {
		case len(c.buf) > 0:
			n := copy(b, c.buf)
			c.buf = c.buf[n:]
			if len(c.buf) == 0 {
				c.buf = nil
			}
			resume := c.full && len(c.buf) <= stdWatermark/2
			if resume {
				c.full = false
				c.c.held.Store(false)
			}
			c.mu.Unlock()
			if resume {
				c.c.resume()
			}
			return n, nil
		case c.eof:
			c.mu.Unlock()
			return 0, io.EOF
		case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
			c.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Unlock()
		<-c.ready
	}
}

// Write queues b on the loop connection, a part of at most stdWatermark
// at a time, each once no more than stdWatermark waits for the client:
// like a socket's, it blocks while the client does not read, until the
// write deadline or the loop's cut of a stalled client.
func (c *stdConn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		if err := c.c.waitOut(stdWatermark); err != nil {
			return n, err
		}
		k := min(len(b), stdWatermark)
		if _, err := c.c.writev([][]byte{b[:k]}); err != nil {
			return n, err
		}
		n += k
		b = b[k:]
	}
	return n, nil
}

func (c *stdConn) Close() error {
	c.closeRead()
	c.c.closeConn()
	return nil
}

func (c *stdConn) LocalAddr() net.Addr  { return c.c.localAddr() }
func (c *stdConn) RemoteAddr() net.Addr { return c.c.remoteAddr() }

func (c *stdConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *stdConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if !c.headLimit.IsZero() {
		if t.IsZero() || t.After(c.headLimit) {
			t = c.headLimit
		}
		c.headLimit = time.Time{}
	}
	c.deadline = t
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if d := time.Until(t); !t.IsZero() && d > 0 {
		c.timer = time.AfterFunc(d, c.signal)
	}
	c.mu.Unlock()
	c.signal()
	return nil
}

func (c *stdConn) SetWriteDeadline(t time.Time) error {
	c.c.setWriteDeadline(t)
	return nil
}

// chanListener is the net.Listener net/http serves: Accept returns the
// connections the loop hands over.
type chanListener struct {
	// headTime, when set, is the header timeout of a handed connection's
	// next heads (internal/headtime), for a net/http server whose
	// ConnState hook is headtime.ConnState.
	headTime time.Duration
	addr     net.Addr
	ch       chan net.Conn
	done     chan struct{}
	once     sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to net/http; false once the listener is closed.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		if l.headTime > 0 {
			return headtime.Wrap(c, l.headTime), nil
		}
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
