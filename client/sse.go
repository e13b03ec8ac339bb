package client

import (
	"bytes"
	"errors"
	"strconv"
)

// sseEvent is one event of a server-sent event stream, as dispatched.
type sseEvent struct {
	typ  string // "message" when the stream named none
	data string
	// id is the stream's last event id once the event is dispatched: its
	// own when it had an id field, else the one before it.
	id    string
	hasID bool // the event had an id field
}

// errEventTooLarge is a stream whose event, or line, outgrows the parser's
// bound.
var errEventTooLarge = errors.New("event larger than a poll reply may be")

// sseParser reads a text/event-stream as the WHATWG HTML standard's
// "Interpreting an event stream" does: lines end with CRLF, LF or CR; a
// leading byte order mark is dropped; a line starting with a colon is a
// comment; "field: value" loses one space after the colon, and a line
// without a colon is a field with an empty value; data lines are joined
// with LF; an id holding NUL is ignored, and a retry that is not all
// digits; a blank line dispatches the event, unless no data came, in
// which case it still sets the last event id. Input that ends inside an
// event is not an event.
//
// It is fed the stream's bytes as they arrive and hands out each event
// once it is whole, so its caller can tell when no whole event is left
// and it would wait on the network. What it holds is bounded: an event's
// data and a line being read together stay under max bytes, else next
// fails with errEventTooLarge.
type sseParser struct {
	max int

	buf     []byte // input not yet parsed: buf[off:]
	off     int
	started bool // the byte order mark was looked for
	skipLF  bool // the last line ended with CR: a LF next belongs to it

	typ      string
	data     []byte
	id       string // the last event id buffer
	last     string // the last event id, set from id at each blank line
	hasID    bool   // the event being read had an id field
	retry    int64  // the last retry field, in ms; -1 before any
	comments int    // comment lines read (pings)
}

func newSSEParser(max int) *sseParser {
	return &sseParser{max: max, retry: -1}
}

// feed appends input to what the parser holds.
func (p *sseParser) feed(b []byte) {
	if p.off > 0 && p.off == len(p.buf) {
		p.buf, p.off = p.buf[:0], 0
	} else if p.off > 0 && p.off >= cap(p.buf)/2 {
		n := copy(p.buf, p.buf[p.off:])
		p.buf, p.off = p.buf[:n], 0
	}
	p.buf = append(p.buf, b...)
}

// pending reports whether input is held that next has not parsed: a part
// of an event, or whole events.
func (p *sseParser) pending() bool {
	rest := p.buf[p.off:]
	if p.skipLF && len(rest) > 0 && rest[0] == '\n' {
		rest = rest[1:]
	}
	return len(rest) > 0 || len(p.data) > 0 || p.typ != "" || p.hasID
}

var bom = []byte("\xEF\xBB\xBF")

// next returns the next whole event, or false when the input held has
// none left (more must be fed).
func (p *sseParser) next() (sseEvent, bool, error) {
	for {
		rest := p.buf[p.off:]
		if !p.started {
			if len(rest) < len(bom) && bytes.HasPrefix(bom, rest) {
				return sseEvent{}, false, nil
			}
			p.started = true
			if bytes.HasPrefix(rest, bom) {
				p.off += len(bom)
				continue
			}
		}
		if p.skipLF && len(rest) > 0 {
			p.skipLF = false
			if rest[0] == '\n' {
				p.off++
				continue
			}
		}
		i := bytes.IndexAny(rest, "\r\n")
		if i < 0 {
			if len(rest)+len(p.data) > p.max {
				return sseEvent{}, false, errEventTooLarge
			}
			return sseEvent{}, false, nil
		}
		line := rest[:i]
		p.skipLF = rest[i] == '\r'
		p.off += i + 1
		if ev, ok := p.line(line); ok {
			return ev, true, nil
		}
		if len(p.data) > p.max {
			return sseEvent{}, false, errEventTooLarge
		}
	}
}

// line interprets one line; a blank one may dispatch an event.
func (p *sseParser) line(line []byte) (sseEvent, bool) {
	if len(line) == 0 {
		return p.dispatch()
	}
	if line[0] == ':' {
		p.comments++
		return sseEvent{}, false
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		p.typ = string(value)
	case "data":
		p.data = append(p.data, value...)
		p.data = append(p.data, '\n')
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.id = string(value)
			p.hasID = true
		}
	case "retry":
		if n, ok := digits(value); ok {
			p.retry = n
		}
	}
	return sseEvent{}, false
}

// digits parses a value of ASCII digits only; one too large for an int64
// is taken as the largest.
func digits(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		n = 1<<63 - 1
	}
	return n, true
}

// dispatch ends the event being read: an event when data came, else
// nothing but the id it set.
func (p *sseParser) dispatch() (sseEvent, bool) {
	p.last = p.id
	hasID := p.hasID
	p.hasID = false
	if len(p.data) == 0 {
		p.typ = ""
		return sseEvent{}, false
	}
	ev := sseEvent{typ: p.typ, data: string(p.data[:len(p.data)-1]), id: p.last, hasID: hasID}
	if ev.typ == "" {
		ev.typ = "message"
	}
	p.typ, p.data = "", p.data[:0]
	return ev, true
}
