package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/protocol"
)

// Event is one item of a subscription: a message, or a gap that reports
// messages the subscriber can no longer get. Exactly one field is set.
type Event struct {
	Message *protocol.Message
	Gap     *protocol.Gap
}

// Since says where a subscription starts on a topic its cursor does not
// cover.
type Since int

const (
	// Head starts with the messages published after the first poll
	// reaches the server.
	Head Since = iota
	// Earliest starts with the oldest message the server still retains.
	Earliest
)

type subConfig struct {
	since  Since
	limit  int
	cursor string
	load   func(context.Context) (string, error)
	save   func(context.Context, string) error
}

// SubscribeOption configures one subscription.
type SubscribeOption func(*subConfig) error

// WithSince sets where the subscription starts on topics its cursor does
// not cover, and where it starts again after the server refused its cursor
// as invalid. The default is Head.
func WithSince(s Since) SubscribeOption {
	return func(c *subConfig) error {
		if s != Head && s != Earliest {
			return fmt.Errorf("WithSince(%d): want Head or Earliest", s)
		}
		c.since = s
		return nil
	}
}

// WithLimit sets the most messages one reply may carry (the server's
// default is 100, its maximum 1000).
func WithLimit(n int) SubscribeOption {
	return func(c *subConfig) error {
		if n <= 0 {
			return fmt.Errorf("WithLimit(%d): must be positive", n)
		}
		c.limit = n
		return nil
	}
}

// WithCursor starts the subscription at cursor, a cursor the server gave
// before (see WithCursorFuncs for how to obtain one). A cursor that
// WithCursorFuncs or WithCursorFile loads takes precedence.
func WithCursor(cursor string) SubscribeOption {
	return func(c *subConfig) error {
		c.cursor = cursor
		return nil
	}
}

// WithCursorFuncs lets a subscription resume where a previous one, in this
// process or an earlier one, stopped. load is called once when the
// subscription starts; "" means no cursor (start per WithSince). save is
// called with the cursor of each reply once the caller has taken all of
// that reply's events, before the next poll, and whenever a reply moved
// the cursor without events; it is called from the caller's goroutine
// with a context that outlives the subscription's, so that a clean stop
// is saved. An error from either ends the subscription.
//
// Saving after each reply makes delivery across a crash at least once: the
// events of a reply taken before the crash but not saved come again. A
// subscription that ends because its context is cancelled or its Client
// is closed first yields the rest of the reply it holds and saves it, so
// across a clean stop delivery is exactly once. Breaking out of the loop
// in the middle of a reply does not save it.
func WithCursorFuncs(load func(context.Context) (string, error), save func(context.Context, string) error) SubscribeOption {
	return func(c *subConfig) error {
		if load == nil || save == nil {
			return errors.New("WithCursorFuncs: nil load or save")
		}
		c.load, c.save = load, save
		return nil
	}
}

// WithCursorFile is WithCursorFuncs over the file at path, read with
// ReadCursorFile and written with WriteCursorFile: a missing file starts
// per WithSince, and every save replaces the file atomically.
func WithCursorFile(path string) SubscribeOption {
	return WithCursorFuncs(
		func(context.Context) (string, error) { return ReadCursorFile(path) },
		func(_ context.Context, cursor string) error { return WriteCursorFile(path, cursor) },
	)
}

