//go:build linux

package eventloop

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The loop is an epoll instance whose own descriptor is registered with
// the Go runtime's poller: the loop's goroutine parks in the scheduler
// like any goroutine reading a socket, and runs on whatever thread is
// free when the epoll set becomes readable. Nothing blocks a thread in
// epoll_wait, so a wake-up, a read and the goroutines they ready share
// one thread without hand-offs between threads; and a connection costs
// one small record, with no goroutine, buffer or timer of its own.
//
// A connection's descriptor is used (read, written, closed) only under
// its io lock, so no goroutine can touch a descriptor number after it was
// closed and reused. Events carry the connection's generation, so an
// event fetched for a closed connection is not given to a new one that
// reuses its descriptor number.
type loop struct {
	file *os.File // the epoll descriptor, registered with the runtime
	raw  syscall.RawConn
	epfd int

	ctl    sync.RWMutex // epoll_ctl holds it shared; closing the set, exclusively
	closed bool

	mu    sync.Mutex
	conns []*conn // by descriptor
	gen   uint32

	buf    []byte
	events []syscall.EpollEvent
	done   chan struct{} // closed when run returns

	wheel idleWheel
	pause func() // if set, called before each fetch of events (transport.Pause)
}

// Output. A connection serves its requests one at a time, and the next
// request waits until the reply ahead of it is all in the socket (as
// under net/http, whose write blocks), so a connection holds at most one
// reply that the socket has not taken: a poll's reply is bounded by the
// server's --max-reply-bytes. Output waiting on a connection is counted
// in the server's reply budget (transport.Budget), and a client that takes
// none of it for stallTime, or that reads slower than slowRate while it
// holds more than its share of the budget, is cut.
const (
	lingerTime = 5 * time.Second // how long a closing connection may take to send what is left
	// stdWatermark bounds what a connection handed to net/http holds in
	// the process: input read but not yet taken by net/http, and output
	// its writes queued that the socket has not taken (stdConn).
	stdWatermark = 64 << 10
)

// stallTime is how long output may wait for the client to read any of
// it, and the span over which a client holding more than socketWatch
// must have read at minRate at least, in bytes per second; slowCheck how
// often a connection holding output is looked at, and slowRate the least
// rate at which a client must read while the reply budget is under
// pressure and it holds more than its share.
var (
	stallTime = 30 * time.Second
	minRate   = int64(1 << 10)
	slowCheck = 5 * time.Second
	slowRate  = int64(16 << 10)
)

// Connections are registered edge-triggered, as nginx registers them: an
// event comes when input arrives, not at every fetch while some is
// waiting, so the loop reads what a connection has at once (read), and
// the kernel neither polls every connection again at the next fetch nor
// wakes the runtime's poller for connections read already.
const (
	evRead  = uint32(syscall.EPOLLIN|syscall.EPOLLRDHUP) | edge
	evWrite = syscall.EPOLLOUT
	evEnd   = syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR
	edge    = 1 << 31 // EPOLLET, negative in package syscall
)

// fetchSize is how many events one fetch takes at most.
const fetchSize = 256

func newLoop() (*loop, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(fd), "epoll")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &loop{
		file:   f,
		raw:    raw,
		epfd:   fd,
		buf:    make([]byte, 64<<10),
		events: make([]syscall.EpollEvent, fetchSize),
		done:   make(chan struct{}),
	}
	l.wheel.slots = make(map[int64][]*conn)
	return l, nil
}

