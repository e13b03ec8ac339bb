package longpoll

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/longpoll/longpoll/internal/transport"
)

// Parked streams: on an event-loop transport whose sink carries streams
// (transport.Streamer), GET /v1/stream is parked as a poll is, in the
// same record, the same hub and the same deadline wheel, with no
// goroutine and no timer of its own. A publish's wake-up claims it and
// writes its events; its wheel deadline is its next ping, the end of its
// time or its credential's expiry, whichever comes first, and is set
// again after each. The record's states are a poll's, except that a
// stream goes back from claimed to held after each delivery, until it
// ends.

// streamState is what a parked stream keeps beside its record.
type streamState struct {
	out transport.Streamer
	// When, in Unix nanoseconds: the stream ends (--max-stream, less
	// jitter), it pings next, its credential expires (0: never).
	life, ping, expires int64
	before              []Position // the positions before a batch, for its events' ids
	n                   int64      // bytes of the body written
	sent                bool       // a message or gap went out
	// blocked, in Unix nanoseconds: since when output has waited for the
	// client, so that no events are written (0: none waits). Under the
	// claim.
	blocked int64
}

// next returns the stream's next wheel deadline: the soonest of its
// times, and at most span from now (the wheel's reach).
func (st *streamState) next(now int64, span, margin time.Duration) int64 {
	d := min(st.ping, st.life)
	if st.expires != 0 {
		d = min(d, st.expires)
	}
	if st.blocked != 0 {
		d = min(d, st.blocked+int64(margin))
	}
	return min(d, now+int64(span))
}

// streamParked starts a stream on the transport's sink, and parks it
// once a read finds nothing. It returns the record, which from then on
// answers itself (perhaps before this returns), or nil and the outcome
// when it answered w with an error before the stream began.
func (s *Server) streamParked(w http.ResponseWriter, r *http.Request, rid string, req *pollRequest, pr *Principal, sink transport.Sink, out transport.Streamer, start time.Time, client string) (*parked, PollOutcome) {
	ctx := r.Context()
	p := &parked{s: s, sink: sink, start: start.Sub(monoBase), client: client, pr: pr, close: r.Close, st: &streamState{out: out}}
	c := p.newCollector(req)
	if err := s.startPositions(ctx, c, req); err != nil {
		s.brokerError(w, r, rid, "stat", err)
		return nil, OutcomeError
	}
	p.keepHeader(w, rid)
	if s.log.Enabled(ctx, slog.LevelInfo) {
		p.log = &parkLog{method: r.Method, path: r.URL.Path, remote: r.RemoteAddr}
	}
	p.topics, p.pos, p.limit = c.topics, c.pos, int32(c.limit)
	st := p.st
	st.before = make([]Position, len(p.pos))
	now := time.Now()
	st.life = now.Add(hold(s.cfg.maxStream)).UnixNano()
	st.ping = now.Add(s.cfg.streamPing).UnixNano()
	if pr != nil && !pr.Expires.IsZero() {
		st.expires = pr.Expires.UnixNano()
	}
	// From here on the reply is the stream: errors are events.
	bp := bufPool.Get().(*[]byte)
	head := transport.AppendStreamHead((*bp)[:0], p.extra, p.close, now)
	part := s.appendRetryField(nil)
	head = transport.AppendChunk(head, part)
	st.n += int64(len(part))
	ok := out.Write(head, p.behind())
	*bp = head
	bufPool.Put(bp)
	if !ok {
		p.gone.Store(true)
	}
	p.wheel.Deadline = st.next(now.UnixNano(), s.wheel.Span, s.cfg.writeMargin)
	s.hub.RegisterParkedIn(&p.w, p.topics, p)
	s.wheel.Add(p)
	for {
		if p.gone.Load() {
			p.finishStream(nil, OutcomeCancelled)
			return p, ""
		}
		if !p.pump() {
			return p, "" // it has ended
		}
		if p.state.CompareAndSwap(stStarting, stHeld) {
			break
		}
		p.state.Store(stStarting) // woken while reading: read again
	}
	p.endIfDue()
	return p, ""
}

