// Package transport is the contract between a transport that reads
// HTTP itself (internal/eventloop) and the server it fronts: the Server
// it calls, the Sink a parked poll's reply comes back through, the
// Response writer that keeps a whole reply, and the reply Budget both
// sides count bytes in. A poll that must wait is kept by the server as a
// small record, with no goroutine, and its reply is handed to the
// transport when it is ready.
//
// It knows HTTP, not the protocol: it imports neither the server nor its
// parts.
package transport

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll/internal/httpdate"
)

// Sink receives a parked poll's reply.
type Sink interface {
	// Finish writes one complete HTTP/1.1 response: head (status line and
	// header block) followed by body. It is called at most once, from any
	// goroutine, with no server lock held, and must not block. head may
	// be reused once Finish returns; body is shared with other replies
	// and must not be modified. A poll that was cancelled gets no Finish.
	Finish(head, body []byte, now time.Time)
}

// Streamer is implemented by a Sink that can carry a stream: a reply
// whose body goes out in parts as they come (server-sent events), while
// the connection stays with the parked poll. The stream's head and body
// are framed by the caller (Transfer-Encoding: chunked), and its end is
// a Finish whose head is empty and whose body is the last chunk.
type Streamer interface {
	// Write writes p, part of a stream's reply, after what was written
	// before it: at once, or kept until the client reads, within the
	// transport's bounds for slow readers. It never blocks. When more
	// than behind bytes written before still wait in the process for the
	// client, the client has fallen behind: the connection is cut, as a
	// slow reader's is, and p is not written. It reports false once the
	// connection is closed (then Cancel follows, or has come already).
	Write(p []byte, behind int) bool
	// Pending returns how many bytes written before wait in the process
	// for the client: a stream writes no more events while some do, and
	// is told when they are gone (Drainer).
	Pending() int
	// Cut closes the connection at once (a reset), as a slow reader's.
	Cut()
}

// Drainer is implemented by a parked stream: the transport calls Drained
// once the output that waited for its client is all in the socket.
type Drainer interface {
	Drained()
}

// Runner is implemented by a Sink whose transport keeps goroutines to
// run work on. The server answers woken polls there: a goroutine started
// for each publish would begin with a small stack and grow it, a copy, on
// its way down to the socket writes.
type Runner interface {
	// Run runs f soon on another goroutine. It never blocks.
	Run(f func())
}

// Poll is a parked poll.
type Poll interface {
	// Cancel ends the poll without a reply: its client is gone.
	Cancel()
	// Release asks for the reply now, with what the poll has (a request
	// pipelined behind it is waiting). Finish follows unless the poll was
	// cancelled.
	Release()
}

// Server is what a transport needs of the server it fronts: the
// *longpoll.Server gives it through its Transport method. A transport
// holds it in its configuration; nothing reaches the server through
// package state, and a handler that only wraps the server cannot stand
// in for it.
type Server interface {
	// ServeHTTP serves a request under /v1/ other than a poll (a
	// publish, a topic's info, a preflight) that the transport read
	// itself: it goes to the server with no routing on the way.
	http.Handler
	// ServePoll serves the poll request r. When the reply is ready at
	// once it is written to w and ServePoll returns nil; otherwise the
	// poll is parked and returned, and its reply goes to sink, perhaps
	// before ServePoll returns.
	ServePoll(w http.ResponseWriter, r *http.Request, sink Sink) Poll
	// Bare reports whether the server reads nothing of a poll's header
	// but X-Request-Id when the request carries only the fields a plain
	// poll may (PlainField): a transport may then give it such a poll
	// without the rest of its header.
	Bare() bool
	// Pause returns once the server is writing no large fan-out: an
	// event loop calls it before it takes more input, so that a
	// publish's replies all go out before the loop reads the re-polls
	// they cause, as a single-threaded server's would. It costs an
	// atomic load when no fan-out is under way.
	Pause()
	// Budget is the server's reply budget, which the transport counts
	// output waiting on its connections in.
	Budget() *Budget
}

// PlainField reports whether a header field of that name, in lower case,
// may be left out of a bare poll's request: the server reads none of them.
func PlainField(lower string) bool {
	switch lower {
	case "host", "user-agent", "accept", "accept-encoding", "accept-language",
		"connection", "cache-control", "pragma", "referer", "dnt", "priority",
		"sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest":
		return true
	}
	return false
}