// run serves events until the loop is closed. The whole life of the loop
// is one raw.Read: its function fetches and serves what is ready, and
// returns false to wait for the runtime's poller to report the epoll set
// readable again. Within one Read, a report that comes while the loop
// serves is kept for the next wait (raw.Read clears it only on entry), so
// a wake-up costs one fetch, and one more only when the report was for
// events the last fetch took already. Every event a connection's
// registration adds to the set reports the set to the runtime again, also
// when the set is ready already; only events left over from a full fetch
// are not reported again, and the loop fetches once more for those.
//
// It asks l.pause before each fetch, so that a large fan-out that began
// while the loop waited holds it back too.
func (l *loop) run() {
	defer close(l.done)
	serve := func(fd uintptr) bool {
		for {
			if l.pause != nil {
				l.pause()
			}
			n, err := rawEpollWait(int(fd), l.events)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case err != nil:
				return true // the set is closed
			case n == 0:
				return false // wait for a report
			}
			l.serveEvents(l.events[:n])
			if n < len(l.events) {
				return false
			}
		}
	}
	_ = l.raw.Read(serve) // returns when the set is closed
}

func (l *loop) serveEvents(events []syscall.EpollEvent) {
	for i := range events {
		ev := &events[i]
		c := l.lookup(int(ev.Fd), uint32(ev.Pad))
		if c == nil {
			continue
		}
		if ev.Events&evWrite != 0 {
			c.flush()
		}
		if ev.Events&^evWrite != 0 {
			l.read(c, ev.Events&evEnd != 0)
		}
	}
}

func (l *loop) lookup(fd int, gen uint32) *conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fd < 0 || fd >= len(l.conns) {
		return nil
	}
	if c := l.conns[fd]; c != nil && c.gen == gen {
		return c
	}
	return nil
}

// read reads what c has and hands it to c.onData. The connection is
// edge-triggered, so nothing may be left unread that no later event
// announces: a read that fills the buffer reads again, and so does one
// after the peer's end was signalled (end), until the end is read. A
// short read otherwise took everything there was: input arriving later
// brings its own event.
//
// It reads nothing while c holds its input back (c.held); resume makes
// epoll report what arrived meanwhile.
func (l *loop) read(c *conn, end bool) {
	for {
		if c.held.Load() {
			return
		}
		c.io.Lock()
		if c.fdClosed {
			c.io.Unlock()
			return
		}
		var (
			n   int
			err error
		)
		for {
			n, err = rawRead(c.fd, l.buf)
			if !errors.Is(err, syscall.EINTR) {
				break
			}
		}
		c.io.Unlock()
		switch {
		case n > 0:
			c.onData(l.buf[:n])
			if n < len(l.buf) && !end {
				return
			}
		case errors.Is(err, syscall.EAGAIN):
			return
		case err == nil: // end of input: the client may still read
			c.onEnd()
			return
		default:
			c.closeNow()
			return
		}
	}
}

// add registers a new connection's descriptor.
func (l *loop) add(c *conn) error {
	l.mu.Lock()
	l.gen++
	c.gen = l.gen
	if c.fd >= len(l.conns) {
		grown := make([]*conn, max(c.fd+1, 2*len(l.conns), 64))
		copy(grown, l.conns)
		l.conns = grown
	}
	l.conns[c.fd] = c
	l.mu.Unlock()
	if err := l.epollCtl(syscall.EPOLL_CTL_ADD, c, evRead); err != nil {
		l.remove(c)
		return err
	}
	return nil
}

func (l *loop) remove(c *conn) {
	l.mu.Lock()
	if c.fd < len(l.conns) && l.conns[c.fd] == c {
		l.conns[c.fd] = nil
	}
	l.mu.Unlock()
}

func (l *loop) epollCtl(op int, c *conn, events uint32) error {
	l.ctl.RLock()
	defer l.ctl.RUnlock()
	if l.closed {
		return net.ErrClosed
	}
	ev := syscall.EpollEvent{Events: events, Fd: int32(c.fd), Pad: int32(c.gen)}
	return os.NewSyscallError("epoll_ctl", rawEpollCtl(l.epfd, op, c.fd, &ev))
}

// all returns the connections registered now.
func (l *loop) all() []*conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	var cs []*conn
	for _, c := range l.conns {
		if c != nil {
			cs = append(cs, c)
		}
	}
	return cs
}

