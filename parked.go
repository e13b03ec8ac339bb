package longpoll

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/internal/hub"
	"github.com/longpoll/longpoll/internal/transport"
	"github.com/longpoll/longpoll/internal/wheel"
)

// Parked polls: an event-loop transport (internal/eventloop) hands a poll
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

// parked is one parked poll. Its fields are ordered to keep it small:
// every held poll has one.
type parked struct {
	s     *Server
	state atomic.Int32
	gone  atomic.Bool // the client left
	// expires: at the deadline the poll is answered 401 token_expired,
	// not with a timeout.
	expires bool
	unsent  bool // its client was gone when its reply was due (send)
	gzip    bool // its client takes gzip-compressed replies
	close   bool // its request asked to close the connection after the reply
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
	extra         []byte        // the reply's header lines set before parking (X-Request-Id, CORS)
	start         time.Duration // since monoBase
	client        string        // the per-client limit's key, when one counts this poll
	pr            *Principal    // who polls; nil without an Authenticator
	// wheel holds the poll's deadline, when its hold ends, and the
	// deadline wheel's bookkeeping.
	wheel wheel.Entry
	log   *parkLog     // nil unless access logging is on
	st    *streamState // a stream's (streampark.go); nil for a poll
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
	p := &parked{s: s, sink: sink, start: start.Sub(monoBase), client: client, expires: expires, pr: pr, gzip: req.gzip, close: r.Close}
	c := p.newCollector(req)
	if err := s.startPositions(ctx, c, req); err != nil {
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
	p.keepHeader(w, rid)
	if s.log.Enabled(ctx, slog.LevelInfo) {
		p.log = &parkLog{method: r.Method, path: r.URL.Path, remote: r.RemoteAddr}
	}
	p.wheel.Deadline = start.Add(d).UnixNano() // the hold counts from the poll's start
	s.hub.RegisterParkedIn(&p.w, c.topics, p)
	s.wheel.Add(p)
	for {
		err := c.collect(ctx, s.broker)
		if err != nil || !c.empty() {
			p.state.Store(stDone)
			s.hub.Unregister(&p.w)
			s.wheel.Remove(p)
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
	p.endIfDue()
	return p, ""
}

// endIfDue answers a poll just parked that must end now: the server
// began shutting down, or drained, or revoked its credential, while it
// was being parked (a kick that came before it was held missed it).
func (p *parked) endIfDue() {
	switch {
	case p.s.draining.Load():
		if p.state.CompareAndSwap(stHeld, stClaimed) {
			p.shutdown()
		}
	case p.mustEnd():
		if p.state.CompareAndSwap(stHeld, stClaimed) {
			p.endNow()
		}
	}
}

// newCollector returns a collector for req whose topics and positions
// the record keeps. Strings parsed from the request point into its head:
// a parked poll keeps copies, so that the head can be freed.
func (p *parked) newCollector(req *pollRequest) *collector {
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
	c.maxBytes = p.s.live.Load().maxReplyBytes
	return c
}

// keepHeader keeps the header lines of the reply set so far (its
// X-Request-Id, CORS) in p.extra, rendered, and where rid is among them.
func (p *parked) keepHeader(w http.ResponseWriter, rid string) {
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
		if p.st != nil {
			p.finishStream(nil, OutcomeCancelled)
			return
		}
		p.end(OutcomeCancelled, 0, nil, nil)
	}
}

// Release implements transport.Poll.
// A stream ends, with no event, as under net/http: its client has
// half-closed (a stream is not released for a request behind it).
func (p *parked) Release() {
	if p.state.CompareAndSwap(stHeld, stClaimed) {
		if p.st != nil {
			p.finishStream(nil, OutcomeCancelled)
			return
		}
		p.replyOwn(true, 0, OutcomeTimeout)
	}
}

// timeout answers a claimed poll at the end of its hold.
func (p *parked) timeout() {
	if p.st != nil {
		p.tick()
		return
	}
	if p.expires {
		p.fail(errTokenExpired)
		return
	}
	p.replyOwn(true, 0, OutcomeTimeout)
}

// mustEnd reports whether the poll must be answered now, news or not:
// the node drains (an admin drain), or its credential was revoked.
func (p *parked) mustEnd() bool { return p.s.drained.Load() || p.s.revoked(p.pr) }

// endNow answers a claimed poll that must end: 401 token_revoked for a
// revoked credential, else as at shutdown.
func (p *parked) endNow() {
	if p.s.revoked(p.pr) {
		p.fail(errTokenRevoked)
		return
	}
	p.shutdown()
}

// shutdown answers a claimed poll as the server shuts down.
func (p *parked) shutdown() {
	if p.st != nil {
		p.shutdownStream()
		return
	}
	p.replyOwn(false, spread(p.s.live.Load().retryAfter), OutcomeShutdown)
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
	if p.st != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Code: CodeUnavailable, Message: "broker unavailable", RetryAfter: ErrUnavailable.RetryAfter}
		}
		p.failStream(e)
		return
	}
	var w transport.Response
	p.s.writeError(&w, p.requestID(), err)
	p.end(OutcomeError, w.Status, w.Header(), w.Body)
}