// Pause, when set, returns once srv is writing no large fan-out: an event
// loop calls it before it takes more input, so that a publish's replies
// all go out before the loop reads the re-polls they cause, as a
// single-threaded server's would. It costs an atomic load when no
// fan-out is under way. Package longpoll sets Pause.
var Pause func(srv http.Handler)

// Response is an http.ResponseWriter that keeps the whole reply, for a
// transport that writes it out itself.
type Response struct {
	Status int
	Body   []byte
	// RequestID, when set, is the reply's X-Request-Id unless its header
	// has one: the server sets it here rather than in a header map.
	RequestID string
	// Reserved is what the reply holds of the server's reply budget
	// (Budget): the transport lets it go once the reply is written, or
	// waits on the connection, where it is counted again.
	Reserved int
	// AcceptGzip is set by a transport that leaves a request's header
	// out (a bare poll, Server.Bare) when its Accept-Encoding takes gzip.
	AcceptGzip bool
	hdr        http.Header
	json       bool // JSON's header lines go with the head (SetJSON)
	gzip       bool // and Content-Encoding: gzip (SetJSONGzipBody)
}

// JSONFields are the header lines of every JSON reply of the server's.
const JSONFields = "Content-Type: application/json\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\nVary: Accept-Encoding\r\n"

// JSONGzipFields are JSONFields for a body compressed with gzip.
const JSONGzipFields = JSONFields + "Content-Encoding: gzip\r\n"

// SetJSON sets a JSON reply whose header is Content-Type
// application/json, Cache-Control no-store and X-Accel-Buffering no, and
// its Content-Length: what the server's JSON replies carry, rendered with
// the head rather than kept in a header map. It is for a reply whose
// header is otherwise empty (Fields is nil).
func (w *Response) SetJSON(status int, body []byte) {
	w.json = true
	w.WriteHeader(status)
	w.Body = append(w.Body, body...)
}

// SetJSONBody is SetJSON for a body the Response keeps as it is, with no
// copy: the caller must not use body again.
func (w *Response) SetJSONBody(status int, body []byte) {
	w.json = true
	w.WriteHeader(status)
	if len(w.Body) == 0 {
		w.Body = body
		return
	}
	w.Body = append(w.Body, body...)
}

// SetJSONGzipBody is SetJSONBody for a body compressed with gzip.
func (w *Response) SetJSONGzipBody(status int, body []byte) {
	w.gzip = true
	w.SetJSONBody(status, body)
}

// Fields returns the header set so far, perhaps nil: unlike Header, it
// makes no map.
func (w *Response) Fields() http.Header { return w.hdr }

// Header implements http.ResponseWriter.
func (w *Response) Header() http.Header {
	if w.hdr == nil {
		w.hdr = make(http.Header, 8)
	}
	return w.hdr
}

// WriteHeader implements http.ResponseWriter.
func (w *Response) WriteHeader(code int) {
	if w.Status == 0 {
		w.Status = code
	}
}

// Write implements http.ResponseWriter.
func (w *Response) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.Body = append(w.Body, b...)
	return len(b), nil
}

// AppendHead appends w's status line and header block, for its body.
func (w *Response) AppendHead(buf []byte, close bool) []byte {
	var extra []byte
	if _, ok := w.hdr["X-Request-Id"]; !ok && w.RequestID != "" {
		var b [160]byte
		extra = append(append(append(b[:0], "X-Request-Id: "...), w.RequestID...), "\r\n"...)
	}
	var fields string
	switch {
	case w.gzip:
		fields = JSONGzipFields
	case w.json:
		fields = JSONFields
	}
	return appendHead(buf, max(w.Status, http.StatusOK), w.hdr, fields, extra, len(w.Body), close, time.Now())
}

// AppendHead appends an HTTP/1.1 status line and header block: hdr, then
// extra (header lines already rendered, each ending in CRLF), then a
// Content-Length of n unless hdr has one, n is negative (a chunked body,
// whose Transfer-Encoding is in hdr or extra) or the status has no body
// (204, 304), Connection: close when close, and Date.
func AppendHead(buf []byte, status int, hdr http.Header, extra []byte, n int, close bool, now time.Time) []byte {
	return appendHead(buf, status, hdr, "", extra, n, close, now)
}

// StreamFields are the header lines of a stream of server-sent events,
// whose body is chunked.
const StreamFields = "Content-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n"

// AppendStreamHead appends the head of a stream of server-sent events
// (status 200, StreamFields, then extra, and Date), whose chunks follow
// (AppendChunk).
func AppendStreamHead(buf []byte, extra []byte, close bool, now time.Time) []byte {
	return appendHead(buf, http.StatusOK, nil, StreamFields, extra, -1, close, now)
}