// close closes every connection, then the epoll set, and waits for run to
// return.
func (l *loop) close() {
	for _, c := range l.all() {
		c.closeNow()
	}
	l.ctl.Lock()
	l.closed = true
	l.ctl.Unlock()
	l.file.Close()
	<-l.done
	l.wheel.stop()
}

// writev writes bufs to c, keeping what the socket does not take for the
// loop to send when it can, and reports whether some is waiting. It never
// blocks.
func (c *conn) writev(bufs [][]byte) (waiting bool, err error) {
	c.io.Lock()
	if c.fdClosed || c.lingering {
		c.io.Unlock()
		return false, net.ErrClosed
	}
	large, watched := false, c.watching()
	if c.pendingOut() == 0 {
		n := 0
		for _, b := range bufs {
			n += len(b)
		}
		large = n >= socketWatch
		bufs, err = writeAll(c.fd, bufs)
	}
	if err == nil && len(bufs) == 0 && large && !watched {
		c.watchSocket() // all in the socket: the client may still be slow to read it
	}
	if err == nil && len(bufs) > 0 {
		first := c.pendingOut() == 0
		if c.o == nil {
			c.o = new(outState)
		}
		for _, b := range bufs {
			c.o.buf = append(c.o.buf, b...)
		}
		c.account()
		if first {
			err = c.t.l.epollCtl(syscall.EPOLL_CTL_MOD, c, evRead|evWrite)
			if err == nil && !watched {
				now := time.Now().UnixNano()
				c.o.since, c.o.sent, c.o.progress = now, 0, now
				c.o.every = slowCheck
				c.watchOut()
			}
			if err == nil && c.writeDeadline != 0 {
				c.armWriteDeadline(c.writeDeadline)
			}
		}
	}
	if err != nil {
		c.closeLocked()
		c.io.Unlock()
		c.onClose()
		return false, err
	}
	waiting = c.pendingOut() > 0
	c.io.Unlock()
	return waiting, nil
}

// pendingOut returns how many bytes of output wait for the socket; the
// caller holds c.io.
func (c *conn) pendingOut() int {
	if c.o == nil {
		return 0
	}
	return len(c.o.buf) - c.o.off
}

// socketWatch is the size from which a reply that went all into the
// socket is still watched until its client has read it (watchSocket).
const socketWatch = 64 << 10

// watching reports whether c's output is watched (watchOut); the caller
// holds c.io.
func (c *conn) watching() bool { return c.o != nil && (c.pendingOut() > 0 || c.o.inSocket > 0) }

// unsent returns how many bytes the socket holds that its client has not
// acknowledged (SIOCOUTQ); the caller holds c.io.
func (c *conn) unsent() int {
	n, err := unix.IoctlGetInt(c.fd, unix.SIOCOUTQ)
	if err != nil {
		return 0
	}
	return n
}

// watchSocket starts watching a large reply the socket took whole: on
// loopback a socket takes up to 4 MiB, so a client that reads slowly
// leaves it there, where the process does not hold it but the machine
// does. What the socket holds is counted (Budget.AddSocket) and looked at
// again soon, then less often, until the client has read it or is cut
// as slow (checkOut). Below socketWatch, what was counted is let go. The
// caller holds c.io.
func (c *conn) watchSocket() {
	q := c.unsent()
	if q < socketWatch {
		if c.o != nil && c.o.inSocket > 0 {
			c.o.inSocket = 0
			c.account()
		}
		return
	}
	if c.o == nil {
		c.o = new(outState)
	}
	now := time.Now().UnixNano()
	c.o.since, c.o.sent, c.o.progress = now, 0, now
	c.o.inSocket = q
	c.account()
	c.o.every = 50 * time.Millisecond
	c.watchOut()
}

