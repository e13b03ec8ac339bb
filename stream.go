package longpoll

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/longpoll/longpoll/internal/cursor"
	"github.com/longpoll/longpoll/internal/transport"
	"github.com/longpoll/longpoll/protocol"
)

// Server-sent events: GET /v1/stream (docs/protocol.md, "Stream") serves
// the topics of a poll as one response that does not end, an event per
// message and per gap, each with the cursor after it as its id, so that
// a stream and a poll resume from each other's positions.

// Defaults of the stream's settings.
const (
	DefaultStreamPing = 15 * time.Second
	DefaultMaxStream  = 5 * time.Minute
)

// WithStreamPing sets how often an idle stream sends a comment line, so
// that proxies do not time it out.
func WithStreamPing(d time.Duration) Option {
	return func(c *config) error {
		return positive("stream ping", d, func(v time.Duration) { c.streamPing = v })(c)
	}
}

// WithMaxStream sets how long a stream lasts before the server ends it
// (shortened by up to 1/16 at random, as holds are), so that clients
// spread over the nodes again after a deploy; clients reconnect from
// their last event's id.
func WithMaxStream(d time.Duration) Option {
	return func(c *config) error {
		return positive("max stream", d, func(v time.Duration) { c.maxStream = v })(c)
	}
}

// serveStream serves GET /v1/stream: the checks of a poll, then events
// until the stream's time runs out, the client leaves, its credential
// ends or the node drains.
//
// On an event-loop transport, whose sink carries streams
// (transport.Streamer), the stream is parked as a poll is, and returned;
// otherwise it is served on this goroutine, and nil returned.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, rid string, pr *Principal, sink transport.Sink) *parked {
	req, e := s.parsePollQuery(r.URL.RawQuery)
	if e != nil {
		s.writeError(w, rid, e)
		return nil
	}
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		entries, err := cursor.Decode(last, func(t string) bool { return ValidateTopic(t) == nil }, req.topics...)
		if err != nil {
			s.writeError(w, rid, &Error{Code: CodeInvalidCursor, Message: "Last-Event-ID: " + err.Error() + "; send the id of the last event received unchanged"})
			return nil
		}
		req.cursor = entries
	}
	for _, t := range req.topics {
		if !canSubscribe(pr, t) {
			s.writeError(w, rid, forbidden(t))
			return nil
		}
	}
	if pr != nil && !pr.Expires.IsZero() && !time.Now().Before(pr.Expires) {
		s.writeError(w, rid, errTokenExpired)
		return nil
	}
	client, err := s.startHeld(r, pr)
	if err != nil {
		s.writeError(w, rid, err)
		return nil
	}
	start := time.Now()
	if out, ok := sink.(transport.Streamer); ok {
		p, outcome := s.streamParked(w, r, rid, req, pr, sink, out, start, client)
		if p != nil {
			return p
		}
		s.endPoll(outcome, time.Since(start), client)
		return nil
	}
	outcome := s.stream(w, r, req, pr)
	s.endPoll(outcome, time.Since(start), client)
	return nil
}

// startHeld counts a poll or stream about to be held: in flight for
// shutdown, against the client's limits and against --max-held-polls. It
// returns the client's limit key ("" when no limit counts it), or the
// error to answer with, having counted nothing.
func (s *Server) startHeld(r *http.Request, pr *Principal) (string, error) {
	if !s.enter() {
		return "", &Error{Code: CodeShuttingDown, Message: "server is shutting down; poll another node or retry"}
	}
	if s.drained.Load() {
		s.leave()
		return "", errDrainingNode
	}
	var client string // set when a per-client limit counts this poll
	// Burst sizes alone limit nothing.
	if l := s.cfg.limits; l.PollsPerSecond > 0 || l.MaxHeldPolls > 0 {
		client = s.clientID(r, pr)
		if ok, retry := s.limit.StartPoll(client); !ok {
			s.leave()
			return "", &Error{Code: CodeRateLimited, Message: "too many polls from this client; retry later", RetryAfter: retry}
		}
	}
	if n := s.polls.Add(1); n > int64(s.cfg.maxHeldPolls) {
		s.polls.Add(-1)
		if client != "" {
			s.limit.EndPoll(client)
		}
		s.leave()
		return "", &Error{Code: CodeOverloaded, Message: "too many polls held; retry later"}
	}
	s.m.PollsHeld(1)
	return client, nil
}

