package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll/protocol"
)

// The SSE transport: one GET /v1/stream held open (docs/protocol.md,
// "Stream"), whose events carry the cursor after each of them as their
// id, so that a stream resumes from a poll's cursor and a poll from a
// stream's id.

var (
	// errStreamSilent is a stream that sent nothing, not even a ping, for
	// the stream idle timeout: a dead connection, or a proxy that buffers.
	errStreamSilent = errors.New("stream silent past the idle timeout")
	// errStreamEnded is a stream that ended without a close event.
	errStreamEnded = errors.New("stream ended without a close event")
)

// streamEnd is how one stream ended.
type streamEnd struct {
	err   error         // why, an *Error for an error event; nil for a close event
	wait  time.Duration // a close event's retry_after_ms
	floor time.Duration // the stream's retry field, the least wait after it broke
	tok   string        // the token the stream was opened with
	// progressed is set once the stream sent an event or a ping: the
	// attempt succeeded, as a poll's 200 does.
	progressed bool
	stop       bool // the loop ended: it broke, or a save failed
}

// streams is the loop of the SSE transport: open a stream from the
// cursor, yield its events, save, and open another when it ends.
func (l *loop) streams(ctx context.Context) {
	c := l.s.c
	var wait time.Duration
	refreshed := false
	for {
		if err := sleep(ctx, wait); err != nil {
			l.stopped(ctx)
			return
		}
		var ok bool
		if l.cur == "" {
			// A stream tells its position only with its first event: take
			// one with a poll answered at once, so that a stream that ends
			// before any event resumes from there, not from a later head.
			rep, err := l.s.poll(ctx, "", 0)
			if err != nil {
				wait, ok = l.failed(ctx, err, 0, "poll for the starting position failed; retrying")
			} else {
				l.bo.reset()
				wait, ok = l.reply(ctx, rep)
			}
			if !ok {
				return
			}
			continue
		}
		end := l.stream(ctx)
		if end.stop {
			return
		}
		if end.progressed {
			l.bo.reset()
			refreshed = false
		}
		if ctx.Err() != nil {
			l.stopped(ctx)
			return
		}
		if end.err == nil {
			// A close event: reconnect from the last id, after the wait
			// it asked for.
			wait = end.wait
			if wait > 0 {
				c.log.retry(ctx, "stream closed by the server; reconnecting later", nil, wait)
			}
			continue
		}
		var e *Error
		if errors.As(end.err, &e) && e.staleToken() && c.auth != nil && !refreshed {
			// As a poll does: refresh once and reconnect at once.
			c.log.retry(ctx, "token "+strings.TrimPrefix(e.Code, "token_")+"; refreshing", e, 0)
			if _, err := c.auth.refresh(ctx, end.tok); err != nil {
				if ctx.Err() != nil {
					l.stopped(ctx)
					return
				}
				l.fail(fmt.Errorf("client: subscribe: %w", err))
				return
			}
			refreshed, wait = true, 0
			continue
		}
		refreshed = false
		if wait, ok = l.failed(ctx, end.err, end.floor, "stream failed; reconnecting"); !ok {
			return
		}
	}
}

