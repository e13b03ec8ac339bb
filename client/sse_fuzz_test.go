package client

import (
	"strconv"
	"strings"
	"testing"

	"github.com/longpoll/longpoll/protocol"
)

// refSSE is the WHATWG "Interpreting an event stream" written the plain
// way, over the whole input at once: the parser is held to it.
type refSSE struct {
	events   []sseEvent
	last     string
	retry    int64
	comments int
}

func parseRef(in string) refSSE {
	r := refSSE{retry: -1}
	in = strings.TrimPrefix(in, "\uFEFF")
	in = strings.ReplaceAll(in, "\r\n", "\n")
	in = strings.ReplaceAll(in, "\r", "\n")
	lines := strings.Split(in, "\n")
	lines = lines[:len(lines)-1] // what follows the last line end is no line
	var typ, data, id string
	var hasData, hasID bool
	for _, line := range lines {
		switch {
		case line == "":
			r.last = id
			if hasData {
				ev := sseEvent{typ: typ, data: strings.TrimSuffix(data, "\n"), id: id, hasID: hasID}
				if ev.typ == "" {
					ev.typ = "message"
				}
				r.events = append(r.events, ev)
			}
			typ, data, hasData, hasID = "", "", false, false
			continue
		case line[0] == ':':
			r.comments++
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			typ = value
		case "data":
			data += value + "\n"
			hasData = true
		case "id":
			if !strings.Contains(value, "\x00") {
				id, hasID = value, true
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				n, err := strconv.ParseInt(value, 10, 64)
				if err != nil {
					n = 1<<63 - 1
				}
				r.retry = n
			}
		}
	}
	return r
}

// FuzzSSEParser feeds the parser its input in the pieces cuts says, and
// checks that it finds what the reference finds in the whole: the same
// events, last event id, retry and comments, however the input is cut.
func FuzzSSEParser(f *testing.F) {
	for _, s := range []string{
		"retry: 2315\n\nevent: message\nid: AQEB\ndata: {\"topic\":\"a\"}\n\n: ping\n\n",
		"\xEF\xBB\xBFdata: a\r\ndata:b\r\rdata\n\nid: x\n\nevent: close\ndata: {}\n\n",
		"id: a\x00b\nretry: 12a\nretry: 99999999999999999999\ndata: \n\n:\nfield\n\ndata: cut",
		"data: a\r", "\xEF\xBB", "\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n",
	} {
		f.Add([]byte(s), []byte{1, 2, 3})
		f.Add([]byte(s), []byte{})
	}
	f.Fuzz(func(t *testing.T, in, cuts []byte) {
		want := parseRef(string(in))
		p := newSSEParser(1 << 20)
		var got []sseEvent
		drain := func() {
			for {
				ev, ok, err := p.next()
				if err != nil {
					t.Fatalf("next: %v", err)
				}
				if !ok {
					return
				}
				got = append(got, ev)
			}
		}
		rest := in
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, 1+int(cuts[i])%19)
			}
			p.feed(rest[:n])
			rest = rest[n:]
			drain()
		}
		drain()
		if len(got) != len(want.events) {
			t.Fatalf("%q: %d events %+v, want %d %+v", in, len(got), got, len(want.events), want.events)
		}
		for i := range got {
			if got[i] != want.events[i] {
				t.Fatalf("%q: event %d: %+v, want %+v", in, i, got[i], want.events[i])
			}
		}
		if p.last != want.last || p.retry != want.retry || p.comments != want.comments {
			t.Fatalf("%q: last id %q, retry %d, %d comments; want %q, %d, %d", in, p.last, p.retry, p.comments, want.last, want.retry, want.comments)
		}
	})
}

// TestSSEParserBound: a line or an event's data past the bound is an
// error, not a buffer that grows with the input.
func TestSSEParserBound(t *testing.T) {
	for _, in := range []string{
		"data: " + strings.Repeat("x", 100),                       // one line, no end
		strings.Repeat("data: "+strings.Repeat("x", 20)+"\n", 10), // many lines, one event
	} {
		p := newSSEParser(64)
		var err error
		for i := 0; i < len(in) && err == nil; i += 7 {
			p.feed([]byte(in[i:min(i+7, len(in))]))
			for {
				var ok bool
				if _, ok, err = p.next(); err != nil || !ok {
					break
				}
			}
		}
		if err != errEventTooLarge {
			t.Errorf("%.20q...: %v, want errEventTooLarge", in, err)
		}
	}
	// Whole events under the bound are fine however many come.
	p := newSSEParser(64)
	for range 1000 {
		p.feed([]byte("id: 1\ndata: " + strings.Repeat("x", 40) + "\n\n"))
		if _, ok, err := p.next(); !ok || err != nil {
			t.Fatalf("next: %v %v", ok, err)
		}
	}
	if cap(p.buf) > 1024 {
		t.Fatalf("buffer grew to %d bytes for events of 60", cap(p.buf))
	}
}

// TestEventErrorStatus: an error event's code gets the status of the
// JSON reply with that code, so that it is retried, refreshed or fatal
// as that reply is.
func TestEventErrorStatus(t *testing.T) {
	for code, want := range map[string]int{
		"token_expired": 401, "token_revoked": 401, "unauthorized": 401,
		"overloaded": 503, "broker_unavailable": 503, "draining": 503, "shutting_down": 503,
		"forbidden": 403, "invalid_cursor": 400, "rate_limited": 429, "from_the_future": 500,
	} {
		e := eventError(&protocol.ErrorObject{Code: code, RetryAfterMS: 1500}, "rid")
		if e.Status != want || e.Code != code || e.RetryAfter.Milliseconds() != 1500 || e.RequestID != "rid" {
			t.Errorf("%s: %+v, want status %d", code, e, want)
		}
	}
}
