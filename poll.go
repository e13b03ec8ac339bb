package longpoll

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/longpoll/longpoll/internal/cursor"
	"github.com/longpoll/longpoll/internal/transport"
)

// servePoll serves a poll. With a sink (an event-loop transport), a poll
// that must wait is parked and returned instead of held by this goroutine;
// nil means the reply is written to w.
func (s *Server) servePoll(w http.ResponseWriter, r *http.Request, rid string, pr *Principal, sink transport.Sink) *parked {
	var (
		req *pollRequest
		e   *Error
	)
	if r.Method == http.MethodPost {
		req, e = s.parsePollBody(w, r)
	} else {
		req, e = s.parsePollQuery(r.URL.RawQuery)
	}
	if e != nil {
		s.writeError(w, rid, e)
		return nil
	}
	for _, t := range req.topics {
		if !canSubscribe(pr, t) {
			s.writeError(w, rid, forbidden(t))
			return nil
		}
	}
	req.gzip = wantsGzip(w, r)
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
	var outcome PollOutcome
	if sink != nil {
		var p *parked
		if p, outcome = s.pollParked(w, r, rid, req, pr, sink, start, client); p != nil {
			return p
		}
	} else {
		outcome = s.poll(w, r, rid, req, pr)
	}
	s.endPoll(outcome, time.Since(start), client)
	return nil
}

// endPoll accounts for a finished poll.
func (s *Server) endPoll(outcome PollOutcome, held time.Duration, client string) {
	s.polls.Add(-1)
	s.m.PollsHeld(-1)
	s.m.PollEnded(outcome, held)
	if client != "" {
		s.limit.EndPoll(client)
	}
	s.leave()
}

// hold returns the timeout shortened by a random amount up to 1/16 of it,
// so that polls that started together do not all end together.
func hold(timeout time.Duration) time.Duration {
	if j := timeout / 16; j > 0 {
		return timeout - rand.N(j+1)
	}
	return timeout
}

// holdFor returns how long a poll that finds nothing waits, and whether
// that is cut short by its credential's expiry. A credential that expires
// during the hold ends it then, with 401 token_expired: the client's
// cursor is unchanged, so nothing is lost.
func holdFor(req *pollRequest, pr *Principal) (d time.Duration, expires bool) {
	d = hold(req.timeout)
	if pr != nil && !pr.Expires.IsZero() {
		if left := time.Until(pr.Expires); left < d {
			d, expires = max(left, time.Millisecond), true
		}
	}
	return d, expires
}