// Subscribe returns the events of topics: for each reply of the server,
// its gaps, then its messages, one at a time and in order. It polls in the
// goroutine that ranges over it, one poll in flight, and polls again as
// soon as the loop has taken a reply's events: no goroutine is started,
// and a slow loop is back-pressure, not a buffer (the server keeps the
// messages; one that falls behind retention gets an "expired" gap).
//
// Failed polls are retried with backoff; the loop ends only when:
//
//   - it breaks;
//   - ctx ends: the poll in flight or the wait is abandoned at once, the
//     loop gets the rest of the reply already received (so the saved
//     cursor never skips a message) and then ctx.Err();
//   - the Client is closed: the same, with ErrClosed;
//   - an answer that retrying cannot mend arrives (400 other than
//     invalid_cursor, 401 other than token_expired, 403, 404 and the
//     other 4xx but 408 and 429, a failed WithToken hook, a reply that is
//     not protocol v1, or a failed load or save of the cursor): the loop
//     gets that error, an *Error when it is the server's answer.
//
// So a non-nil error is always the last thing the loop gets. A 400
// invalid_cursor drops the cursor, yields a "reset" gap for every topic
// and starts again per WithSince.
//
// Each range over the returned sequence is a new subscription, starting
// from the WithCursor or loaded cursor.
//
// Under WithTransport(SSE) the loop holds one stream (GET /v1/stream)
// instead of polling, reads its events in the same goroutine, and yields
// the same events, with the same contract, but for these points:
//
//   - "A reply" is what the stream has sent and the loop has not taken:
//     the cursor is saved, with the id of the last event taken, whenever
//     no whole event is left in hand and the loop would wait on the
//     network; a break saves when the event it took was the last one
//     received. A slow loop is back-pressure here too: the server's
//     writes wait on the connection, and cut it past 10 s (the loop then
//     reconnects from its last id).
//   - A subscription without a cursor first takes its starting position
//     with a poll answered at once (timeout 0), whose events come first
//     and whose cursor is saved: a stream tells its position only with
//     its first event, and one that ended before any event must not
//     resume from a later head.
//   - A close event (the stream's time is up, or the node drains or
//     shuts down) reconnects at once from the last id, or after the
//     retry_after_ms it gives. An error event is the *Error of the JSON
//     reply with its code (its status taken from the code) and is handled
//     as that reply would be. A stream that ends without either, or
//     breaks, reconnects with backoff, no sooner than its retry field
//     advised.
//   - A stream that sends nothing, not even a ping, for
//     WithStreamIdleTimeout is given up and reconnected from its last
//     id: the connection is dead, or a proxy buffers the stream.
//   - The backoff is reset, and the token refresh allowed once again, by
//     a stream's first event or ping.
func (c *Client) Subscribe(ctx context.Context, topics []string, opts ...SubscribeOption) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		s, err := c.newSub(topics, opts)
		if err != nil {
			yield(Event{}, err)
			return
		}
		if c.life.Err() != nil {
			yield(Event{}, ErrClosed)
			return
		}
		ctx, cancel := c.scope(ctx)
		defer cancel()
		s.run(ctx, yield)
	}
}

type subscription struct {
	c      *Client
	topics []string
	cfg    subConfig
}

func (c *Client) newSub(topics []string, opts []SubscribeOption) (*subscription, error) {
	s := &subscription{c: c}
	for _, o := range opts {
		if err := o(&s.cfg); err != nil {
			return nil, fmt.Errorf("client: subscribe: %w", err)
		}
	}
	if len(topics) == 0 {
		return nil, errors.New("client: subscribe: no topics")
	}
	seen := make(map[string]bool, len(topics))
	for _, t := range topics {
		if err := protocol.ValidateTopic(t); err != nil {
			return nil, fmt.Errorf("client: subscribe: topic %q: %w", t, err)
		}
		if !seen[t] {
			seen[t] = true
			s.topics = append(s.topics, t)
		}
	}
	return s, nil
}

// loop is one range over a subscription: where it stands, what it last
// saved, and its backoff.
type loop struct {
	s       *subscription
	yield   func(Event, error) bool
	saveCtx context.Context // for saves, which a cancellation must not cut short
	cur     string          // where the next request starts
	saved   string          // the cursor the save hook last took
	bo      backoff
}

func (l *loop) fail(err error) { l.yield(Event{}, err) }

func (l *loop) stopped(ctx context.Context) { l.yield(Event{}, stopErr(ctx)) }

// run loads the cursor and runs the subscription's loop on the Client's
// transport.
func (s *subscription) run(ctx context.Context, yield func(Event, error) bool) {
	l := &loop{s: s, yield: yield, saveCtx: context.WithoutCancel(ctx), cur: s.cfg.cursor, bo: s.c.newBackoff()}
	if s.cfg.load != nil {
		v, err := s.cfg.load(ctx)
		if err != nil {
			if ctx.Err() != nil {
				l.stopped(ctx)
				return
			}
			l.fail(fmt.Errorf("client: loading the cursor: %w", err))
			return
		}
		if v != "" {
			l.cur = v
		}
	}
	l.saved = l.cur
	if s.c.cfg.transport == SSE {
		l.streams(ctx)
		return
	}
	l.polls(ctx)
}