// stream opens one stream from l.cur and yields its events until it
// ends. Whenever no whole event is left in hand, before it waits on the
// network, it saves the id of the last event taken (once per batch of
// events, as a poll saves once per reply).
func (l *loop) stream(ctx context.Context) (end streamEnd) {
	s, c := l.s, l.s.c
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if c.auth != nil {
		tok, err := c.auth.get(ctx)
		if err != nil {
			end.err = err
			return end
		}
		end.tok = tok
	}
	// Bytes, pings included, must keep coming; the wait for the answer's
	// head counts too.
	idle := time.AfterFunc(c.cfg.streamIdle, func() { cancel(errStreamSilent) })
	defer idle.Stop()
	rctx, lost := oneConnection(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, s.streamURL(), nil)
	if err != nil {
		end.err = err
		return end
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Last-Event-ID", l.cur)
	if end.tok != "" {
		req.Header.Set("Authorization", "Bearer "+end.tok)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		end.err = streamErr(ctx, err, lost)
		return end
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, err := io.ReadAll(io.LimitReader(res.Body, maxReply))
		if err != nil {
			end.err = fmt.Errorf("reading the %d reply: %w", res.StatusCode, streamErr(ctx, err, lost))
			return end
		}
		end.err = parseError(&response{status: res.StatusCode, header: res.Header, body: b})
		return end
	}
	if mt, _, _ := strings.Cut(res.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
		end.err = &protocolError{fmt.Sprintf("stream answered with Content-Type %q", res.Header.Get("Content-Type"))}
		return end
	}
	rid := res.Header.Get("X-Request-Id")
	p := newSSEParser(maxReply)
	buf := make([]byte, 32<<10)
	var rerr error // the read that ended the input, once the events before it are taken
	for {
		ev, ok, err := p.next()
		if err != nil {
			end.err = &protocolError{"stream: " + err.Error()}
			return end
		}
		if p.comments > 0 {
			end.progressed = true
		}
		if !ok {
			// Nothing whole is left: save before waiting on the network.
			if p.last != "" {
				l.cur = p.last
			}
			if l.cur != l.saved && !l.store(l.cur) {
				end.stop = true
				return end
			}
			if rerr != nil {
				if p.retry >= 0 {
					end.floor = min(time.Duration(p.retry)*time.Millisecond, maxServerWait)
				}
				end.err = streamErr(ctx, rerr, lost)
				return end
			}
			if ctx.Err() != nil {
				end.err = context.Cause(ctx)
				return end
			}
			var n int
			n, rerr = res.Body.Read(buf)
			if n > 0 {
				idle.Reset(c.cfg.streamIdle)
				p.feed(buf[:n])
			}
			continue
		}
		var item Event
		switch ev.typ {
		case "message":
			var m protocol.ReplyMessage
			if err := json.Unmarshal([]byte(ev.data), &m); err != nil || m.Data == nil {
				end.err = &protocolError{"stream has a message event without a message"}
				return end
			}
			item.Message = &protocol.Message{Topic: m.Topic, Seq: m.Seq, Time: m.Time, ID: m.ID, Data: m.Data}
		case "gap":
			var g protocol.ReplyGap
			if err := json.Unmarshal([]byte(ev.data), &g); err != nil || g.Topic == "" {
				end.err = &protocolError{"stream has a gap event without a gap"}
				return end
			}
			item.Gap = &protocol.Gap{Topic: g.Topic, Reason: g.Reason, Missed: g.Missed}
		case "close":
			end.progressed = true
			var cl struct {
				Reason       string `json:"reason"`
				RetryAfterMS int64  `json:"retry_after_ms"`
			}
			if err := json.Unmarshal([]byte(ev.data), &cl); err != nil {
				end.err = &protocolError{"stream has a close event without a reason"}
				return end
			}
			if cl.RetryAfterMS > 0 {
				end.wait = min(time.Duration(cl.RetryAfterMS)*time.Millisecond, maxServerWait)
			}
			if l.cur != l.saved && !l.store(l.cur) {
				end.stop = true
			}
			return end
		case "error":
			var body protocol.ErrorReply
			if err := json.Unmarshal([]byte(ev.data), &body); err != nil || body.Error.Code == "" {
				end.err = &protocolError{"stream has an error event without an error"}
				return end
			}
			end.err = eventError(&body.Error, rid)
			if l.cur != l.saved && !l.store(l.cur) {
				end.stop = true
			}
			return end
		default:
			continue // a later protocol's event
		}
		if !ev.hasID {
			end.err = &protocolError{"stream has a " + ev.typ + " event without an id"}
			return end
		}
		end.progressed = true
		if !l.yield(item, nil) {
			// The loop took this event; when it was the last one in hand,
			// its id is where the loop stands, as at the end of a reply.
			if !p.pending() {
				l.saveAfterBreak(ev.id)
			}
			end.stop = true
			return end
		}
		l.cur = ev.id
	}
}

// streamErr names the failure of a stream's request or read.
func streamErr(ctx context.Context, err error, lost func() bool) error {
	switch {
	case errors.Is(context.Cause(ctx), errStreamSilent):
		return errStreamSilent
	case lost():
		return errConnectionLost
	case errors.Is(err, io.EOF):
		return errStreamEnded
	}
	return err
}

// streamURL returns the URL of a stream of the subscription's topics; the
// cursor goes in the Last-Event-ID header.
func (s *subscription) streamURL() string {
	q := url.Values{"topic": s.topics}
	if s.cfg.since == Earliest {
		q.Set("since", "earliest")
	}
	if s.cfg.limit > 0 {
		q.Set("limit", strconv.Itoa(s.cfg.limit))
	}
	return s.c.streamURL + "?" + q.Encode()
}