// account brings the reply budget and the transport's count of
// connections holding output up to date with c.o.buf; the caller holds
// c.io. The budget counts the whole array in use, sent part included,
// until it is let go or moved down.
func (c *conn) account() {
	if c.o == nil {
		return
	}
	was := c.o.counted > 0 || c.o.socketCounted > 0 // counted in t.holding
	n := len(c.o.buf)
	if c.pendingOut() == 0 {
		n = 0
	}
	if d := n - c.o.counted; d != 0 {
		c.o.counted = n
		if b := c.t.budget; b != nil {
			b.Add(d)
		}
	}
	if d := c.o.inSocket - c.o.socketCounted; d != 0 {
		c.o.socketCounted = c.o.inSocket
		if b := c.t.budget; b != nil {
			b.AddSocket(d)
		}
	}
	if has := n > 0 || c.o.inSocket > 0; has != was {
		if has {
			c.t.holding.Add(1)
		} else {
			c.t.holding.Add(-1)
		}
	}
}

// writeAll writes bufs until the socket takes no more, and returns what
// is left.
func writeAll(fd int, bufs [][]byte) ([][]byte, error) {
	for len(bufs) > 0 {
		if len(bufs[0]) == 0 {
			bufs = bufs[1:]
			continue
		}
		n, err := rawWritev(fd, bufs)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return bufs, nil
		case err != nil:
			return nil, err
		}
		for n > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return nil, nil
}

// flush sends what output is waiting, on the loop, when the socket can
// take it. Once all is sent, the connection serves its next request
// (outDrained).
func (c *conn) flush() {
	c.io.Lock()
	if c.fdClosed {
		c.io.Unlock()
		return
	}
	var err error
	sentAny := false
	if pending := c.pendingOut(); pending > 0 {
		sentAny = true
		var rest [][]byte
		rest, err = writeAll(c.fd, [][]byte{c.o.buf[c.o.off:]})
		sent := pending
		if len(rest) > 0 {
			sent -= len(rest[0])
		}
		if err == nil && sent > 0 { // progress: the client reads
			c.o.sent += int64(sent)
			c.o.progress = time.Now().UnixNano()
			c.o.off += sent
			switch {
			case c.o.off == len(c.o.buf):
				c.o.buf, c.o.off = nil, 0
			case c.o.off > len(c.o.buf)/2: // move down what is left, once it is the smaller part
				n := copy(c.o.buf, c.o.buf[c.o.off:])
				c.o.buf, c.o.off = c.o.buf[:n], 0
			}
			c.account()
		}
	}
	pending := c.pendingOut()
	if c.o != nil && c.o.drainWait != nil && pending <= stdWatermark {
		close(c.o.drainWait)
		c.o.drainWait = nil
	}
	drained := false
	if err == nil && pending == 0 && sentAny {
		c.watchSocket() // the socket holds the end of it
	}
	if err == nil && pending == 0 {
		if c.lingering {
			err = net.ErrClosed // sent: now close
		} else {
			err = c.t.l.epollCtl(syscall.EPOLL_CTL_MOD, c, evRead)
			drained = true
		}
	}
	if err != nil {
		c.closeLocked()
		c.io.Unlock()
		c.onClose()
		return
	}
	c.io.Unlock()
	if drained {
		c.outDrained()
	}
}

// waitOut waits until at most limit bytes of output wait on c, for a
// writer that may block (net/http's, through stdConn). It returns an
// error once c is closed or closing; a client that stops reading is cut
// by the output's watch (watchOut) or the write deadline, so it never
// waits for ever.
func (c *conn) waitOut(limit int) error {
	for {
		c.io.Lock()
		if c.fdClosed || c.lingering {
			c.io.Unlock()
			return net.ErrClosed
		}
		if c.pendingOut() <= limit {
			c.io.Unlock()
			return nil
		}
		if c.o.drainWait == nil {
			c.o.drainWait = make(chan struct{})
		}
		ch := c.o.drainWait
		c.io.Unlock()
		<-ch
	}
}

