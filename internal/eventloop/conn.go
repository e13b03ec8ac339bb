//go:build linux

package eventloop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/longpoll/longpoll/internal/transport"
)

// Supported reports whether this system has the dense transport.
const Supported = true

// Limits of the dense path. A request head longer than maxHead goes to
// net/http, whose own limits then apply. Input pipelined behind a request
// being served is buffered up to maxPending; beyond it the loop stops
// reading the connection until the requests ahead have been served, so
// that the client waits on its socket, as under net/http.
const (
	maxHead    = 8 << 10
	maxBody    = 1 << 20 // a publish body served on the loop
	maxPending = 64 << 10
)

// Transport serves one listener.
type Transport struct {
	cfg    Config
	bare   bool        // the server takes plain polls without their header (transport.Bare)
	inline atomic.Bool // serve requests on the loop now (checkProcs)
	after  afterJobs   // fan-outs to run once the inline requests are served
	l      *loop       // set by Serve
	ln     net.Listener
	lnFile *os.File // a duplicate of ln's descriptor that Serve accepts on
	std    *chanListener
	jobs   chan job
	quit   chan struct{} // closed when the loop stops
	// budget counts output waiting on connections among the server's
	// reply bytes (transport.ReplyBudget); holding is how many connections
	// hold some.
	budget  *transport.Budget
	holding atomic.Int64
	wg      sync.WaitGroup // workers

	mu       sync.Mutex
	conns    int           // connections not handed to net/http
	closing  atomic.Bool   // set under mu; read without it on the reply path
	drained  chan struct{} // closed when closing and conns is 0
	stopOnce sync.Once
}

// New returns a Transport.
func New(cfg Config) *Transport {
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	var budget *transport.Budget
	var bare bool
	if cfg.Server != nil {
		budget, bare = cfg.Server.Budget(), cfg.Server.Bare()
	}
	return &Transport{
		cfg:     cfg,
		budget:  budget,
		bare:    bare,
		jobs:    make(chan job, 4096),
		quit:    make(chan struct{}),
		drained: make(chan struct{}),
	}
}

// checkProcs decides whether the loop serves requests itself: with
// Config.Inline, and while the process has one processor. Then a worker
// could not run beside the loop anyway, and handing it a request costs
// two goroutine switches; with more, the workers serve requests in
// parallel. Serve calls it at the start and after each accept, and the
// idle wheel once a second, so a change of GOMAXPROCS is seen soon.
func (t *Transport) checkProcs() {
	t.inline.Store(t.cfg.Inline && runtime.GOMAXPROCS(0) == 1)
}

// afterJobs holds the fan-outs that inline requests set off, to run on
// the same goroutine once those requests are served: the publish's reply
// goes out first, and the replies of its fan-out next, with no hand-off
// to a worker between; the loop then reads the re-polls they bring.
type afterJobs struct {
	mu      sync.Mutex // uncontended: inline serving has one processor
	serving int        // inline requests being served
	queue   []func()   // queue[next:] are waiting
	next    int
}

// doInline serves j on this goroutine, then the fan-outs it set off.
// Whoever ends the last request being served leaves the queue empty, and
// fan-outs join it only while a request is being served, so none waits
// for a request that never comes.
func (t *Transport) doInline(j job) {
	a := &t.after
	a.mu.Lock()
	a.serving++
	a.mu.Unlock()
	j.do()
	for {
		a.mu.Lock()
		if a.next == len(a.queue) {
			a.serving--
			a.queue, a.next = a.queue[:0], 0
			a.mu.Unlock()
			return
		}
		f := a.queue[a.next]
		a.queue[a.next] = nil
		a.next++
		a.mu.Unlock()
		f()
	}
}

// runAfter queues f to run after the inline requests being served, and
// reports whether it did: not when none is.
func (t *Transport) runAfter(f func()) bool {
	a := &t.after
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.serving == 0 {
		return false
	}
	a.queue = append(a.queue, f)
	return true
}