// stream writes the events of req's topics to w until the stream ends,
// and returns its outcome.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req *pollRequest, pr *Principal) PollOutcome {
	ctx := r.Context()
	bctx := context.WithoutCancel(ctx)
	var c collector
	c.init(req, nil)
	c.maxBytes = s.live.Load().maxReplyBytes
	kick := s.kicked()
	wt := s.hub.Register(c.topics)
	defer s.hub.Unregister(wt)
	if err := s.startPositions(bctx, &c, req); err != nil {
		s.brokerError(w, r, "", "stat", err)
		return OutcomeError
	}

	life := hold(s.cfg.maxStream)
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(life + s.cfg.writeMargin))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ew := &eventWriter{w: w, rc: rc, margin: s.cfg.writeMargin}
	ew.buf = s.appendRetryField(ew.buf)
	if !ew.flush() {
		return OutcomeCancelled
	}

	end := time.NewTimer(life)
	defer end.Stop()
	ping := time.NewTicker(s.cfg.streamPing)
	defer ping.Stop()
	var expiry <-chan time.Time
	if pr != nil && !pr.Expires.IsZero() {
		t := time.NewTimer(time.Until(pr.Expires))
		defer t.Stop()
		expiry = t.C
	}
	outcome := OutcomeTimeout
	before := make([]Position, len(c.pos))
	for {
		if s.revoked(pr) {
			ew.fail(s, errTokenRevoked)
			return OutcomeError
		}
		if s.drained.Load() {
			ew.close("drain", spread(s.live.Load().retryAfter))
			return OutcomeShutdown
		}
		copy(before, c.pos)
		if err := c.collect(bctx, s.broker); err != nil {
			s.m.BrokerError("read")
			ew.fail(s, &Error{Code: CodeUnavailable, Message: "broker unavailable", RetryAfter: ErrUnavailable.RetryAfter})
			return OutcomeError
		}
		if !c.empty() {
			size := c.replySize()
			if !s.reserveReply(&c, size) {
				// The reply budget is spent on clients that do not read:
				// this one resumes from its last id.
				ew.fail(s, errRepliesFull)
				return OutcomeError
			}
			ew.events(&c, before)
			ok := ew.flush()
			s.budget.Add(-size)
			if !ok {
				return OutcomeCancelled
			}
			s.m.Delivered(time.Now(), c.out)
			for _, g := range c.gaps {
				s.m.GapReported(g.Reason)
			}
			outcome = OutcomeMessages
			// A batch ends at the limit or at the reply bound with more
			// to come: read again at once, until a read finds nothing.
			continue
		}
		select {
		case <-wt.C:
		case <-kick:
			kick = s.kicked()
		case <-ping.C:
			ew.buf = append(ew.buf, pingComment...)
			if !ew.flush() {
				return OutcomeCancelled
			}
		case <-expiry:
			ew.fail(s, errTokenExpired)
			return OutcomeError
		case <-end.C:
			ew.close("max_stream", 0)
			return outcome
		case <-s.done:
			ew.close("shutdown", spread(s.live.Load().retryAfter))
			return OutcomeShutdown
		case <-ctx.Done():
			return OutcomeCancelled
		}
	}
}

// pingComment is what an idle stream sends every --stream-ping.
const pingComment = ": ping\n\n"

// eventWriter writes a stream's events: it gathers them in buf and writes
// and flushes them at once, each write bounded by a deadline so that a
// client that stops reading is cut.
type eventWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	margin time.Duration
	buf    []byte
	broken bool
}

// flush writes what was gathered; it reports false once a write failed.
func (ew *eventWriter) flush() bool {
	if ew.broken {
		return false
	}
	_ = ew.rc.SetWriteDeadline(time.Now().Add(ew.margin))
	if _, err := ew.w.Write(ew.buf); err != nil {
		ew.broken = true
	} else if err := ew.rc.Flush(); err != nil {
		ew.broken = true
	}
	ew.buf = ew.buf[:0]
	return !ew.broken
}

// events gathers the events of what c collected from the positions
// before.
func (ew *eventWriter) events(c *collector, before []Position) {
	ew.buf = appendEvents(ew.buf, c, before)
}