// resume has the loop read c again after it held its input back. An
// edge-triggered registration reports only input that arrives later, so
// it is registered again, which reports what is waiting now.
func (c *conn) resume() {
	c.io.Lock()
	if c.fdClosed {
		c.io.Unlock()
		return
	}
	ev := evRead
	if c.pendingOut() > 0 {
		ev |= evWrite
	}
	if err := c.t.l.epollCtl(syscall.EPOLL_CTL_MOD, c, ev); err != nil {
		c.closeLocked()
		c.io.Unlock()
		c.onClose()
		return
	}
	c.io.Unlock()
}

// closeConn closes c once the output it holds is sent, or after
// lingerTime.
func (c *conn) closeConn() {
	c.io.Lock()
	if c.fdClosed || c.lingering {
		c.io.Unlock()
		return
	}
	if c.pendingOut() > 0 {
		c.lingering = true
		time.AfterFunc(lingerTime, c.closeNow)
		if c.o.drainWait != nil {
			close(c.o.drainWait)
			c.o.drainWait = nil
		}
		c.io.Unlock()
		return
	}
	c.closeLocked()
	c.io.Unlock()
	c.onClose()
}

// closeNow closes c, dropping any output it holds.
func (c *conn) closeNow() {
	c.io.Lock()
	if c.fdClosed {
		c.io.Unlock()
		return
	}
	c.closeLocked()
	c.io.Unlock()
	c.onClose()
}

// closeLocked closes the descriptor; the caller holds c.io and calls
// c.onClose once it has released it.
func (c *conn) closeLocked() {
	c.fdClosed = true
	if o := c.o; o != nil {
		o.buf, o.off, o.inSocket = nil, 0, 0
		c.account()
		if o.drainWait != nil {
			close(o.drainWait)
			o.drainWait = nil
		}
		if o.watch != nil {
			o.watch.Stop()
		}
	}
	c.t.l.remove(c)
	rawClose(c.fd)
	c.setIdleDeadline(0)
}

// watchOut has c's output looked at (checkOut) while some waits; the
// caller holds c.io. One timer per connection, made the first time its
// output waits, and holding nothing of the output.
func (c *conn) watchOut() {
	d := min(c.o.every, slowCheck, stallTime)
	c.o.every = min(2*c.o.every, slowCheck)
	if c.o.watch == nil {
		c.o.watch = time.AfterFunc(d, c.checkOut)
	} else {
		c.o.watch.Reset(d)
	}
}

// checkOut cuts c if the output waiting on it is stalled (the client took
// none of it for stallTime) or too slow (slow), and otherwise looks again
// later.
func (c *conn) checkOut() {
	c.io.Lock()
	if c.fdClosed || !c.watching() {
		c.io.Unlock()
		return
	}
	now := time.Now().UnixNano()
	if c.o.inSocket > 0 {
		q := c.unsent()
		if q < c.o.inSocket && c.pendingOut() == 0 { // the client read some
			c.o.sent += int64(c.o.inSocket - q)
			c.o.progress = now
		}
		c.o.inSocket = q
		if c.pendingOut() == 0 && q < socketWatch {
			c.o.inSocket = 0 // read, or nearly: no longer watched
		}
		c.account()
		if !c.watching() {
			c.io.Unlock()
			return
		}
	}
	why := ""
	switch {
	case now-c.o.progress >= int64(stallTime):
		why = "the client reads none of its reply"
	case c.slow(now):
		why = "the client reads its reply too slowly while replies wait for memory"
	}
	if why == "" {
		c.watchOut()
		c.io.Unlock()
		return
	}
	c.cutLocked(why, c.pendingOut()+c.o.inSocket)
}