// Serve accepts connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then.
func (t *Transport) Serve(ln net.Listener) error {
	if t.cfg.Server == nil {
		return errors.New("dense: no server: Config.Server is nil")
	}
	lnFile, err := listenerFile(ln)
	if err != nil {
		return fmt.Errorf("dense: %w", err)
	}
	var raw syscall.RawConn
	if lnFile != nil {
		defer lnFile.Close()
		if raw, err = lnFile.SyscallConn(); err != nil {
			return fmt.Errorf("dense: %w", err)
		}
	}
	l, err := newLoop()
	if err != nil {
		return fmt.Errorf("dense: %w", err)
	}
	l.pause = t.cfg.Server.Pause
	t.checkProcs()
	l.wheel.tick = t.checkProcs
	t.mu.Lock()
	if t.closing.Load() { // Shutdown or Close came first
		t.mu.Unlock()
		l.file.Close() // never run
		return http.ErrServerClosed
	}
	t.ln, t.lnFile, t.l = ln, lnFile, l
	t.std = newChanListener(ln.Addr())
	t.std.headTime = t.cfg.ReadHeaderTimeout
	t.wg.Add(t.cfg.Workers) // before stop can Wait
	t.mu.Unlock()
	go l.run()
	for range t.cfg.Workers {
		go t.work()
	}
	stdErr := make(chan error, 1)
	go func() { stdErr <- t.cfg.Std.Serve(t.std) }()
	defer func() {
		// After Shutdown or Close, they stop the loop (Shutdown once the
		// parked polls' replies are out); after a failure, stop it here.
		if !t.isClosing() {
			t.stop()
		}
		<-stdErr
	}()
	var delay time.Duration
	for {
		fd, remote, err := accept(ln, raw)
		if err != nil {
			if t.isClosing() {
				return http.ErrServerClosed
			}
			switch {
			case errors.Is(err, net.ErrClosed):
				return err
			case errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EINTR):
				continue
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.cfg.Logger.Warn("accept failed; retrying", "error", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		t.checkProcs()
		rawNoDelay(fd)
		dc := &conn{t: t, fd: fd, remote: remote}
		t.mu.Lock()
		if t.closing.Load() {
			t.mu.Unlock()
			syscall.Close(fd)
			return http.ErrServerClosed
		}
		t.conns++
		t.mu.Unlock()
		// The first head's time runs from the accept, as under net/http.
		dc.startHead(time.Now().UnixNano())
		if err := l.add(dc); err != nil {
			t.forget(dc)
			dc.setIdleDeadline(0)
			syscall.Close(fd)
		}
	}
}

// Shutdown stops accepting, lets net/http shut down what it serves, closes
// idle connections and those whose reply has gone out, and waits for the
// rest until ctx ends. The server's own Shutdown answers parked polls.
func (t *Transport) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.stopAccepting()
	if t.conns == 0 {
		t.closeDrained()
	}
	l := t.l
	t.mu.Unlock()
	if l != nil {
		for _, dc := range l.all() {
			dc.closeIfIdle()
		}
	}
	err := t.cfg.Std.Shutdown(ctx)
	select {
	case <-t.drained:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	t.stop()
	return err
}

// stopAccepting marks t closing and closes its listener; t.mu is held.
func (t *Transport) stopAccepting() {
	t.closing.Store(true)
	if t.ln != nil {
		t.ln.Close()
	}
	if t.lnFile != nil {
		t.lnFile.Close()
	}
}

// Close closes every connection at once.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.stopAccepting()
	t.mu.Unlock()
	err := t.cfg.Std.Close()
	t.stop()
	return err
}

func (t *Transport) stop() {
	t.stopOnce.Do(func() {
		t.mu.Lock()
		std := t.std
		t.mu.Unlock()
		if std == nil {
			return // not serving yet: Serve stops the loop itself
		}
		t.std.Close()
		t.l.close()
		t.stopWorkers(t.cfg.Workers)
	})
}

// Conns returns the number of connections the event loop serves now,
// not counting those handed to net/http. It takes the lock the accept
// and the close take; it is meant for a metrics scrape.
func (t *Transport) Conns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns
}

