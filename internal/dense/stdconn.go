//go:build linux

package dense

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// stdConn is a loop connection handed to net/http: input arrives from the
// loop through feed, output goes straight to the loop's non-blocking
// writes. It implements net.Conn with read deadlines, which net/http uses
// for its header, read and idle timeouts and to abort a background read.
type stdConn struct {
	c     *conn
	ready chan struct{} // signalled when input, EOF or a new deadline arrives

	mu       sync.Mutex
	buf      []byte
	eof      bool
	deadline time.Time
	timer    *time.Timer
}

func (c *stdConn) signal() {
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

func (c *stdConn) feed(data []byte) {
	c.mu.Lock()
	over := len(c.buf)+len(data) > maxStdBuf
	if !over {
		c.buf = append(c.buf, data...)
	}
	c.mu.Unlock()
	if over {
		c.c.closeNow() // net/http is not reading: cut it
		return
	}
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
			c.mu.Unlock()
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

// Write queues b on the loop connection: it never blocks, and output the
// client does not take is bounded (maxOut) and by the write deadline.
func (c *stdConn) Write(b []byte) (int, error) {
	if err := c.c.writev([][]byte{b}); err != nil {
		return 0, err
	}
	return len(b), nil
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
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
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
