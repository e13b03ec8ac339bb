package longpoll

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/internal/hub"
	"github.com/longpoll/longpoll/internal/transport"
)

// Parked polls: an event-loop transport (internal/dense) hands a poll
// request to the server with a sink; a poll that must wait is kept as a
// parked record, with no goroutine and no timer of its own, until a
// wake-up, its deadline, its client leaving or shutdown ends it.
//
// A parked poll's state moves with compare-and-swap, so exactly one party
// answers it:
//
//	starting --wake--> startingWoken   (the handler reads again)
//	starting --handler done--> held
//	held --wake, deadline, cancel, release, shutdown--> claimed
//	claimed --wake--> claimedWoken     (a delivery that found nothing reads again)
//	claimed --delivery found nothing--> held
//	claimed --answered--> done
const (
	stStarting int32 = iota
	stStartingWoken
	stHeld
	stClaimed
	stClaimedWoken
	stDone
)

// Transport returns the server as longpoll's own transports see it: the
// event loop parks polls on it, sends it what it reads under /v1/, and
// counts its connections' waiting output in its reply budget. It is for
// the transports in this module; wrapping the server in a handler hides
// none of this from them.
func (s *Server) Transport() transport.Server { return (*parkServer)(s) }

// parkServer is the server as a transport.Server.
type parkServer Server

func (ps *parkServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*Server)(ps).ServeHTTP(w, r)
}

func (ps *parkServer) ServePoll(w http.ResponseWriter, r *http.Request, sink transport.Sink) transport.Poll {
	if p := (*Server)(ps).serve(w, r, sink); p != nil {
		return p
	}
	return nil // not a nil *parked in a non-nil interface
}

// Bare: without an Authenticator, the server reads a poll's
// X-Request-Id, and Origin, Access-Control-Request-Method and
// X-Forwarded-For, none of which a bare poll carries.
func (ps *parkServer) Bare() bool { return ps.cfg.auth == nil }

func (ps *parkServer) Pause() { ps.fanout.wait() }

func (ps *parkServer) Budget() *transport.Budget { return ps.budget }

// parked is one parked poll. Its fields are ordered to keep it small:
// every held poll has one.
type parked struct {
	s     *Server
	state atomic.Int32
	gone  atomic.Bool // the client left
	// expires: at the deadline the poll is answered 401 token_expired,
	// not with a timeout.
	expires bool
	inWheel bool // under home's lock
	unsent  bool // its client was gone when its reply was due (send)
	sink    transport.Sink
	w       hub.Waiter // its registration, kept here to save an allocation
	// What the reply depends on, updated by whoever holds the claim.
	topics []string
	pos    []Position
	// A single topic's name and position: topics and pos point here.
	topic1 [1]string
	pos1   [1]Position
	limit  int32
	// The request id is extra[ridAt:ridEnd]: the id's own header line.
	ridAt, ridEnd int32
	// The deadline wheel's bookkeeping, under home's lock.
	wslot, wix int32
	home       *wheelShard
	extra      []byte        // the reply's header lines set before parking (X-Request-Id, CORS)
	start      time.Duration // since monoBase
	client     string        // the per-client limit's key, when one counts this poll
	// deadline is when the hold ends, in Unix nanoseconds.
	deadline int64
	log      *parkLog // nil unless access logging is on
}

// monoBase is what parked polls' start times count from: a Duration is a
// third of a time.Time, and keeps its monotonic clock.
var monoBase = time.Now()

func (p *parked) started() time.Time { return monoBase.Add(p.start) }

// requestID returns the poll's request id; it is asked for only on the
// paths that log or answer an error.
func (p *parked) requestID() string { return string(p.extra[p.ridAt:p.ridEnd]) }

// parkLog keeps what the access-log line of a parked poll needs.
type parkLog struct {
	method, path, remote string
}

func (s *Server) accessLog(rid string, l *parkLog, status int, n int64, d time.Duration) {
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("request_id", rid),
		slog.String("method", l.method),
		slog.String("path", l.path),
		slog.Int("status", status),
		slog.Int64("bytes", n),
		slog.Duration("duration", d),
		slog.String("remote", l.remote))
}