func (t *Transport) forget(dc *conn) {
	t.mu.Lock()
	t.conns--
	if t.closing.Load() && t.conns == 0 {
		t.closeDrained()
	}
	t.mu.Unlock()
}

func (t *Transport) closeDrained() {
	select {
	case <-t.drained:
	default:
		close(t.drained)
	}
}

func (t *Transport) isClosing() bool { return t.closing.Load() }

// stopWorkers stops n workers and waits for them. The stop jobs queue
// behind what was queued before quit closed, which the workers serve
// first; what comes after gets a goroutine of its own (Run), and what a
// Run that began before quit closed queued behind the stop jobs runs
// here.
func (t *Transport) stopWorkers(n int) {
	close(t.quit)
	for range n {
		t.jobs <- job{stop: true}
	}
	t.wg.Wait()
	for {
		select {
		case j := <-t.jobs:
			if j.fn != nil {
				j.fn()
			}
		default:
			return
		}
	}
}

// work serves jobs until it takes a stop job. A plain receive, not a
// select with the quit channel: a job is handed over with one channel's
// lock, not two.
func (t *Transport) work() {
	defer t.wg.Done()
	for j := range t.jobs {
		if j.stop {
			return
		}
		j.do()
	}
}

// conn states.
const (
	idle    = iota // waiting for a request
	busy           // a worker is serving a request
	waiting        // its poll is parked
	handed         // moved to net/http
	closed
)

// conn is one connection on the loop. Its mutex is never held while
// writing or closing: a failed write closes the connection on the writing
// goroutine, which then calls onClose. Read deadlines are set under it, so
// that they apply in the order of the state changes that call for them.
type conn struct {
	t      *Transport
	remote string
	fd     int
	gen    uint32

	io sync.Mutex // guards the descriptor's own state (loop.go)
	mu sync.Mutex // guards the request state

	// Under io.
	fdClosed  bool
	lingering bool // closing once its output is sent
	// Under mu.
	state      uint8
	closeAfter bool   // the request being served asked to close after its reply
	finished   bool   // its reply is being written
	flushing   bool   // idle, but the last reply is not all in the socket: the next request waits
	eof        bool   // the client's input has ended: serve what came, then close
	reqs       uint32 // requests begun: a job's number tells if it is still current
	headAt     int64  // when the head being read began (unix nanoseconds); 0: none

	o *outState // under io: output that waits for the client, once some has

	writeDeadline int64        // under io: for net/http's writes, in unix nanoseconds; 0: none
	deadline      atomic.Int64 // unix nanoseconds; 0: none
	slot          atomic.Int64 // the idle wheel's second c is queued at; 0: none

	streaming atomic.Bool // the parked poll is a stream (it has written some): input does not end it

	buf  []byte         // under mu: input not yet served
	held atomic.Bool    // set under mu: buf is full, and the loop does not read c
	poll transport.Poll // under mu: the parked poll, while waiting
	std  *stdConn       // under mu: after the hand-over
}

// outState is what a connection keeps while output waits for its client,
// in the process or in its socket: made the first time some waits (most
// connections never need it), kept after. Under the connection's io lock.
type outState struct {
	buf           []byte // output the socket has not taken yet, buf[off:]
	off           int
	counted       int           // bytes of buf counted in the reply budget
	inSocket      int           // bytes the socket holds unsent, while watched
	socketCounted int           // of which counted in the budget (Budget.AddSocket)
	every         time.Duration // the watch's next interval
	since         int64         // when output began to wait, in unix nanoseconds
	sent          int64         // bytes of it sent since
	progress      int64         // when the client last took some
	watch         *time.Timer   // the watch (watchOut): one, holding nothing of buf
	drainWait     chan struct{} // closed when output falls to stdWatermark, or c closes
}