// poll runs one poll: answer at once if messages or gaps are pending, else
// hold until news, the hold's end, the client leaving or shutdown.
func (s *Server) poll(w http.ResponseWriter, r *http.Request, rid string, req *pollRequest, pr *Principal) PollOutcome {
	ctx := r.Context()
	// The broker's calls run to their end even if the request is
	// cancelled: under net/http, a client that ends its input (a
	// half-close) cancels it, and still reads the reply.
	bctx := context.WithoutCancel(ctx)
	d, expires := holdFor(req, pr)
	var c collector
	c.init(req, nil)
	c.maxBytes = s.live.Load().maxReplyBytes
	// The start positions are taken before the registration, and every
	// topic is read after it: a message appended after the Stat is either
	// read or signals the waiter, so none is missed, and a message
	// appended once the poll counts as waiting is always delivered.
	if err := s.startPositions(bctx, &c, req); err != nil {
		s.brokerError(w, r, rid, "stat", err)
		return OutcomeError
	}
	var wake, kick <-chan struct{}
	if d > 0 {
		kick = s.kicked() // before the checks that a kick reports on
		wt := s.hub.Register(c.topics)
		defer s.hub.Unregister(wt)
		wake = wt.C
		// Neither net/http's read nor write timeout may cut the hold.
		rc := http.NewResponseController(w)
		deadline := time.Now().Add(d + s.cfg.writeMargin)
		_ = rc.SetWriteDeadline(deadline)
		_ = rc.SetReadDeadline(deadline)
	}
	if err := c.collect(bctx, s.broker); err != nil {
		s.brokerError(w, r, rid, "read", err)
		return OutcomeError
	}
	if c.empty() {
		if d == 0 {
			s.reply(w, rid, &c, true, 0)
			return OutcomeTimeout
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
	wait:
		for {
			if s.revoked(pr) {
				s.writeError(w, rid, errTokenRevoked)
				return OutcomeError
			}
			if s.drained.Load() {
				s.reply(w, rid, &c, false, spread(s.live.Load().retryAfter))
				return OutcomeShutdown
			}
			select {
			case <-kick:
				kick = s.kicked()
			case <-wake:
				if err := c.collect(bctx, s.broker); err != nil {
					s.brokerError(w, r, rid, "read", err)
					return OutcomeError
				}
				if !c.empty() {
					break wait
				}
			case <-timer.C:
				if expires {
					s.writeError(w, rid, errTokenExpired)
					return OutcomeError
				}
				s.reply(w, rid, &c, true, 0)
				return OutcomeTimeout
			case <-ctx.Done():
				// The client left, or ended its input (a half-close,
				// which cancels the request under net/http) and may
				// still read: it gets a valid reply with its cursor
				// unchanged, as a released poll does. Its poll no
				// longer counts as waiting.
				s.reply(w, rid, &c, true, 0)
				return OutcomeCancelled
			case <-s.done:
				s.reply(w, rid, &c, false, spread(s.live.Load().retryAfter))
				return OutcomeShutdown
			}
		}
	}
	return s.answer(w, rid, &c, false)
}

// startPositions sets the position of every topic the cursor does not
// cover: the head; with since=earliest, before the oldest retained
// message; with since=<time>, before the first retained message at or
// after the time.
func (s *Server) startPositions(ctx context.Context, c *collector, req *pollRequest) error {
	for i, t := range c.topics {
		if c.isKnown(i) {
			continue
		}
		st, err := s.broker.Stat(ctx, t)
		if err != nil {
			return err
		}
		p := Position{Epoch: st.Epoch, Seq: st.Head}
		switch {
		case st.Oldest == 0: // nothing retained: the head
		case req.earliest:
			p.Seq = st.Oldest - 1
		case !req.since.IsZero():
			if p.Seq, err = s.seekTime(ctx, t, st, req.since); err != nil {
				return err
			}
		}
		c.pos[i] = p
		c.setKnown(i)
	}
	return nil
}

// seekTime returns the position before the first message of topic's log
// st at or after t: the oldest retained when t is before it, the head
// when t is after every message. Messages' times never decrease within a
// log, so it is a binary search over seqs, one Read of one message a step:
// about log2(retained) reads, once, when a poll or stream starts from a
// time (never for a poll with a cursor).
func (s *Server) seekTime(ctx context.Context, topic string, st TopicStat, t time.Time) (uint64, error) {
	lo, hi := st.Oldest, st.Head+1 // the answer's seq is in [lo, hi]; hi: none
	for lo < hi {
		mid := lo + (hi-lo)/2
		pg, err := s.broker.Read(ctx, topic, Position{Epoch: st.Epoch, Seq: mid - 1}, 1)
		if err != nil {
			return 0, err
		}
		if pg.Gap != nil && pg.Gap.Reason == GapReset || len(pg.Messages) == 0 {
			// The log changed under the search: start at the head read,
			// and let the poll's reads report what changed.
			return st.Head, nil
		}
		// Retention may have dropped mid meanwhile: then the message read
		// is the oldest now, past mid.
		if m := pg.Messages[0]; m.Time.Before(t) {
			lo = m.Seq + 1
		} else {
			hi = mid
		}
	}
	return lo - 1, nil
}

// collector gathers one reply's messages and gaps across a poll's topics.
type collector struct {
	topics []string
	pos    []Position
	// Bit i of known, or knownMore[i-64], says pos[i] was set from the
	// cursor or a start position.
	known     uint64
	knownMore []bool
	limit     int
	// gzip: the client takes gzip-compressed replies.
	gzip bool
	// maxBytes, when positive, bounds the reply's body: the messages
	// taken stop before the one that would take it past maxBytes, but
	// one is always taken.
	maxBytes int
	out      []Message
	gaps     []Gap
	// size is at least the bytes of the reply body of out (replySize),
	// as the last collect found it.
	size int
}

// isKnown reports whether topic i's position is set.
func (c *collector) isKnown(i int) bool {
	if i < 64 {
		return c.known&(1<<i) != 0
	}
	return c.knownMore != nil && c.knownMore[i-64]
}

func (c *collector) setKnown(i int) {
	if i < 64 {
		c.known |= 1 << i
		return
	}
	if c.knownMore == nil {
		c.knownMore = make([]bool, len(c.topics)-64)
	}
	c.knownMore[i-64] = true
}

// pos, if long enough, holds the positions.
func (c *collector) init(req *pollRequest, pos []Position) {
	n := len(req.topics)
	c.topics = req.topics
	if len(pos) >= n {
		c.pos = pos[:n]
	} else {
		c.pos = make([]Position, n)
	}
	c.limit = req.limit
	c.gzip = req.gzip
	if len(req.cursor) == 0 {
		return
	}
	var idx map[string]int
	if n > 8 { // a scan per entry would be quadratic
		idx = make(map[string]int, n)
		for i, t := range req.topics {
			idx[t] = i
		}
	}
	for _, e := range req.cursor {
		i, ok := idx[e.Topic]
		if idx == nil {
			i = slices.Index(req.topics, e.Topic)
			ok = i >= 0
		}
		if ok {
			c.pos[i] = Position{Epoch: e.Epoch, Seq: e.Seq}
			c.setKnown(i)
		}
	}
}

func (c *collector) empty() bool { return len(c.out) == 0 && len(c.gaps) == 0 }

// collect reads every topic from its position and merges the pages: per
// topic in seq order, across topics oldest time first, ties in request
// order, at most limit messages in all. Positions advance past what is
// taken and past every gap reported.
func (c *collector) collect(ctx context.Context, b Broker) error {
	c.gaps = c.gaps[:0]
	total := 0
	// The pages, and how many of each are taken, on the stack for a few
	// topics.
	var pagesArr [4]Page
	var takenArr [4]int
	pages, taken := pagesArr[:0], takenArr[:0]
	if n := len(c.topics); n > len(pagesArr) {
		pages, taken = make([]Page, 0, n), make([]int, 0, n)
	}
	for i, t := range c.topics {
		p, err := c.read(ctx, b, t, c.pos[i])
		if err != nil {
			return err
		}
		pages = append(pages, p)
		taken = append(taken, 0)
		total += len(p.Messages)
	}
	c.out = c.out[:0]
	if total > 0 {
		c.out = make([]Message, 0, min(total, c.limit))
	}
	c.size = c.fixedSize()
	for len(c.out) < c.limit {
		best := -1
		for i := range pages {
			ms := pages[i].Messages
			if taken[i] == len(ms) {
				continue
			}
			if best < 0 || ms[taken[i]].Time.Before(pages[best].Messages[taken[best]].Time) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		n := messageSize(&pages[best].Messages[taken[best]])
		if c.maxBytes > 0 && c.size+n > c.maxBytes && len(c.out) > 0 {
			break // the rest is for the next poll, which returns at once
		}
		c.size += n
		c.out = append(c.out, pages[best].Messages[taken[best]])
		taken[best]++
	}
	for i := range pages {
		p := &pages[i]
		switch {
		case taken[i] > 0:
			c.pos[i] = Position{Epoch: p.Next.Epoch, Seq: p.Messages[taken[i]-1].Seq}
		case p.Gap != nil && len(p.Messages) > 0:
			c.pos[i] = Position{Epoch: p.Next.Epoch, Seq: p.Messages[0].Seq - 1}
		case p.Gap != nil:
			c.pos[i] = p.Next
		}
		if p.Gap != nil {
			g := *p.Gap
			g.Topic = c.topics[i]
			c.gaps = append(c.gaps, g)
		}
	}
	return nil
}

// fixedSize returns at least the bytes of a reply's body besides its
// messages: the frame, the cursor (internal/cursor's layout: a version,
// a count, each topic with its epoch and seq, a checksum, in base64), the
// gaps its pages may bring (one a topic) and a retry delay.
func (c *collector) fixedSize() int {
	const (
		frame = len(`{"messages":[],"cursor":"","timeout":false,"gaps":[],"retry_after_ms":99999999999}`)
		gap   = len(`{"topic":"","reason":"expired","missed":18446744073709551615},`)
	)
	raw := 1 + 3 + 4
	n := frame
	for _, t := range c.topics {
		raw += 2 + len(t) + 8 + 10
		n += gap + len(t)
	}
	return n + (raw*4+2)/3
}

// messageSize returns at least the bytes m takes in a reply (appendMessage),
// with the comma before it.
func messageSize(m *Message) int {
	const fixed = len(`,{"topic":"","seq":18446744073709551615,"time":"2006-01-02T15:04:05.000000000Z","id":,"data":}`)
	n := fixed + len(m.Topic) + len(m.Data)
	if m.ID != "" {
		n += 6*len(m.ID) + 2 // every byte escaped, at worst
	}
	return n
}

// readChunk is how many messages a poll reads of a topic at first when
// its reply is bounded in bytes (maxBytes): the default limit, so that a
// default poll reads each topic once.
const readChunk = DefaultPollLimit

// read reads topic from pos, up to c.limit messages. With maxBytes, it
// reads readChunk messages first, and more only while those read are
// under maxBytes, as many as their average size says may still fit: a
// poll of 1000 large messages, of which the reply takes a few, does not
// read them all (a disk store copies each message it reads).
func (c *collector) read(ctx context.Context, b Broker, topic string, pos Position) (Page, error) {
	if c.maxBytes <= 0 || c.limit <= readChunk {
		return b.Read(ctx, topic, pos, c.limit)
	}
	asked := readChunk
	p, err := b.Read(ctx, topic, pos, asked)
	size, sized := 0, 0 // the bytes of p.Messages[:sized]
	for err == nil && len(p.Messages) == sized+asked && len(p.Messages) < c.limit {
		for ; sized < len(p.Messages); sized++ {
			size += messageSize(&p.Messages[sized])
		}
		if size >= c.maxBytes {
			break
		}
		avg := max(size/len(p.Messages), 1)
		asked = min(c.limit-len(p.Messages), (c.maxBytes-size)/avg+1)
		last := p.Messages[len(p.Messages)-1]
		var more Page
		more, err = b.Read(ctx, topic, Position{Epoch: p.Next.Epoch, Seq: last.Seq}, asked)
		if err != nil || more.Gap != nil || len(more.Messages) == 0 {
			// A gap past what was read (retention, a reset) is the next
			// poll's to report.
			break
		}
		p.Messages = append(p.Messages, more.Messages...)
		p.Next = more.Next
	}
	return p, err
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// errRepliesFull answers a poll whose reply the reply budget cannot take.
var errRepliesFull = &Error{Code: CodeOverloaded, Message: "too many reply bytes wait for slow clients; retry later"}

// replySize returns at least the bytes of c's reply body, as its last
// collect counted them.
func (c *collector) replySize() int {
	if c.size == 0 { // not collected: no messages
		return c.fixedSize()
	}
	return c.size
}

// ownBuffer is the reply size from which a reply gets a buffer of its
// own, made once at its size, rather than a pooled one grown to it.
const ownBuffer = 64 << 10

// replyBuffer returns an empty buffer for a reply of at most size bytes,
// and the pool entry it came from (nil for a buffer of its own).
func replyBuffer(size int) ([]byte, *[]byte) {
	if size >= ownBuffer {
		return make([]byte, 0, size), nil
	}
	bp := bufPool.Get().(*[]byte)
	return (*bp)[:0], bp
}

// putReplyBuffer returns a buffer replyBuffer gave to its pool.
func putReplyBuffer(buf []byte, bp *[]byte) {
	if bp != nil && cap(buf) <= 1<<20 {
		*bp = buf
		bufPool.Put(bp)
	}
}

// reserveReply counts a reply of at most size bytes in the reply budget
// and reports true; when it carries messages and the budget cannot take
// it, it counts nothing and reports false. A reply without messages is a
// few bytes, and never refused.
func (s *Server) reserveReply(c *collector, size int) bool {
	if len(c.out) > 0 {
		return s.budget.Reserve(size)
	}
	s.budget.Add(size)
	return true
}

// reply writes the poll's 200 answer and reports true; or, when it carries
// messages and the reply budget cannot take it, 503 overloaded, and false:
// the client's cursor is unchanged, so its next poll gets the same. The
// budget is asked before the reply is built, for its largest size.
func (s *Server) reply(w http.ResponseWriter, rid string, c *collector, timedOut bool, retry time.Duration) bool {
	size := c.replySize()
	if !s.reserveReply(c, size) {
		s.writeError(w, rid, errRepliesFull)
		return false
	}
	buf, bp := replyBuffer(size)
	buf = appendReply(buf, c, timedOut, retry)
	out := buf
	var z []byte
	if c.gzip && len(buf) >= s.cfg.gzipMin {
		if z = compress(buf); z != nil {
			out = z
		}
	}
	s.budget.Add(len(out) - size)
	pw := parkResponse(w)
	switch {
	case z != nil:
		writeGzipJSON(w, z)
	case pw != nil && bp == nil && pw.Fields() == nil:
		pw.SetJSONBody(http.StatusOK, buf) // no copy: the response keeps it
	default:
		writeJSON(w, http.StatusOK, buf)
	}
	if pw != nil {
		pw.Reserved += len(out) // the transport lets it go once written
	} else {
		s.budget.Add(-len(out))
	}
	putReplyBuffer(buf, bp)
	return true
}

// appendReply appends a poll reply's JSON body.
func appendReply(buf []byte, c *collector, timedOut bool, retry time.Duration) []byte {
	buf = append(buf, `{"messages":[`...)
	for i := range c.out {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendMessage(buf, &c.out[i])
	}
	buf = append(buf, `],"cursor":"`...)
	entries := make([]cursor.Entry, len(c.topics))
	for i, t := range c.topics {
		entries[i] = cursor.Entry{Topic: t, Epoch: c.pos[i].Epoch, Seq: c.pos[i].Seq}
	}
	buf = cursor.Append(buf, entries)
	buf = append(buf, `","timeout":`...)
	buf = strconv.AppendBool(buf, timedOut)
	buf = append(buf, `,"gaps":[`...)
	for i, g := range c.gaps {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"topic":"`...)
		buf = append(buf, g.Topic...)
		buf = append(buf, `","reason":"`...)
		buf = append(buf, g.Reason...)
		buf = append(buf, '"')
		if g.Reason == GapExpired || g.Reason == GapCorrupt {
			buf = append(buf, `,"missed":`...)
			buf = strconv.AppendUint(buf, g.Missed, 10)
		}
		buf = append(buf, '}')
	}
	buf = append(buf, ']')
	if retry > 0 {
		buf = append(buf, `,"retry_after_ms":`...)
		buf = strconv.AppendInt(buf, retry.Milliseconds(), 10)
	}
	return append(buf, '}')
}

// appendMessage appends m as a poll reply's message object. Topics need no
// escaping: their alphabet has no JSON specials.
func appendMessage(buf []byte, m *Message) []byte {
	buf = append(buf, `{"topic":"`...)
	buf = append(buf, m.Topic...)
	buf = append(buf, `","seq":`...)
	buf = strconv.AppendUint(buf, m.Seq, 10)
	buf = append(buf, `,"time":"`...)
	buf = m.Time.UTC().AppendFormat(buf, timeFormat)
	buf = append(buf, '"')
	if m.ID != "" {
		buf = append(buf, `,"id":`...)
		buf = appendString(buf, unscopeID(m.ID))
	}
	buf = append(buf, `,"data":`...)
	buf = append(buf, m.Data...)
	buf = append(buf, '}')
	return buf
}

// timeFormat is RFC 3339 in UTC with all nine fraction digits.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// appendString appends s, valid UTF-8, as a JSON string.
func appendString(buf []byte, s string) []byte {
	const hexd = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&15])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