// appendEvents appends the events of what c collected from the
// positions before (which it changes): each gap, then each message,
// with the cursor after it.
func appendEvents(buf []byte, c *collector, before []Position) []byte {
	pos := before
	// A topic's messages of this batch belong to its epoch after the
	// collect; a gap moves its topic to just before them, or to where the
	// collect left it when none follow.
	for _, g := range c.gaps {
		i := indexOf(c.topics, g.Topic)
		pos[i] = c.pos[i]
		for _, m := range c.out {
			if m.Topic == g.Topic {
				pos[i] = Position{Epoch: c.pos[i].Epoch, Seq: m.Seq - 1}
				break
			}
		}
		buf = append(buf, "event: gap\nid: "...)
		buf = appendCursor(buf, c.topics, pos)
		buf = append(buf, "\ndata: "...)
		b, _ := json.Marshal(protocol.ReplyGap{Topic: g.Topic, Reason: g.Reason, Missed: gapMissed(g)})
		buf = append(buf, b...)
		buf = append(buf, "\n\n"...)
	}
	for k := range c.out {
		m := &c.out[k]
		i := indexOf(c.topics, m.Topic)
		pos[i] = Position{Epoch: c.pos[i].Epoch, Seq: m.Seq}
		buf = append(buf, "event: message\nid: "...)
		buf = appendCursor(buf, c.topics, pos)
		buf = append(buf, "\ndata: "...)
		buf = appendMessage(buf, m)
		buf = append(buf, "\n\n"...)
	}
	return buf
}

// gapMissed returns the missed count a gap object carries: none for a
// reset, whose count is unknown.
func gapMissed(g Gap) uint64 {
	if g.Reason == GapExpired || g.Reason == GapCorrupt {
		return g.Missed
	}
	return 0
}

func indexOf(topics []string, t string) int {
	for i, x := range topics {
		if x == t {
			return i
		}
	}
	return -1
}

// appendCursor appends the cursor of topics at pos.
func appendCursor(buf []byte, topics []string, pos []Position) []byte {
	entries := make([]cursor.Entry, len(topics))
	for i, t := range topics {
		entries[i] = cursor.Entry{Topic: t, Epoch: pos[i].Epoch, Seq: pos[i].Seq}
	}
	return cursor.Append(buf, entries)
}

// fail ends the stream with an error event carrying the error object a
// JSON error reply would.
func (ew *eventWriter) fail(s *Server, err *Error) {
	ew.buf = s.appendErrorEvent(ew.buf, err)
	ew.flush()
}

// appendErrorEvent appends the event that ends a stream with err: its
// data is the error object a JSON error reply would carry. The refusal
// is counted.
func (s *Server) appendErrorEvent(buf []byte, err *Error) []byte {
	var body protocol.ErrorReply
	body.Error.Code = err.Code
	body.Error.Message = err.Message
	if status, _ := protocol.Status(err.Code); retryable(status) {
		base := err.RetryAfter
		if base <= 0 {
			base = s.live.Load().retryAfter
		}
		body.Error.RetryAfterMS = spread(base).Milliseconds()
	}
	if s.ma.refused != nil {
		if why, ok := refusalOf(err.Code); ok {
			s.ma.refused.Refused(why)
		}
	}
	b, _ := json.Marshal(&body)
	buf = append(buf, "event: error\ndata: "...)
	buf = append(buf, b...)
	return append(buf, "\n\n"...)
}

// close ends the stream with an event that tells the client to
// reconnect (elsewhere, after retry when it is positive).
func (ew *eventWriter) close(reason string, retry time.Duration) {
	ew.buf = appendCloseEvent(ew.buf, reason, retry)
	ew.flush()
}

// appendCloseEvent appends the event that ends a stream for reason,
// advising a reconnection after retry when it is positive.
func appendCloseEvent(buf []byte, reason string, retry time.Duration) []byte {
	buf = append(buf, `event: close`+"\n"+`data: {"reason":"`...)
	buf = append(buf, reason...)
	buf = append(buf, '"')
	if retry > 0 {
		buf = append(buf, `,"retry_after_ms":`...)
		buf = strconv.AppendInt(buf, retry.Milliseconds(), 10)
	}
	return append(buf, "}\n\n"...)
}

// appendRetryField appends the stream's first lines: the advised
// reconnect delay, spread as Retry-After is.
func (s *Server) appendRetryField(buf []byte) []byte {
	buf = append(buf, "retry: "...)
	buf = strconv.AppendInt(buf, spread(s.live.Load().retryAfter).Milliseconds(), 10)
	return append(buf, "\n\n"...)
}