// job is one request read on the loop, for a worker to serve; the
// connection is the sink of its poll if that is parked. Or it is work
// the server asked to run (fn).
type job struct {
	fn   func()
	stop bool // the worker taking it stops
	c    *conn
	h    *head
	url  *url.URL
	body []byte // a publish's body, never empty; nil for a poll
	n    uint32 // c.reqs when it began
}

// onData takes input read from c on the loop, or nil from a reply that
// has gone out (the connection may now serve what it kept). It goes in
// steps, each of which may end it:
//
//  1. notReady: a connection that is not idle (serving a request, its
//     poll parked, its last reply still going out, handed over, closed)
//     keeps the input or passes it on, and parses nothing now;
//  2. the input joins what was kept (gather); with nothing at all, only
//     the end of input is left to act on;
//  3. the head is parsed: a request the loop does not serve itself goes
//     to net/http (handOver); a head not all there waits (awaitHead);
//  4. begin marks the request being served and keeps what follows it;
//  5. dispatch serves it, inline or on a worker.
func (c *conn) onData(data []byte) {
	c.mu.Lock()
	if c.notReady(data) {
		return
	}
	first := len(c.buf) == 0
	in := c.gather(data, first)
	if len(in) == 0 { // nothing buffered: only the end of input to act on
		end := c.eof
		c.mu.Unlock()
		if end {
			c.closeConn()
		}
		return
	}
	h, u, body, err := c.parse(in)
	switch {
	case err != nil:
		c.handOver(first, in)
		return
	case h == nil:
		c.awaitHead(data, first)
		return
	}
	n, resume := c.begin(h, in, first)
	c.mu.Unlock()
	if resume {
		c.resume()
	}
	c.dispatch(job{c: c, h: h, url: u, body: body, n: n})
}

// notReady deals with input that c cannot parse now, and then reports
// true, having unlocked c.mu; it reports false, c.mu still held, when c
// is idle with its last reply out, ready for a request. The caller holds
// c.mu.
func (c *conn) notReady(data []byte) bool {
	if len(data) == 0 && c.state != idle {
		c.mu.Unlock() // served already (reply's call with nil)
		return true
	}
	switch c.state {
	case handed:
		std := c.std
		c.mu.Unlock()
		std.feed(data)
		return true
	case closed:
		c.mu.Unlock()
		return true
	case busy, waiting:
		// A request pipelined behind a poll: keep it, and ask the parked
		// poll to answer now so that the next one can be served. Not a
		// stream, which has no end to give now: the request waits, as
		// under net/http, until the stream ends.
		c.keep(data)
		var p transport.Poll
		if c.state == waiting && !c.streaming.Load() {
			p = c.poll
		}
		c.mu.Unlock()
		if p != nil {
			p.Release()
		}
		return true
	}
	if c.flushing {
		// The last reply is not all in the socket: the next request
		// waits for it (outDrained), as under net/http, whose write
		// blocks, so a client that does not read holds one reply.
		c.keep(data)
		c.mu.Unlock()
		return true
	}
	return false
}

// gather returns the input to parse: data itself when nothing was kept
// (first), else what was kept with data after it. The caller holds c.mu.
func (c *conn) gather(data []byte, first bool) []byte {
	if first {
		return data
	}
	c.buf = append(c.buf, data...)
	return c.buf
}

// awaitHead keeps a head that is not all there, and starts the time it
// has to end; a head cut short by the end of input is answered 400 as
// net/http answers it. The caller holds c.mu; awaitHead unlocks it.
func (c *conn) awaitHead(data []byte, first bool) {
	if first {
		c.buf = append(c.buf, data...)
	}
	if c.eof {
		c.badHead()
		return
	}
	c.startHead(time.Now().UnixNano())
	c.mu.Unlock()
}