// pump writes the events of what the stream's topics hold after its
// positions, batch after batch, until a read finds nothing or output
// waits for the client (the transport says when it has gone: Drained).
// It reports false when the stream has ended: its client gone, or a read
// that failed or the reply budget spent, answered with an error event.
// The caller holds the claim.
func (p *parked) pump() bool {
	s := p.s
	st := p.st
	for {
		if st.out.Pending() > 0 {
			p.block()
			return true
		}
		st.blocked = 0
		copy(st.before, p.pos)
		c := p.collector()
		if err := c.collect(context.Background(), s.broker); err != nil {
			p.brokerFailed(err)
			return false
		}
		if c.empty() {
			return true
		}
		size := c.replySize()
		if !s.reserveReply(&c, size) {
			// The reply budget is spent on clients that do not read:
			// this one resumes from its last id.
			p.fail(errRepliesFull)
			return false
		}
		bp := bufPool.Get().(*[]byte)
		events := appendEvents((*bp)[:0], &c, st.before)
		ok := p.writePart(events)
		*bp = events
		bufPool.Put(bp)
		s.budget.Add(-size)
		if !ok {
			p.finishStream(nil, OutcomeCancelled)
			return false
		}
		p.delivered(&c, time.Now())
	}
}

// delivered counts what a batch delivered to the stream.
func (p *parked) delivered(c *collector, now time.Time) {
	p.st.sent = true
	p.s.m.Delivered(now, c.out)
	for _, g := range c.gaps {
		p.s.m.GapReported(g.Reason)
	}
}

// writePart writes part of the stream's body as one chunk; it reports
// false, and marks the client gone, when the connection is closed.
func (p *parked) writePart(part []byte) bool {
	if p.gone.Load() {
		return false
	}
	bp := bufPool.Get().(*[]byte)
	chunk := transport.AppendChunk((*bp)[:0], part)
	ok := p.writeChunk(chunk, len(part))
	*bp = chunk
	bufPool.Put(bp)
	return ok
}

// writeChunk writes a chunk already framed, of n bytes of the body.
func (p *parked) writeChunk(chunk []byte, n int) bool {
	if p.gone.Load() || !p.st.out.Write(chunk, p.behind()) {
		p.gone.Store(true)
		return false
	}
	p.st.n += int64(n)
	return true
}

// behind is how much of a stream's output may wait in the process for
// its client before the client counts as fallen behind and is cut: two
// replies' worth (--max-reply-bytes). A stream writes no events while
// output waits (pump), so this bounds only what its pings and last
// event add to one batch.
func (p *parked) behind() int { return 2 * p.s.live.Load().maxReplyBytes }

// finishStream ends a claimed stream: the last part (an error or close
// event, or nothing) and the body's end go out unless the client is
// gone, and the stream is settled.
func (p *parked) finishStream(last []byte, outcome PollOutcome) {
	now := time.Now()
	if outcome == OutcomeTimeout && p.st.sent {
		outcome = OutcomeMessages
	}
	if p.gone.Load() {
		p.unsent = true
	} else {
		bp := bufPool.Get().(*[]byte)
		b := append(transport.AppendChunk((*bp)[:0], last), transport.LastChunk...)
		p.st.n += int64(len(last))
		p.sink.Finish(nil, b, now)
		*bp = b
		bufPool.Put(bp)
	}
	p.settle(outcome, http.StatusOK, int(p.st.n), now)
}

// failStream ends a claimed stream with an error event.
func (p *parked) failStream(err *Error) {
	p.finishStream(p.s.appendErrorEvent(nil, err), OutcomeError)
}

// closeStream ends a claimed stream with an event that tells its client
// to reconnect, after retry when it is positive.
func (p *parked) closeStream(reason string, retry time.Duration, outcome PollOutcome) {
	p.finishStream(appendCloseEvent(nil, reason, retry), outcome)
}

// shutdownStream ends a claimed stream as its node shuts down or drains:
// its client reconnects elsewhere.
func (p *parked) shutdownStream() {
	reason := "drain"
	if p.s.draining.Load() {
		reason = "shutdown"
	}
	p.closeStream(reason, spread(p.s.live.Load().retryAfter), OutcomeShutdown)
}