// cutLocked cuts c, a slow reader holding pending bytes of output, for
// the reason why; the caller holds c.io, which cutLocked releases.
func (c *conn) cutLocked(why string, pending int) {
	// Reset rather than close: what the kernel holds for the client is
	// dropped too, and the client learns at once that its reply is cut.
	_ = syscall.SetsockoptLinger(c.fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	c.closeLocked()
	c.io.Unlock()
	c.onClose()
	c.t.cfg.Logger.Debug("connection cut", "remote", c.remote, "reason", why, "unsent", pending)
}

// slow reports whether c, holding output since c.o.since (in the process
// or in its socket), reads it too slowly: slower than minRate over at
// least stallTime while it holds more than socketWatch, whatever else
// goes on (no real client reads below 1 KiB/s); or slower than slowRate
// over at least slowCheck while the reply budget is under pressure (more
// than half of it in use, the sockets' share included) and c holds more
// than its share, half the budget divided among the connections holding
// output. The caller holds c.io. A client cut so misses nothing: its
// poll's reply never ended, so it polls again from the same cursor.
func (c *conn) slow(now int64) bool {
	elapsed := now - c.o.since
	if elapsed <= 0 {
		return false
	}
	rate := c.o.sent * int64(time.Second) / elapsed
	held := int64(c.pendingOut() + c.o.inSocket)
	if elapsed >= int64(stallTime) && rate < minRate && held > socketWatch {
		return true
	}
	b := c.t.budget
	if b == nil || b.Limit() <= 0 || elapsed < int64(slowCheck) || rate >= slowRate {
		return false
	}
	half := b.Limit() / 2
	return b.Used()+b.Socket() > half && held > half/max(1, c.t.holding.Load())
}

func (c *conn) armWriteDeadline(t int64) {
	time.AfterFunc(time.Until(time.Unix(0, t)), func() {
		c.io.Lock()
		late := !c.fdClosed && c.pendingOut() > 0 && c.writeDeadline != 0 && time.Now().UnixNano() >= c.writeDeadline
		c.io.Unlock()
		if late {
			c.closeNow()
		}
	})
}

// setWriteDeadline bounds how long output may wait for the socket: past
// it, a connection still holding output is closed.
func (c *conn) setWriteDeadline(t time.Time) {
	var d int64
	if !t.IsZero() {
		d = t.UnixNano()
	}
	c.io.Lock()
	c.writeDeadline = d
	pending := c.pendingOut() > 0
	c.io.Unlock()
	if pending && d != 0 {
		c.armWriteDeadline(d)
	}
}

// setIdleDeadline closes c at t (unix nanoseconds) unless it is changed
// before then; 0 means never. Moving it later, or clearing it, costs an
// atomic store: the wheel finds the new time when it comes to c.
func (c *conn) setIdleDeadline(t int64) {
	c.deadline.Store(t)
	if t == 0 {
		return
	}
	if cur := c.slot.Load(); cur == 0 || slotOf(t) < cur {
		c.t.l.wheel.add(c, slotOf(t))
	}
}

func slotOf(t int64) int64 { return t/1e9 + 1 }

func (c *conn) localAddr() net.Addr {
	c.io.Lock()
	defer c.io.Unlock()
	if c.fdClosed {
		return &net.TCPAddr{}
	}
	sa, err := syscall.Getsockname(c.fd)
	if err != nil {
		return &net.TCPAddr{}
	}
	return sockAddr(sa)
}

func (c *conn) remoteAddr() net.Addr {
	if ap, err := netip.ParseAddrPort(c.remote); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return &net.UnixAddr{Name: c.remote, Net: "unix"}
}

func sockAddr(sa syscall.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)))
	case *syscall.SockaddrInet6:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)))
	case *syscall.SockaddrUnix:
		return &net.UnixAddr{Name: sa.Name, Net: "unix"}
	}
	return &net.TCPAddr{}
}

// idleWheel closes connections whose idle or head deadline has passed.
// A connection is queued at the second of its deadline, and only when
// that comes before the second it is queued at already; at each second
// the wheel looks at the connections due then, drops those with no
// deadline any more, moves on those whose deadline moved on, and closes
// the rest. So the hot path, a reply and then the next request, moves the
// deadline later and back to none with atomic stores alone.
type idleWheel struct {
	mu      sync.Mutex
	slots   map[int64][]*conn // by unix second
	timer   *time.Timer
	stopped bool
	tick    func() // if set, called at each fire
}