// polls is the loop of the Poll transport: poll, yield, save, poll again.
func (l *loop) polls(ctx context.Context) {
	var wait time.Duration
	for {
		if err := sleep(ctx, wait); err != nil {
			l.stopped(ctx)
			return
		}
		rep, err := l.s.poll(ctx, l.cur, l.s.c.cfg.pollTimeout)
		var ok bool
		if err != nil {
			wait, ok = l.failed(ctx, err, 0, "poll failed; retrying")
		} else {
			l.bo.reset()
			wait, ok = l.reply(ctx, rep)
		}
		if !ok {
			return
		}
	}
}

// failed handles an attempt that failed with err: it reports whether the
// loop goes on, and after what wait. floor is a wait the server advised
// besides the one err may carry.
func (l *loop) failed(ctx context.Context, err error, floor time.Duration, msg string) (time.Duration, bool) {
	c := l.s.c
	if ctx.Err() != nil {
		l.stopped(ctx)
		return 0, false
	}
	var e *Error
	switch {
	case errors.As(err, &e) && e.Status == http.StatusBadRequest && e.Code == protocol.CodeInvalidCursor && l.cur != "":
		// The position is lost: say so for every topic and start again
		// per since.
		c.log.retry(ctx, "cursor refused; starting again", err, 0)
		events := make([]Event, len(l.s.topics))
		for i, t := range l.s.topics {
			events[i] = Event{Gap: &protocol.Gap{Topic: t, Reason: protocol.GapReset}}
		}
		l.cur = ""
		if !l.deliver(events, "") || !l.store("") {
			return 0, false
		}
		return 0, true
	case !c.retryable(err):
		l.fail(fmt.Errorf("client: subscribe: %w", err))
		return 0, false
	}
	wait := l.bo.next(max(retryAfter(err), floor))
	c.log.retry(ctx, msg, err, wait)
	return wait, true
}

// reply yields the events of a poll's reply and saves its cursor; it
// reports whether the loop goes on, and after what wait.
func (l *loop) reply(ctx context.Context, rep *protocol.PollReply) (time.Duration, bool) {
	events := make([]Event, 0, len(rep.Gaps)+len(rep.Messages))
	for i := range rep.Gaps {
		g := &rep.Gaps[i]
		events = append(events, Event{Gap: &protocol.Gap{Topic: g.Topic, Reason: g.Reason, Missed: g.Missed}})
	}
	for i := range rep.Messages {
		m := &rep.Messages[i]
		events = append(events, Event{Message: &protocol.Message{Topic: m.Topic, Seq: m.Seq, Time: m.Time, ID: m.ID, Data: m.Data}})
	}
	if !l.deliver(events, rep.Cursor) {
		return 0, false
	}
	if rep.Cursor != l.saved || len(events) > 0 {
		if !l.store(rep.Cursor) {
			return 0, false
		}
	}
	l.cur = rep.Cursor
	if rep.RetryAfterMS > 0 {
		// The server is shutting down: come back when it says, to
		// another node or to it restarted.
		wait := min(time.Duration(rep.RetryAfterMS)*time.Millisecond, maxServerWait)
		l.s.c.log.retry(ctx, "server shutting down; polling again later", nil, wait)
		return wait, true
	}
	return 0, true
}

// deliver yields events in order and reports whether the loop wants more.
// A loop that stops at the last event of a reply has taken all of it, so
// its cursor is saved.
func (l *loop) deliver(events []Event, cursor string) bool {
	for i, ev := range events {
		if !l.yield(ev, nil) {
			if i == len(events)-1 {
				l.saveAfterBreak(cursor)
			}
			return false
		}
	}
	return true
}

// saveAfterBreak saves cursor, when the subscription has a save hook, for
// a loop that stopped having taken every event up to cursor.
func (l *loop) saveAfterBreak(cursor string) {
	if l.s.cfg.save == nil {
		return
	}
	if err := l.s.cfg.save(l.saveCtx, cursor); err != nil {
		// The loop is gone: the log is the only place left.
		l.s.c.log.LogAttrs(l.saveCtx, slog.LevelError, "saving the cursor after the loop stopped",
			slog.Any("topics", l.s.topics), slog.String("error", err.Error()))
	}
}