// begin marks the request h, at the start of in, as being served, and
// keeps what follows it for the next. It returns the request's number
// and whether the loop must read c again (it had stopped, with too much
// kept). The caller holds c.mu.
func (c *conn) begin(h *head, in []byte, first bool) (n uint32, resume bool) {
	// What follows the request stays for the next: copied out of the
	// loop's read buffer, or the rest of c.buf itself (its array is let
	// go once an append outgrows it, or it is all served).
	switch rest := in[h.n:]; {
	case len(rest) == 0:
		c.buf = nil
	case first:
		c.buf = append([]byte(nil), rest...)
	default:
		c.buf = rest
	}
	// Past maxPending of input behind this request, the loop reads no
	// more until the buffer is served; below it, it reads again.
	if len(c.buf) > maxPending {
		c.held.Store(true)
	} else {
		resume = c.held.Swap(false)
	}
	c.state, c.poll, c.closeAfter, c.finished = busy, nil, h.close, false
	c.streaming.Store(false)
	c.reqs++
	c.headAt = 0         // a head that follows starts its time once this request is served
	c.setIdleDeadline(0) // the hold has its own deadline
	return c.reqs, resume
}

// dispatch serves j: on this goroutine while the loop serves requests
// itself, else on a worker.
func (c *conn) dispatch(j job) {
	if c.t.inline.Load() {
		// As on a worker: the job holds nothing of the loop's read
		// buffer (the head, the body and the input after them were
		// copied by begin), and it reads no input itself.
		c.t.doInline(j)
		return
	}
	select {
	case c.t.jobs <- j: // the usual case, without a select's cost
	default:
		select {
		case c.t.jobs <- j:
		case <-c.t.quit:
			c.closeNow()
		}
	}
}

// badHeadReply is net/http's answer to a request head it could not read
// whole: cut short by the end of input or by the header timeout.
const badHeadReply = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"

// badHead answers an unfinished head as net/http does, and closes the
// connection; called with c.mu held, it releases it. net/http reads a
// connection's first head at once, but peeks at four bytes of a later
// one first, and closes without a word when they do not come: so does
// this.
func (c *conn) badHead() {
	c.state = closed
	reply := c.reqs == 0 || len(c.buf) >= 4
	c.mu.Unlock()
	if reply {
		_, _ = c.writev([][]byte{[]byte(badHeadReply)})
	}
	c.closeConn()
}

// expire closes c, whose idle or head deadline has passed. A head begun
// and not finished gets net/http's 400 first.
func (c *conn) expire() {
	c.mu.Lock()
	if c.state == idle && !c.flushing && len(c.buf) > 0 {
		c.badHead()
		return
	}
	c.mu.Unlock()
	c.closeNow()
}

// keep buffers input that arrives while a request is served; past
// maxPending, the loop reads no more until the buffer is served. The
// caller holds c.mu.
func (c *conn) keep(data []byte) {
	c.buf = append(c.buf, data...)
	if len(c.buf) > maxPending {
		c.held.Store(true)
	}
}

// startHead starts the time the head being read has to end, unless it
// has started already: from the accept, or from the moment the
// connection, idle, has the first bytes of a new head (also bytes that
// came pipelined behind the last request). The caller holds c.mu.
func (c *conn) startHead(now int64) {
	if c.headAt == 0 {
		c.headAt = now
		c.setIdleDeadline(now + int64(c.t.cfg.ReadHeaderTimeout))
	}
}