// end finishes a claimed poll: it writes the reply (hdr holds its headers
// beyond the fixed JSON ones) unless the client is gone, then settles it.
func (p *parked) end(outcome PollOutcome, status int, hdr http.Header, body []byte) {
	now := time.Now()
	p.send(status, hdr, body, false, now)
	p.settle(outcome, status, len(body), now)
}

// send writes a claimed poll's reply, unless the client is gone; gz says
// its body is gzip-compressed.
func (p *parked) send(status int, hdr http.Header, body []byte, gz bool, now time.Time) {
	if p.gone.Load() {
		p.unsent = true
		return
	}
	hp := bufPool.Get().(*[]byte)
	var head []byte
	if hdr == nil {
		head = transport.AppendJSONHead((*hp)[:0], status, p.extra, len(body), gz, p.close, now)
	} else {
		head = transport.AppendHead((*hp)[:0], status, hdr, p.extra, len(body), p.close, now)
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
	s.wheel.Remove(p)
	if p.unsent {
		outcome = OutcomeCancelled
	}
	held := now.Sub(p.started())
	s.endPoll(outcome, held, p.client)
	if !p.unsent && s.ma.req != nil {
		route := RoutePoll
		if p.st != nil {
			route = RouteStream
		}
		s.ma.req.RequestServed(route, status, n, 0)
	}
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
	if p.st != nil {
		p.rearmStream()
		return
	}
	s := p.s
	for {
		switch {
		case p.gone.Load():
			p.end(OutcomeCancelled, 0, nil, nil)
			return
		case s.draining.Load():
			p.shutdown()
			return
		case p.mustEnd():
			p.endNow()
			return
		case time.Now().UnixNano() >= p.wheel.Deadline:
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
			out, gz := body, false
			if p.gzip && len(body) >= s.cfg.gzipMin {
				if z := compress(body); z != nil {
					out, gz = z, true
				}
			}
			now := time.Now()
			p.send(http.StatusOK, nil, out, gz, now)
			p.settle(OutcomeMessages, http.StatusOK, len(out), now)
			s.budget.Add(-size)
			putReplyBuffer(body, bp)
			return
		}
	}
}

// collector returns a collector over the poll's topics and positions; its
// reads advance the poll's positions.
func (p *parked) collector() collector {
	return collector{topics: p.topics, pos: p.pos, limit: int(p.limit), maxBytes: p.s.live.Load().maxReplyBytes}
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

// WheelEntry implements wheel.Item.
func (p *parked) WheelEntry() *wheel.Entry { return &p.wheel }

// Ended implements wheel.Item.
func (p *parked) Ended() bool { return p.state.Load() == stDone }

// Expire implements wheel.Item: the poll's deadline has come.
func (p *parked) Expire() bool {
	if p.state.CompareAndSwap(stHeld, stClaimed) {
		p.timeout()
		return true
	}
	return false
}

// shutdownParked answers every parked poll; Shutdown calls it.
func (s *Server) shutdownParked() {
	for _, p := range s.wheel.All() {
		if p.state.CompareAndSwap(stHeld, stClaimed) {
			p.shutdown()
		}
	}
}