// store saves cursor when the subscription has a save hook; it reports
// false, having ended the loop with the error, when saving failed.
func (l *loop) store(cursor string) bool {
	if l.s.cfg.save == nil {
		l.saved = cursor
		return true
	}
	if err := l.s.cfg.save(l.saveCtx, cursor); err != nil {
		l.fail(fmt.Errorf("client: saving the cursor: %w", err))
		return false
	}
	l.saved = cursor
	return true
}

// poll sends one poll that asks for a hold of timeout and returns its
// reply. Its deadline is the hold plus the margin, so a connection dropped
// without a word is given up.
func (s *subscription) poll(ctx context.Context, cur string, timeout time.Duration) (*protocol.PollReply, error) {
	c := s.c
	ctx, cancel := context.WithTimeout(ctx, timeout+c.cfg.pollMargin)
	defer cancel()
	ctx, lost := oneConnection(ctx)
	method, u, body := s.request(cur, timeout)
	res, err := c.call(ctx, method, u, body)
	if err != nil {
		if lost() {
			return nil, errConnectionLost
		}
		return nil, err
	}
	var rep protocol.PollReply
	if err := json.Unmarshal(res.body, &rep); err != nil {
		return nil, &protocolError{"poll reply: " + err.Error()}
	}
	if rep.Cursor == "" {
		return nil, &protocolError{"poll reply has no cursor"}
	}
	for i := range rep.Messages {
		if rep.Messages[i].Data == nil {
			return nil, &protocolError{"poll reply has a message without data"}
		}
	}
	return &rep, nil
}

// errConnectionLost is the error of a poll whose connection broke.
var errConnectionLost = errors.New("connection closed by the server or a proxy")

// oneConnection makes a request through ctx give up, rather than let
// net/http send it again, once it was written on a connection that then
// broke: net/http re-sends a GET at once when a reused connection fails
// before the reply, and after a server crash every client would come back
// in the same instant, jitter or not. The backoff decides when to try
// again instead. lost reports whether that happened.
func oneConnection(ctx context.Context) (_ context.Context, lost func() bool) {
	ctx, cancel := context.WithCancelCause(ctx)
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
		// HTTP/2 asks for a connection more than once per attempt; only
		// a request already written is being re-sent.
		GetConn: func(string) {
			if wrote.Load() {
				cancel(errConnectionLost)
			}
		},
	})
	return ctx, func() bool { return errors.Is(context.Cause(ctx), errConnectionLost) }
}

// request returns a poll as GET, or as POST once the query string would
// pass maxQuery.
func (s *subscription) request(cur string, hold time.Duration) (method, u string, body []byte) {
	c := s.c
	timeout := hold.String()
	q := url.Values{"topic": s.topics, "timeout": {timeout}}
	if cur != "" {
		q.Set("cursor", cur)
	}
	if s.cfg.since == Earliest {
		q.Set("since", "earliest")
	}
	if s.cfg.limit > 0 {
		q.Set("limit", strconv.Itoa(s.cfg.limit))
	}
	if enc := q.Encode(); len(enc) <= maxQuery {
		return http.MethodGet, c.pollURL + "?" + enc, nil
	}
	pb := protocol.PollRequest{Topics: s.topics, Cursor: cur, Timeout: timeout, Limit: s.cfg.limit}
	if s.cfg.since == Earliest {
		pb.Since = "earliest"
	}
	body, _ = json.Marshal(&pb) // strings and ints: cannot fail
	return http.MethodPost, c.pollURL, body
}

// logger reports retries and stops.
type logger struct{ *slog.Logger }

func (l logger) retry(ctx context.Context, msg string, err error, wait time.Duration) {
	if !l.Enabled(ctx, slog.LevelWarn) {
		return
	}
	attrs := make([]slog.Attr, 0, 2)
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	if wait > 0 {
		attrs = append(attrs, slog.Duration("wait", wait))
	}
	l.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}