// parse reads the request head at the start of in, and for a request
// served on the loop its URL and perhaps its body. A nil head and no
// error mean the head is not all there yet; errNotSimple a request for
// net/http.
func (c *conn) parse(in []byte) (h *head, u *url.URL, body []byte, err error) {
	h, err = parseHead(in, maxHead, c.t.bare && isPollLine(in))
	if h == nil || err != nil {
		return h, nil, nil, err
	}
	switch {
	case h.header == nil: // a bare poll: its URL is made with its request
	case h.length == 0 && servedHere(h.method, pathOf(h.target)):
		if u, err = url.ParseRequestURI(h.target); err != nil {
			err = errNotSimple
		}
	case h.method == http.MethodPost && h.target == "/v1/publish" && h.length > 0 && h.length <= maxBody && len(in)-h.n >= h.length:
		// A publish whose body has arrived with its head; a slower
		// one goes to net/http, which reads bodies under its own
		// timeouts.
		h.rq.url = url.URL{Path: "/v1/publish"}
		u = &h.rq.url
		body = append([]byte(nil), in[h.n:h.n+h.length]...)
		h.n += h.length
	default:
		err = errNotSimple
	}
	return h, u, body, err
}

// onEnd is called when the client's input ends. A client that half-closes
// (shutdown for writing, as nc -N and some health checkers do) still
// reads: what it sent is served and answered, a held poll is answered at
// once with what it has, and the connection closes once the replies are
// out. As under net/http.
func (c *conn) onEnd() {
	c.mu.Lock()
	switch c.state {
	case handed:
		std := c.std
		c.mu.Unlock()
		std.closeRead()
		return
	case closed:
		c.mu.Unlock()
		return
	}
	c.eof = true
	var p transport.Poll
	if c.state == waiting {
		p = c.poll
	}
	ready := c.state == idle && !c.flushing
	c.mu.Unlock()
	switch {
	case p != nil:
		p.Release()
	case ready:
		c.onData(nil) // serves what is buffered, or closes
	}
}

// outDrained is called on the loop once output that waited is all in the
// socket: the requests buffered meanwhile are served.
func (c *conn) outDrained() {
	c.mu.Lock()
	if c.state == waiting && c.streaming.Load() {
		d, _ := c.poll.(transport.Drainer)
		c.mu.Unlock()
		if d != nil {
			d.Drained() // the stream writes its next events
		}
		return
	}
	if !c.flushing {
		c.mu.Unlock()
		return
	}
	c.flushing = false
	c.mu.Unlock()
	c.onData(nil)
}

// handOver moves the connection to net/http with the input in; called
// with c.mu held, it releases it.
func (c *conn) handOver(first bool, in []byte) {
	buf := in
	if first {
		buf = append([]byte(nil), in...)
	}
	c.startHead(time.Now().UnixNano())
	// The head's time carries over: net/http's own header timeout
	// starts again when it begins to read, and is cut to what is left.
	std := &stdConn{c: c, buf: buf, ready: make(chan struct{}, 1),
		headLimit: time.Unix(0, c.headAt+int64(c.t.cfg.ReadHeaderTimeout))}
	c.state, c.std, c.buf = handed, std, nil
	c.setIdleDeadline(0) // net/http sets its own
	resume := c.held.Swap(false)
	if len(buf) > stdWatermark { // read on once net/http takes some
		std.full = true
		c.held.Store(true)
		resume = false
	}
	eof := c.eof
	c.mu.Unlock()
	c.t.forget(c)
	if eof {
		std.closeRead()
	}
	if !c.t.std.push(std) {
		c.closeNow()
		return
	}
	if resume {
		c.resume() // net/http applies its own limits to what follows
	}
}

// servedHere reports whether a request with no body is served on the
// loop: a poll, and the protocol's other small requests (topic info,
// health, CORS preflights), so that a client mixing them with polls or
// publishes keeps its connection here. Pages, metrics and the like go to
// net/http.
func servedHere(method, path string) bool {
	switch method {
	case http.MethodGet:
		return path == "/v1/poll" || path == "/v1/stream" || strings.HasPrefix(path, "/v1/topics/") || path == "/healthz" || path == "/readyz"
	case http.MethodHead:
		return strings.HasPrefix(path, "/v1/topics/")
	case http.MethodOptions:
		return strings.HasPrefix(path, "/v1/")
	}
	return false
}