func (w *idleWheel) add(c *conn, sec int64) {
	w.mu.Lock()
	w.addLocked(c, sec)
	w.mu.Unlock()
}

func (w *idleWheel) addLocked(c *conn, sec int64) {
	if cur := c.slot.Load(); w.stopped || (cur != 0 && cur <= sec) {
		return
	}
	c.slot.Store(sec)
	w.slots[sec] = append(w.slots[sec], c)
	if w.timer == nil {
		w.timer = time.AfterFunc(toNextSecond(), w.fire)
	}
}

func (w *idleWheel) fire() {
	now := time.Now()
	var late []*conn
	w.mu.Lock()
	for s, cs := range w.slots {
		if s > now.Unix() {
			continue
		}
		delete(w.slots, s)
		for _, c := range cs {
			if c.slot.Load() != s {
				continue // queued again, at an earlier second
			}
			switch d := c.deadline.Load(); {
			case d == 0:
				c.slot.Store(0)
				if d := c.deadline.Load(); d != 0 { // set meanwhile
					w.addLocked(c, slotOf(d))
				}
			case d > now.UnixNano():
				c.slot.Store(0)
				w.addLocked(c, slotOf(d))
				if d2 := c.deadline.Load(); d2 != 0 && slotOf(d2) < slotOf(d) {
					w.addLocked(c, slotOf(d2))
				}
			default:
				c.slot.Store(0)
				late = append(late, c)
			}
		}
	}
	if len(w.slots) > 0 && !w.stopped {
		w.timer.Reset(toNextSecond())
	} else {
		w.timer = nil
	}
	tick := w.tick
	w.mu.Unlock()
	for _, c := range late {
		c.expire()
	}
	if tick != nil {
		tick()
	}
}

// toNextSecond returns the time until just after the next whole second of
// the clock: the wheel fires then, so a connection is cut within a second
// of its deadline (slotOf rounds it up to the next second).
func toNextSecond() time.Duration {
	return time.Duration(int64(time.Second)-time.Now().UnixNano()%int64(time.Second)) + time.Millisecond
}

func (w *idleWheel) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.slots = map[int64][]*conn{}
	w.mu.Unlock()
}

// listenerFile returns a non-blocking duplicate of a TCP listener's
// descriptor, registered with the runtime's poller, for accept to take
// connections from without the runtime registering each one; nil for
// any other listener. (A listener's own RawConn cannot wait to read.)
func listenerFile(ln net.Listener) (*os.File, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, nil
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fd), "listener"), nil
}

// accept returns the next connection of ln as a non-blocking descriptor
// and its peer's address; through the listener's own descriptor when it
// has one, so no runtime poller registration is made and undone.
func accept(ln net.Listener, raw syscall.RawConn) (int, string, error) {
	if raw == nil {
		nc, err := ln.Accept()
		if err != nil {
			return -1, "", err
		}
		defer nc.Close()
		sc, ok := nc.(syscall.Conn)
		if !ok {
			return -1, "", errors.New("dense: the listener's connections have no descriptor")
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return -1, "", err
		}
		fd := -1
		var derr error
		if err := rc.Control(func(s uintptr) {
			fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
		}); err != nil {
			return -1, "", err
		}
		if derr != nil {
			return -1, "", os.NewSyscallError("fcntl", derr)
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			syscall.Close(fd)
			return -1, "", os.NewSyscallError("fcntl", err)
		}
		return fd, nc.RemoteAddr().String(), nil
	}
	var (
		fd     int
		remote string
		aerr   error
	)
	err := raw.Read(func(s uintptr) bool {
		fd, remote, aerr = rawAccept4(int(s))
		return !errors.Is(aerr, syscall.EAGAIN)
	})
	if err != nil {
		return -1, "", net.ErrClosed
	}
	if aerr != nil {
		return -1, "", os.NewSyscallError("accept4", aerr)
	}
	return fd, remote, nil
}