// pollParked runs a poll up to the point where it would wait, and parks
// it there. It returns nil and the outcome when the reply went to w.
func (s *Server) pollParked(w http.ResponseWriter, r *http.Request, rid string, req *pollRequest, pr *Principal, sink transport.Sink, start time.Time, client string) (*parked, PollOutcome) {
	ctx := r.Context()
	d, expires := holdFor(req, pr)
	// Strings parsed from the request point into its head: a parked poll
	// keeps copies, so that the head can be freed.
	p := &parked{s: s, sink: sink, start: start.Sub(monoBase), client: client, expires: expires}
	if len(req.topics) == 1 { // the record holds it, saving two small allocations
		p.topic1[0] = strings.Clone(req.topics[0])
		req.topics = p.topic1[:]
	} else {
		for i, t := range req.topics {
			req.topics[i] = strings.Clone(t)
		}
	}
	c := new(collector)
	c.init(req, p.pos1[:])
	c.maxBytes = s.cfg.maxReplyBytes
	if err := s.startPositions(ctx, c, req.earliest); err != nil {
		s.brokerError(w, r, rid, "stat", err)
		return nil, OutcomeError
	}
	if d == 0 {
		if err := c.collect(ctx, s.broker); err != nil {
			s.brokerError(w, r, rid, "read", err)
			return nil, OutcomeError
		}
		return nil, s.answer(w, rid, c, true)
	}
	// Everything the poll's answerer reads is set before the poll can be
	// claimed, that is before it turns held.
	hdr, ridLine := replyFields(w)
	size := len(rid) + len("X-Request-Id: \r\n")
	for k, vs := range hdr {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	p.extra = make([]byte, 0, size)
	for k, vs := range hdr {
		for _, v := range vs {
			p.extra = append(append(p.extra, k...), ": "...)
			if k == "X-Request-Id" && v == rid {
				p.ridAt, p.ridEnd = int32(len(p.extra)), int32(len(p.extra)+len(v))
			}
			p.extra = append(append(p.extra, v...), "\r\n"...)
		}
	}
	if p.ridEnd-p.ridAt != int32(len(rid)) { // no header line carries it
		if ridLine {
			p.extra = append(p.extra, "X-Request-Id: "...)
		}
		p.ridAt = int32(len(p.extra))
		p.extra = append(p.extra, rid...)
		p.ridEnd = int32(len(p.extra))
		if ridLine {
			p.extra = append(p.extra, "\r\n"...)
		} else {
			p.extra = p.extra[:p.ridAt]
		}
	}
	if s.log.Enabled(ctx, slog.LevelInfo) {
		p.log = &parkLog{method: r.Method, path: r.URL.Path, remote: r.RemoteAddr}
	}
	p.deadline = start.Add(d).UnixNano() // the hold counts from the poll's start
	s.hub.Park(&p.w, c.topics, p)
	s.wheel.add(p)
	for {
		err := c.collect(ctx, s.broker)
		if err != nil || !c.empty() {
			p.state.Store(stDone)
			s.hub.Unregister(&p.w)
			s.wheel.remove(p)
			if err != nil {
				s.brokerError(w, r, rid, "read", err)
				return nil, OutcomeError
			}
			return nil, s.answer(w, rid, c, false)
		}
		c.out = nil
		p.topics, p.pos, p.limit = c.topics, c.pos, int32(c.limit)
		if p.state.CompareAndSwap(stStarting, stHeld) {
			break
		}
		p.state.Store(stStarting) // woken while reading: read again
	}
	// Parked. From here on the reply goes to the sink, perhaps before
	// this returns; nothing may touch w or p.
	if s.draining.Load() && p.state.CompareAndSwap(stHeld, stClaimed) {
		p.shutdown()
	}
	return p, ""
}

// replyFields returns the header a parked poll's reply has so far,
// without making a map for it, and whether its X-Request-Id line is
// still to be written (the server set it on the transport.Response itself).
func replyFields(w http.ResponseWriter) (http.Header, bool) {
	if rec, ok := w.(*recorder); ok {
		w = rec.ResponseWriter
	}
	if pw, ok := w.(*transport.Response); ok {
		return pw.Fields(), pw.RequestID != ""
	}
	return w.Header(), false
}

// parkResponse returns the transport's own response writer under w, or
// nil when w is net/http's.
func parkResponse(w http.ResponseWriter) *transport.Response {
	if rec, ok := w.(*recorder); ok {
		w = rec.ResponseWriter
	}
	pw, _ := w.(*transport.Response)
	return pw
}

// answer writes a reply from c to w and returns the outcome.
func (s *Server) answer(w http.ResponseWriter, rid string, c *collector, timedOut bool) PollOutcome {
	if c.empty() {
		s.reply(w, rid, c, timedOut, 0)
		return OutcomeTimeout
	}
	now := time.Now()
	if !s.reply(w, rid, c, false, 0) {
		return OutcomeError
	}
	s.m.Delivered(now, c.out)
	for _, g := range c.gaps {
		s.m.GapReported(g.Reason)
	}
	return OutcomeMessages
}

// Claim implements hub.Parked.
func (p *parked) Claim() bool {
	for {
		switch st := p.state.Load(); st {
		case stHeld:
			if p.state.CompareAndSwap(stHeld, stClaimed) {
				return true
			}
		case stStarting:
			if p.state.CompareAndSwap(stStarting, stStartingWoken) {
				return false
			}
		case stClaimed:
			if p.state.CompareAndSwap(stClaimed, stClaimedWoken) {
				return false
			}
		default:
			return false
		}
	}
}

// Cancel implements transport.Poll.
func (p *parked) Cancel() {
	p.gone.Store(true)
	if p.state.CompareAndSwap(stHeld, stClaimed) {
		p.end(OutcomeCancelled, 0, nil, nil)
	}
}

// Release implements transport.Poll.
func (p *parked) Release() {
	if p.state.CompareAndSwap(stHeld, stClaimed) {
		p.replyOwn(true, 0, OutcomeTimeout)
	}
}

// timeout answers a claimed poll at the end of its hold.
func (p *parked) timeout() {
	if p.expires {
		p.fail(errTokenExpired)
		return
	}
	p.replyOwn(true, 0, OutcomeTimeout)
}

// shutdown answers a claimed poll as the server shuts down.
func (p *parked) shutdown() {
	p.replyOwn(false, spread(p.s.cfg.retryAfter), OutcomeShutdown)
}

// replyOwn answers a claimed poll with its own positions and no messages.
func (p *parked) replyOwn(timedOut bool, retry time.Duration, outcome PollOutcome) {
	bp := bufPool.Get().(*[]byte)
	c := p.collector()
	body := appendReply((*bp)[:0], &c, timedOut, retry)
	p.end(outcome, http.StatusOK, nil, body)
	*bp = body
	bufPool.Put(bp)
}

// fail answers a claimed poll with an error.
func (p *parked) fail(err error) {
	var w transport.Response
	p.s.writeError(&w, p.requestID(), err)
	p.end(OutcomeError, w.Status, w.Header(), w.Body)
}

// end finishes a claimed poll: it writes the reply (hdr holds its headers
// beyond the fixed JSON ones) unless the client is gone, then settles it.
func (p *parked) end(outcome PollOutcome, status int, hdr http.Header, body []byte) {
	now := time.Now()
	p.send(status, hdr, body, now)
	p.settle(outcome, status, len(body), now)
}

// send writes a claimed poll's reply, unless the client is gone.
func (p *parked) send(status int, hdr http.Header, body []byte, now time.Time) {
	if p.gone.Load() {
		p.unsent = true
		return
	}
	hp := bufPool.Get().(*[]byte)
	var head []byte
	if hdr == nil {
		head = transport.AppendJSONHead((*hp)[:0], status, p.extra, len(body), false, now)
	} else {
		head = transport.AppendHead((*hp)[:0], status, hdr, p.extra, len(body), false, now)
	}
	p.sink.Finish(head, body, now)
	*hp = head
	bufPool.Put(hp)
}

// settle does what follows a claimed poll's reply: it leaves the hub and
// the wheel, and is accounted for. The poll stays claimed until then, so
// no one else answers it meanwhile.
func (p *parked) settle(outcome PollOutcome, status, n int, now time.Time) {
	s := p.s
	p.state.Store(stDone)
	s.hub.Unregister(&p.w)
	s.wheel.remove(p)
	if p.unsent {
		outcome = OutcomeCancelled
	}
	held := now.Sub(p.started())
	s.endPoll(outcome, held, p.client)
	if p.log != nil {
		st := status
		if outcome == OutcomeCancelled {
			st = 499
		}
		s.accessLog(p.requestID(), p.log, st, int64(n), held)
	}
}

// rearm returns a claimed poll whose read found nothing to waiting,
// unless it must end now; a wake-up that came while it was claimed makes
// it read again.
func (p *parked) rearm() {
	s := p.s
	for {
		switch {
		case p.gone.Load():
			p.end(OutcomeCancelled, 0, nil, nil)
			return
		case s.draining.Load():
			p.shutdown()
			return
		case time.Now().UnixNano() >= p.deadline:
			p.timeout()
			return
		}
		if p.state.CompareAndSwap(stClaimed, stHeld) {
			return
		}
		p.state.Store(stClaimed)
		c := p.collector()
		err := c.collect(context.Background(), s.broker)
		if err != nil {
			p.brokerFailed(err)
			return
		}
		if !c.empty() {
			size := c.replySize()
			if !s.reserveReply(&c, size) {
				p.fail(errRepliesFull)
				return
			}
			body, bp := replyBuffer(size)
			body = appendReply(body, &c, false, 0)
			s.m.Delivered(time.Now(), c.out)
			for _, g := range c.gaps {
				s.m.GapReported(g.Reason)
			}
			p.end(OutcomeMessages, http.StatusOK, nil, body)
			s.budget.Add(-size)
			putReplyBuffer(body, bp)
			return
		}
	}
}

// collector returns a collector over the poll's topics and positions; its
// reads advance the poll's positions.
func (p *parked) collector() collector {
	return collector{topics: p.topics, pos: p.pos, limit: int(p.limit), maxBytes: p.s.cfg.maxReplyBytes}
}

// brokerFailed answers a claimed poll whose read failed.
func (p *parked) brokerFailed(err error) {
	p.s.m.BrokerError("read")
	var e *Error
	if !errors.As(err, &e) {
		p.s.log.LogAttrs(context.Background(), slog.LevelError, "broker error",
			slog.String("op", "read"), slog.String("error", err.Error()))
		e = &Error{Code: CodeUnavailable, Message: "broker unavailable", RetryAfter: ErrUnavailable.RetryAfter}
	}
	p.fail(e)
}

// deliver is the hub's DeliverFunc: it answers the claimed polls off the
// publisher's goroutine, so a publish never waits for its fan-out.
func (s *Server) deliver(batch []hub.Parked) {
	if r, ok := batch[0].(*parked).sink.(transport.Runner); ok {
		r.Run(func() { s.deliverBatch(batch) })
		return
	}
	go s.deliverBatch(batch)
}

// fanoutGate is the size of a group of polls whose replies go out before
// any new poll starts.
const fanoutGate = 256

// gate holds back the start of new parked polls while a large fan-out's
// replies are being written, as an event loop that writes every waiter
// of a publish before it reads the next request would: on a busy core the
// re-polls of the first subscribers served would otherwise share it with
// the writes to the rest, and the last subscriber would get its message
// later. It covers only the writes, which never block, so a slow broker
// read cannot hold polls back. Measured on one core, 19,000 subscribers:
// time until all received 311 -> 248 ms (docs/performance.md).
type gate struct {
	active atomic.Int32
	mu     sync.Mutex
	done   chan struct{} // closed when active returns to 0
}

func (g *gate) enter() {
	g.mu.Lock()
	if g.active.Add(1) == 1 {
		g.done = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *gate) leave() {
	g.mu.Lock()
	if g.active.Add(-1) == 0 {
		close(g.done)
	}
	g.mu.Unlock()
}

// wait returns once no large fan-out is being written: at once, with an
// atomic load, when none is.
func (g *gate) wait() {
	if g.active.Load() == 0 {
		return
	}
	g.mu.Lock()
	done, n := g.done, g.active.Load()
	g.mu.Unlock()
	if n > 0 {
		<-done
	}
}

// deliverBatch reads once for each group of polls with the same topics
// and positions, encodes that reply once, and writes the same bytes to
// every poll of the group.
func (s *Server) deliverBatch(batch []hub.Parked) {
	// Most often every poll of a batch is at the same place (subscribers
	// that keep up with one topic): one group, found with no key.
	all := make([]*parked, len(batch))
	same := true
	for i, b := range batch {
		p := b.(*parked)
		all[i] = p
		if same && i > 0 {
			q := all[0]
			same = p.limit == q.limit && slices.Equal(p.topics, q.topics) && slices.Equal(p.pos, q.pos)
		}
	}
	if same {
		s.deliverGroup(all)
		return
	}
	groups := make(map[string][]*parked)
	var order []string
	var key []byte
	for _, p := range all {
		c := p.collector()
		key = c.appendKey(key[:0])
		g, ok := groups[string(key)]
		if !ok {
			order = append(order, string(key))
		}
		groups[string(key)] = append(g, p)
	}
	for _, k := range order {
		s.deliverGroup(groups[k])
	}
}

// appendKey appends what makes two polls' replies identical: topics,
// positions and limit.
func (c *collector) appendKey(b []byte) []byte {
	b = strconv.AppendInt(b, int64(c.limit), 10)
	for i, t := range c.topics {
		b = append(b, 0)
		b = append(b, t...)
		b = append(b, 0)
		b = strconv.AppendUint(b, c.pos[i].Epoch, 36)
		b = append(b, ':')
		b = strconv.AppendUint(b, c.pos[i].Seq, 36)
	}
	return b
}

func (s *Server) deliverGroup(g []*parked) {
	lead := g[0]
	c := collector{topics: lead.topics, pos: slices.Clone(lead.pos), limit: int(lead.limit), maxBytes: s.cfg.maxReplyBytes}
	if err := c.collect(context.Background(), s.broker); err != nil {
		for _, p := range g {
			p.brokerFailed(err)
		}
		return
	}
	if c.empty() {
		for _, p := range g {
			p.rearm()
		}
		return
	}
	size := c.replySize()
	if !s.reserveReply(&c, size) {
		for _, p := range g {
			p.fail(errRepliesFull)
		}
		return
	}
	body, bp := replyBuffer(size)
	body = appendReply(body, &c, false, 0)
	now := time.Now()
	// Every reply is written first, and the bookkeeping (hub, wheel,
	// metrics) done after: the last subscriber of a large group gets its
	// message that much sooner.
	gated := len(g) >= fanoutGate
	if gated {
		s.fanout.enter()
	}
	for _, p := range g {
		p.send(http.StatusOK, nil, body, now)
	}
	if gated {
		s.fanout.leave()
	}
	s.budget.Add(-size)
	for _, p := range g {
		s.m.Delivered(now, c.out)
		for _, gp := range c.gaps {
			s.m.GapReported(gp.Reason)
		}
		p.settle(OutcomeMessages, http.StatusOK, len(body), now)
	}
	putReplyBuffer(body, bp)
}

// expire is the wheel's callback for polls whose deadline has come.
func (p *parked) expire() bool {
	if p.state.CompareAndSwap(stHeld, stClaimed) {
		p.timeout()
		return true
	}
	return false
}

// shutdownParked answers every parked poll; Shutdown calls it.
func (s *Server) shutdownParked() {
	for _, p := range s.wheel.all() {
		if p.state.CompareAndSwap(stHeld, stClaimed) {
			p.shutdown()
		}
	}
}

// The deadline wheel: parked polls sorted into slots of wheelTick by
// deadline, over a few shards each with its own lock and one timer that
// runs only while the shard holds polls.
const (
	wheelTick   = 50 * time.Millisecond
	wheelShards = 4
)

type wheel struct {
	span   time.Duration // the longest hold
	shards [wheelShards]wheelShard
	next   atomic.Uint32
}

type wheelShard struct {
	mu    sync.Mutex
	slots [][]*parked // a ring: slot i holds deadlines in ticks ≡ i; nil for a poll removed
	n     int         // polls held
	done  int64       // every tick up to this one has been expired
	timer *time.Timer
}

func tickOf(ns int64) int64 { return ns / int64(wheelTick) }

// untilTick is how long after ns the next tick begins. Every shard's timer
// fires at a tick's start, so that one wake-up of the runtime serves them
// all, not one each.
func untilTick(ns int64) time.Duration {
	return time.Duration(int64(wheelTick) - ns%int64(wheelTick))
}

func (w *wheel) add(p *parked) {
	sh := &w.shards[w.next.Add(1)%wheelShards]
	sh.mu.Lock()
	p.home = sh
	if sh.slots == nil {
		sh.slots = make([][]*parked, int(w.span/wheelTick)+3)
	}
	if sh.n == 0 {
		now := time.Now().UnixNano()
		sh.done = tickOf(now) - 1
		if sh.timer == nil {
			sh.timer = time.AfterFunc(untilTick(now), sh.fire)
		} else {
			sh.timer.Reset(untilTick(now))
		}
	}
	sh.insert(p)
	sh.mu.Unlock()
}

// insert files p by its deadline; a deadline already past goes into the
// next tick's slot.
func (sh *wheelShard) insert(p *parked) {
	t := max(tickOf(p.deadline), sh.done+1)
	i := int32(t % int64(len(sh.slots)))
	p.inWheel, p.wslot, p.wix = true, i, int32(len(sh.slots[i]))
	if sh.slots[i] == nil {
		// A slot keeps its array from one revolution to the next; its
		// first is made room for 16 polls at once rather than grown
		// from 1, which took five allocations for a slot's first 16.
		sh.slots[i] = make([]*parked, 0, 16)
	}
	sh.slots[i] = append(sh.slots[i], p)
	sh.n++
}

func (w *wheel) remove(p *parked) {
	sh := p.home // set before the poll could be claimed
	sh.mu.Lock()
	if p.inWheel {
		// A hole, not a swap with the slot's last poll: that would touch
		// another poll's record, most often not in cache. The slot is
		// emptied when its tick passes, so holes last one revolution.
		sh.slots[p.wslot][p.wix] = nil
		sh.n--
		p.inWheel = false
	}
	sh.mu.Unlock()
}

// fire expires the polls of every tick that has wholly passed: a poll
// is answered within one tick after its deadline.
func (sh *wheelShard) fire() {
	last := tickOf(time.Now().UnixNano()) - 1
	var due []*parked
	sh.mu.Lock()
	for t := sh.done + 1; t <= last && t <= sh.done+int64(len(sh.slots)); t++ {
		i := t % int64(len(sh.slots))
		for _, p := range sh.slots[i] {
			if p != nil {
				p.inWheel = false
				due = append(due, p)
				sh.n--
			}
		}
		clear(sh.slots[i])
		sh.slots[i] = sh.slots[i][:0]
	}
	sh.done = max(sh.done, last)
	sh.mu.Unlock()
	for _, p := range due {
		if !p.expire() {
			// Being answered: look again next tick unless it has ended.
			sh.mu.Lock()
			if p.state.Load() != stDone {
				sh.insert(p)
			}
			sh.mu.Unlock()
		}
	}
	sh.mu.Lock()
	if sh.n > 0 {
		sh.timer.Reset(untilTick(time.Now().UnixNano()))
	}
	sh.mu.Unlock()
}

// all returns every poll in the wheel.
func (w *wheel) all() []*parked {
	var out []*parked
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		for _, s := range sh.slots {
			for _, p := range s {
				if p != nil {
					out = append(out, p)
				}
			}
		}
		sh.mu.Unlock()
	}
	return out
}