// isPollLine reports whether b starts with a plain poll's request line.
func isPollLine(b []byte) bool {
	const p = "GET /v1/poll"
	return len(b) > len(p) && string(b[:len(p)]) == p && (b[len(p)] == '?' || b[len(p)] == ' ')
}

// pathOf returns the path of a request target, before any query.
func pathOf(target string) string {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		return target[:i]
	}
	return target
}

// bareURL reads a bare poll's target, /v1/poll and perhaps a query, as
// url.ParseRequestURI does.
func bareURL(target string) url.URL {
	_, q, ok := strings.Cut(target, "?")
	return url.URL{Path: "/v1/poll", RawQuery: q, ForceQuery: ok && q == ""}
}

// request is what serving one request needs, made in one allocation
// with its head.
type request struct {
	http.Request
	url url.URL
	w   transport.Response
	h   head
}

// requests keeps served requests for new heads: a request is the largest
// allocation of a poll cycle, a third of its bytes, and nothing holds it
// once served (the server copies what a parked poll keeps, and a reply
// the socket does not take at once is copied too).
var requests = sync.Pool{New: func() any { return new(request) }}

// free clears rq and returns it to requests.
func (rq *request) free() {
	*rq = request{}
	requests.Put(rq)
}

func (j job) do() {
	if j.fn != nil {
		j.fn()
		return
	}
	j.serve()
}

// Run implements transport.Runner: the server answers woken polls on the
// workers, whose stacks have grown already.
func (c *conn) Run(f func()) {
	select {
	case <-c.t.quit: // the workers are stopping
		go f()
		return
	default:
	}
	if c.t.runAfter(f) {
		return
	}
	select {
	case c.t.jobs <- job{fn: f}:
	default: // every worker busy and the queue full
		go f()
	}
}

// serve runs on a worker, or on the loop (Config.Inline). A handler that
// panics loses its connection, as under net/http, not the process.
func (j job) serve() {
	c := j.c
	defer func() {
		if v := recover(); v != nil {
			c.t.cfg.Logger.Error("panic serving a request", "remote", c.remote, "panic", v, "stack", string(debug.Stack()))
			c.closeNow()
		}
	}()
	h := j.h
	host := h.host
	rq := h.rq
	defer rq.free() // after the reply is out, or the poll parked
	if h.header != nil {
		host = h.header.Get("Host")
		h.header.Del("Host")
	} else {
		rq.url = bareURL(h.target)
		j.url = &rq.url
		if h.rid != "" {
			h.header = http.Header{"X-Request-Id": {h.rid}}
		}
	}
	req := &rq.Request
	*req = http.Request{
		Method:     h.method,
		URL:        j.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h.header,
		Body:       http.NoBody,
		Host:       host,
		RemoteAddr: c.remote,
		RequestURI: h.target,
		Close:      h.close,
	}
	w := &rq.w
	w.AcceptGzip = h.gzip
	if j.body != nil || h.method != http.MethodGet || j.url.Path != "/v1/poll" && j.url.Path != "/v1/stream" {
		if j.body != nil {
			req.Body = io.NopCloser(bytes.NewReader(j.body))
			req.ContentLength = int64(len(j.body))
		}
		handler := c.t.cfg.Std.Handler
		if strings.HasPrefix(j.url.Path, "/v1/") {
			handler = c.t.cfg.Server // the protocol's server: no routing on the way
		} else if handler == nil {
			handler = http.DefaultServeMux
		}
		handler.ServeHTTP(w, req)
		body := w.Body
		if h.method == http.MethodHead {
			body = nil // its head keeps the Content-Length
		}
		c.reply(w.AppendHead(nil, h.close || c.t.isClosing()), body)
		c.release(w)
		return
	}
	p := c.t.cfg.Server.ServePoll(w, req, c)
	if p == nil {
		c.reply(w.AppendHead(nil, h.close || c.t.isClosing()), w.Body)
		c.release(w)
		return
	}
	c.mu.Lock()
	if c.finished || c.reqs != j.n { // answered already, maybe followed by more
		c.mu.Unlock()
		return
	}
	c.poll = p
	gone := c.state == closed
	pending := len(c.buf) > 0 && !c.streaming.Load() || c.eof
	if !gone {
		c.state = waiting
	}
	c.mu.Unlock()
	switch {
	case gone:
		p.Cancel()
	case pending:
		p.Release()
	}
}