// tick does what a claimed stream's wheel deadline came for: its
// credential's expiry, the end of its time, or a ping; after a ping it
// takes its next deadline and waits again.
func (p *parked) tick() {
	s, st := p.s, p.st
	now := time.Now().UnixNano()
	switch {
	case st.expires != 0 && now >= st.expires:
		p.failStream(errTokenExpired)
		return
	case now >= st.life:
		p.closeStream("max_stream", 0, OutcomeTimeout)
		return
	case st.blocked != 0 && now >= st.blocked+int64(s.cfg.writeMargin) && st.out.Pending() > 0:
		// Its client has taken none of a batch within the write margin,
		// as net/http's write deadline cuts it: it resumes from its last
		// id.
		st.out.Cut()
		p.gone.Store(true)
		p.finishStream(nil, OutcomeCancelled)
		return
	case now >= st.ping:
		if !p.writePart([]byte(pingComment)) {
			p.finishStream(nil, OutcomeCancelled)
			return
		}
		st.ping = now + int64(s.cfg.streamPing)
	}
	if st.blocked != 0 && st.out.Pending() == 0 {
		st.blocked = 0 // taken: its Drained reads again, through the claim
	}
	p.wheel.Deadline = st.next(now, s.wheel.Span, s.cfg.writeMargin)
	s.wheel.Add(p)
	p.rearmStream()
}

// block marks a claimed stream as waiting for its client to take its
// output, and moves its wheel deadline to the end of the write margin.
func (p *parked) block() {
	st := p.st
	if st.blocked != 0 {
		return
	}
	now := time.Now().UnixNano()
	st.blocked = now
	p.s.wheel.Move(p, st.next(now, p.s.wheel.Span, p.s.cfg.writeMargin))
}

// Drained implements transport.Drainer: the output that waited for the
// stream's client is in the socket, and the stream may write again.
func (p *parked) Drained() {
	if p.Claim() { // else whoever holds the claim reads again
		if p.pump() {
			p.rearmStream()
		}
	}
}

// rearmStream returns a claimed stream to waiting, unless it must end
// now; a wake-up that came while it was claimed makes it read again.
func (p *parked) rearmStream() {
	s := p.s
	for {
		switch {
		case p.gone.Load():
			p.finishStream(nil, OutcomeCancelled)
			return
		case s.draining.Load():
			p.shutdownStream()
			return
		case p.mustEnd():
			p.endNow()
			return
		}
		if p.state.CompareAndSwap(stClaimed, stHeld) {
			return
		}
		p.state.Store(stClaimed)
		if !p.pump() {
			return
		}
	}
}

// deliverStreams writes the events of a group of claimed streams at the
// same positions: each batch is read and encoded once, and the same
// bytes written to every stream of the group.
func (s *Server) deliverStreams(g []*parked) {
	lead := g[0]
	before := make([]Position, len(lead.pos))
	if g = unblocked(g); len(g) == 0 {
		return
	}
	lead = g[0]
	for {
		copy(before, lead.pos)
		c := collector{topics: lead.topics, pos: slices.Clone(lead.pos), limit: int(lead.limit), maxBytes: s.live.Load().maxReplyBytes}
		if err := c.collect(context.Background(), s.broker); err != nil {
			for _, p := range g {
				p.brokerFailed(err)
			}
			return
		}
		if c.empty() {
			break
		}
		size := c.replySize()
		if !s.reserveReply(&c, size) {
			for _, p := range g {
				p.fail(errRepliesFull)
			}
			return
		}
		bp := bufPool.Get().(*[]byte)
		events := appendEvents((*bp)[:0], &c, before)
		chunk := transport.AppendChunk(nil, events)
		n := len(events)
		*bp = events
		bufPool.Put(bp)
		gated := len(g) >= fanoutGate
		if gated {
			s.fanout.enter()
		}
		live := g[:0]
		var gone []*parked
		for _, p := range g {
			if p.writeChunk(chunk, n) {
				copy(p.pos, c.pos)
				live = append(live, p)
			} else {
				gone = append(gone, p)
			}
		}
		if gated {
			s.fanout.leave()
		}
		s.budget.Add(-size)
		now := time.Now()
		for _, p := range live {
			p.delivered(&c, now)
		}
		for _, p := range gone {
			p.finishStream(nil, OutcomeCancelled)
		}
		if len(live) == 0 {
			return
		}
		g = live
		// Writes that left output waiting end the group's batches.
		if g = unblocked(g); len(g) == 0 {
			return
		}
		lead = g[0]
	}
	for _, p := range g {
		p.rearmStream()
	}
}

// unblocked returns the streams of g, in place, whose clients have taken
// their last events; the others go on alone, writing nothing until their
// clients take them (pump marks them blocked, Drained resumes them).
func unblocked(g []*parked) []*parked {
	ready := g[:0]
	for _, p := range g {
		if p.st.blocked != 0 || p.st.out.Pending() > 0 {
			if p.pump() {
				p.rearmStream()
			}
			continue
		}
		ready = append(ready, p)
	}
	return ready
}