// AppendChunk appends p as one chunk of a chunked body; an empty p
// appends nothing (an empty chunk would end the body).
func AppendChunk(buf, p []byte) []byte {
	if len(p) == 0 {
		return buf
	}
	buf = strconv.AppendInt(buf, int64(len(p)), 16)
	buf = append(buf, "\r\n"...)
	buf = append(buf, p...)
	return append(buf, "\r\n"...)
}

// LastChunk ends a chunked body.
const LastChunk = "0\r\n\r\n"

// AppendJSONHead is AppendHead for a JSON reply with no header map:
// JSONFields (JSONGzipFields for a body compressed with gzip), then extra.
func AppendJSONHead(buf []byte, status int, extra []byte, n int, gzip, close bool, now time.Time) []byte {
	fields := JSONFields
	if gzip {
		fields = JSONGzipFields
	}
	return appendHead(buf, status, nil, fields, extra, n, close, now)
}

func appendHead(buf []byte, status int, hdr http.Header, fields string, extra []byte, n int, close bool, now time.Time) []byte {
	buf = append(buf, "HTTP/1.1 "...)
	buf = strconv.AppendInt(buf, int64(status), 10)
	buf = append(buf, ' ')
	buf = append(buf, http.StatusText(status)...)
	buf = append(buf, "\r\n"...)
	for k, vs := range hdr {
		if !validFieldName(k) {
			continue // as net/http drops it
		}
		for _, v := range vs {
			buf = appendFieldValue(append(append(buf, k...), ": "...), v)
			buf = append(buf, "\r\n"...)
		}
	}
	buf = append(buf, fields...)
	buf = append(buf, extra...)
	if _, ok := hdr["Content-Length"]; !ok && n >= 0 && status != http.StatusNoContent && status != http.StatusNotModified {
		buf = append(buf, "Content-Length: "...)
		buf = strconv.AppendInt(buf, int64(n), 10)
		buf = append(buf, "\r\n"...)
	}
	if close {
		buf = append(buf, "Connection: close\r\n"...)
	}
	buf = append(buf, "Date: "...)
	buf = httpdate.Append(buf, now)
	return append(buf, "\r\n\r\n"...)
}

// validFieldName reports whether k may name a header field: one or more
// token characters (RFC 9110), httpguts.ValidHeaderFieldName's rule.
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenByte[k[i]] {
			return false
		}
	}
	return true
}

var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// appendFieldValue appends v as net/http writes a response header value:
// CR and LF become spaces, then leading and trailing spaces, tabs, CRs
// and LFs are trimmed (http.Header.Write), so that no value can end the
// field or the head early. A value with no control byte and no space at
// either end, the usual one, is appended as it is.
func appendFieldValue(buf []byte, v string) []byte {
	plain := v == "" || v[0] != ' ' && v[len(v)-1] != ' '
	for i := 0; plain && i < len(v); i++ {
		plain = v[i] >= 0x20
	}
	if plain {
		return append(buf, v...)
	}
	i, j := 0, len(v)
	for i < j && fieldSpace(v[i]) {
		i++
	}
	for j > i && fieldSpace(v[j-1]) {
		j--
	}
	for ; i < j; i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		buf = append(buf, c)
	}
	return buf
}

// fieldSpace reports whether c is white space that textproto.TrimString
// trims from a value.
func fieldSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// AcceptsGzip reports whether an Accept-Encoding field value takes gzip:
// gzip (or x-gzip) listed with a weight above zero, or, when neither is
// listed, * with a weight above zero (RFC 9110, 12.5.3). Several
// Accept-Encoding fields are one list joined by commas.
func AcceptsGzip(v string) bool {
	star := false
	for len(v) > 0 {
		var item string
		item, v, _ = strings.Cut(v, ",")
		name, params, _ := strings.Cut(item, ";")
		switch name = strings.TrimSpace(name); {
		case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
			return qualityAboveZero(params)
		case name == "*":
			star = qualityAboveZero(params)
		}
	}
	return star
}

// qualityAboveZero reports whether the parameters of a list item leave
// its weight above zero: no q, or a q that is not 0, 0., 0.0, 0.00, 0.000.
func qualityAboveZero(params string) bool {
	for len(params) > 0 {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		val = strings.TrimSpace(val)
		if val == "" || val[0] != '0' {
			return val != ""
		}
		return strings.Trim(val[1:], ".0") != "" // 0.5 yes; 0, 0.0, 0.000 no
	}
	return true
}