// release lets go of what a reply written held of the reply budget: what
// waits on the connection is counted there now.
func (c *conn) release(w *transport.Response) {
	if w.Reserved != 0 && c.t.budget != nil {
		c.t.budget.Add(-w.Reserved)
		w.Reserved = 0
	}
}

// Finish implements transport.Sink: c is the sink of its parked poll.
func (c *conn) Finish(head, body []byte, now time.Time) {
	c.mu.Lock()
	c.finished = true
	c.mu.Unlock()
	c.replyAt(head, body, now)
}

// Write implements transport.Streamer: c carries its parked poll's
// stream, whose parts go out as any reply's output does, bounded for a
// client that does not read them as replies are (checkOut), and cut
// once more than behind bytes wait for it.
func (c *conn) Write(p []byte, behind int) bool {
	c.streaming.Store(true)
	c.io.Lock()
	if !c.fdClosed && c.pendingOut() > behind {
		c.cutLocked("the client reads its stream slower than it is written", c.pendingOut())
		return false
	}
	c.io.Unlock()
	_, err := c.writev([][]byte{p})
	return err == nil
}

// Pending implements transport.Streamer.
func (c *conn) Pending() int {
	c.io.Lock()
	defer c.io.Unlock()
	return c.pendingOut()
}

// Cut implements transport.Streamer.
func (c *conn) Cut() {
	c.io.Lock()
	if c.fdClosed {
		c.io.Unlock()
		return
	}
	c.cutLocked("the client has not taken its stream's output within the write margin", c.pendingOut())
}

// reply writes a request's reply and makes the connection ready for its
// next request: it serves any input already buffered.
func (c *conn) reply(head, body []byte) { c.replyAt(head, body, time.Now()) }

// replyAt is reply with the time now, which the caller has read already.
// A reply the socket does not take all at once holds the next request
// back until it is out (outDrained).
func (c *conn) replyAt(head, body []byte, now time.Time) {
	waiting, _ := c.writev([][]byte{head, body})
	c.mu.Lock()
	if c.state == closed {
		c.mu.Unlock()
		return
	}
	if c.closeAfter || c.t.isClosing() || (c.eof && len(c.buf) == 0) {
		c.state = closed
		c.mu.Unlock()
		c.closeConn()
		return
	}
	c.state, c.poll = idle, nil
	if waiting {
		// Set under mu, then checked again: output that drained before
		// this was set found nothing to resume (outDrained).
		c.flushing = true
		c.io.Lock()
		c.flushing = c.pendingOut() > 0
		c.io.Unlock()
	}
	pending := len(c.buf) > 0 && !c.flushing
	c.setIdleDeadline(now.Add(c.t.cfg.IdleTimeout).UnixNano())
	c.mu.Unlock()
	if pending {
		// A request pipelined behind this one: it stays in c.buf, ahead
		// of anything the loop reads meanwhile, and whichever goroutine
		// takes the lock first serves it. Not on this goroutine: it may
		// be a worker, or the server's fan-out, and queueing a job from
		// there could wait on the workers forever.
		go c.onData(nil)
	}
}

func (c *conn) onClose() {
	c.mu.Lock()
	st := c.state
	c.state = closed
	p := c.poll
	std := c.std
	c.mu.Unlock()
	if st == handed {
		std.closeRead()
		return
	}
	c.t.forget(c)
	if st == waiting && p != nil {
		p.Cancel()
	}
}

// closeIfIdle closes the connection when no request is in progress; one
// in progress closes it after its reply (done sees the transport closing).
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == idle {
		c.closeConn() // after the output that waits, if any
	}
}
