//go:build linux

package eventloop

import (
	"bytes"
	"errors"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/longpoll/longpoll/internal/transport"
)

// The dense transport serves only request heads it can recognise without
// doubt; anything else goes to net/http, which answers it with the standard
// behaviour. So these limits and rules are deliberately narrower than HTTP:
// a head outside them is not an error, only not ours.
const (
	maxMethodLen   = 16
	maxTargetLen   = 8192
	maxHeaderLines = 64
	httpVersion    = "HTTP/1.1"
)

// errNotSimple reports a request head the dense transport does not serve itself.
var errNotSimple = errors.New("dense: not a simple request head")

// head is one parsed request head.
type head struct {
	method string      // e.g. "GET"
	target string      // the raw request-target, e.g. "/v1/poll?topic=a&timeout=5"
	header http.Header // canonical keys (textproto.CanonicalMIMEHeaderKey), values in order, OWS trimmed; nil for a bare head
	// A bare head's Host and X-Request-Id (the first one); both are in
	// header otherwise.
	host, rid string
	close     bool // a Connection header lists "close" (case-insensitive, comma-separated list)
	gzip      bool // a bare head's Accept-Encoding takes gzip (transport.AcceptsGzip)
	length    int  // the Content-Length, 0 when absent
	n         int  // bytes of b the head took, through the final CRLF CRLF

	rq *request // what the head is part of: the request is made with it
}

// newHead makes a head inside the request that will carry it.
func newHead() *head {
	rq := requests.Get().(*request)
	rq.h.rq = rq
	return &rq.h
}

// parseHead parses the request head at the start of b.
// It returns (h, nil) for a complete simple head; (nil, nil) when b holds
// no complete head yet and len(b) < max (more bytes may complete it);
// and (nil, errNotSimple) when the head is not simple or b reached max
// bytes without a complete head.
//
// A prefix is rejected as soon as no continuation of it could be simple, so
// a connection speaking something else (an HTTP/2 preface, TLS, HTTP/1.0)
// is handed over on its first bytes. Every proper prefix of a simple head
// gives (nil, nil). parseHead keeps no state between calls: each call
// rescans b, costing O(min(len(b), max)), and only a complete head
// allocates.
//
// A simple head is accepted only if net/http would read the same method,
// target, header values and Close from it and its server would hand it to
// a handler; see head_test.go's FuzzParseHead. Like http.ReadRequest, the
// header gets "Cache-Control: no-cache" for "Pragma: no-cache" if it has no
// Cache-Control of its own.
//
// With bare, a head whose every field is plain (transport.PlainField) comes
// without its header map: only its Host and X-Request-Id are kept.
func parseHead(b []byte, max int, bare bool) (*head, error) {
	limit := min(len(b), max)
	if limit < 0 {
		limit = 0
	}
	n, fields, err := scanHead(b[:limit])
	switch {
	case err != nil:
		return nil, err
	case n > 0:
		if bare {
			if h := buildBareHead(b[:n]); h != nil {
				return h, nil
			}
		}
		return buildHead(b[:n], fields), nil
	case len(b) >= max:
		return nil, errNotSimple
	}
	return nil, nil
}

// scanHead checks b line by line without allocating. It returns the length
// of the head through its blank line and the number of header lines, or
// n == 0 when b ends before the head does.
func scanHead(b []byte) (n, fields int, err error) {
	var s headScanner
	for pos := 0; ; {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			// The last line is unfinished. If it ends in CR, the only
			// simple continuation is LF, so its content is already final.
			line, final := b[pos:], false
			if k := len(line) - 1; k >= 0 && line[k] == '\r' {
				line, final = line[:k], true
			}
			return 0, 0, s.line(line, final)
		}
		line := b[pos : pos+i]
		k := len(line) - 1
		if k < 0 || line[k] != '\r' {
			return 0, 0, errNotSimple // bare LF
		}
		if err := s.line(line[:k], true); err != nil {
			return 0, 0, err
		}
		pos += i + 1
		if s.done {
			return pos, s.fields, nil
		}
	}
}

// headScanner holds what the rules need to remember across lines.
type headScanner struct {
	requestLine bool // the request line has been checked in full
	fields      int  // header lines, counting an unfinished one
	hosts       int
	lengths     int
	done        bool // the blank line ending the head was seen
}

// line checks one line without its CRLF. When final is false the line is
// unfinished and only what is visible is checked: it must be the start of
// some line that the rules accept.
func (s *headScanner) line(l []byte, final bool) error {
	switch {
	case !s.requestLine:
		s.requestLine = final
		return checkRequestLine(l, final)
	case len(l) > 0:
		return s.field(l, final)
	case !final:
		return nil
	case s.hosts != 1:
		return errNotSimple
	}
	s.done = true
	return nil
}

// checkRequestLine checks "METHOD SP target SP HTTP/1.1", or a start of it.
func checkRequestLine(l []byte, final bool) error {
	m := 0
	for m < len(l) && isTokenChar(l[m]) {
		m++
	}
	switch {
	case m > maxMethodLen:
		return errNotSimple
	case m == len(l):
		return unfinished(final)
	case m == 0 || l[m] != ' ':
		return errNotSimple
	}

	rest := l[m+1:]
	t := 0
	for t < len(rest) && rest[t] > ' ' && rest[t] < 0x7f {
		t++
	}
	target := rest[:t]
	switch {
	case t > maxTargetLen:
		return errNotSimple
	case t > 0 && target[0] != '/':
		return errNotSimple
	case !validEscapes(target, final || t < len(rest)):
		return errNotSimple
	case t == len(rest):
		return unfinished(final)
	case t == 0 || rest[t] != ' ':
		return errNotSimple
	}

	version := rest[t+1:]
	if len(version) > len(httpVersion) || string(version) != httpVersion[:len(version)] {
		return errNotSimple
	}
	if len(version) < len(httpVersion) {
		return unfinished(final)
	}
	return nil
}

// unfinished is the verdict on a line that stopped where more was required.
func unfinished(final bool) error {
	if final {
		return errNotSimple
	}
	return nil
}

// validEscapes reports whether every '%' in target starts a %XX escape, as
// url.ParseRequestURI requires of the path. It is checked over the whole
// target, query included, which is only stricter. When whole is false the
// target may continue, so an escape cut short at its end is allowed.
func validEscapes(target []byte, whole bool) bool {
	for i, c := range target {
		if c != '%' {
			continue
		}
		for j := i + 1; j < i+3; j++ {
			if j == len(target) {
				return !whole
			}
			if !isHex(target[j]) {
				return false
			}
		}
	}
	return true
}

// field checks one header line, or a start of it.
func (s *headScanner) field(l []byte, final bool) error {
	s.fields++
	if s.fields > maxHeaderLines {
		return errNotSimple
	}
	// A leading SP or HTAB (obs-fold) fails here: neither is a token char.
	colon := -1
	for i, c := range l {
		if c == ':' {
			colon = i
			break
		}
		if !isTokenChar(c) {
			return errNotSimple
		}
	}
	switch colon {
	case -1:
		return unfinished(final)
	case 0:
		return errNotSimple
	}
	name, value := l[:colon], l[colon+1:]
	for _, c := range value {
		if c != '\t' && (c < ' ' || c > '~') {
			return errNotSimple
		}
	}
	// Trailing OWS of an unfinished value may yet be inner space, but what
	// remains after trimming both ends is a prefix of the final value.
	value = trimOWS(value)

	switch {
	case equalFoldASCII(name, "host"):
		// net/http's server answers 400 to a Host it thinks malformed.
		s.hosts++
		if s.hosts > 1 || final && len(value) == 0 {
			return errNotSimple
		}
		for _, c := range value {
			if !isHostChar(c) {
				return errNotSimple
			}
		}
	case equalFoldASCII(name, "content-length"):
		s.lengths++
		if s.lengths > 1 || !plainLength(value, final) {
			return errNotSimple
		}
	case equalFoldASCII(name, "connection"):
		// net/http's server also closes after its reply when the first
		// Connection value holds "close" between spaces ("a close b"),
		// which Request.Close does not count. In a plain token list the
		// two readings agree.
		if !isTokenList(value) {
			return errNotSimple
		}
	case equalFoldASCII(name, "transfer-encoding"),
		equalFoldASCII(name, "expect"),
		equalFoldASCII(name, "upgrade"),
		equalFoldASCII(name, "trailer"):
		return errNotSimple
	}
	return nil
}

// plainLength reports whether v is (or, unless final, may become) a
// Content-Length of 1 to 9 decimal digits with no leading zero.
func plainLength(v []byte, final bool) bool {
	if len(v) == 0 {
		return !final
	}
	if len(v) > 9 || v[0] == '0' && len(v) > 1 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isTokenList reports whether v is a comma-separated list of tokens with
// optional whitespace around them; empty elements are allowed.
func isTokenList(v []byte) bool {
	for elem := range bytes.SplitSeq(v, []byte(",")) {
		for _, c := range trimOWS(elem) {
			if !isTokenChar(c) {
				return false
			}
		}
	}
	return true
}

// buildHead makes the head from b, which scanHead accepted in full, so it
// no longer checks anything. All strings share one copy of b.
func buildHead(b []byte, fields int) *head {
	s := string(b)
	line, rest, _ := strings.Cut(s, "\r\n")
	method, line, _ := strings.Cut(line, " ")
	target, _, _ := strings.Cut(line, " ")
	h := newHead()
	h.method, h.target, h.n = method, target, len(b)
	h.header = make(http.Header, fields)
	// One backing array for the usual single-valued keys, as textproto does.
	values := make([]string, fields)
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			fixPragma(h.header)
			return h
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.Trim(value, " \t")
		key := textproto.CanonicalMIMEHeaderKey(name)
		if vv, ok := h.header[key]; ok {
			h.header[key] = append(vv, value)
		} else {
			vv, values = values[:1:1], values[1:]
			vv[0] = value
			h.header[key] = vv
		}
		if key == "Connection" && hasToken(value, "close") {
			h.close = true
		}
		if key == "Content-Length" {
			h.length, _ = strconv.Atoi(value) // checked by plainLength
		}
	}
}

// buildBareHead is buildHead for a head whose fields are all plain: it
// keeps the request line, Host, the first X-Request-Id, close and length,
// in one copy of the request line and those values. It returns nil when
// a field is not plain.
func buildBareHead(b []byte) *head {
	end := bytes.Index(b, []byte("\r\n"))
	line := b[:end]
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := sp1 + 1 + bytes.IndexByte(line[sp1+1:], ' ')
	var host, rid []byte
	close, gzip := false, false
	for rest := b[end+2:]; ; {
		i := bytes.Index(rest, []byte("\r\n"))
		field := rest[:i]
		rest = rest[i+2:]
		if len(field) == 0 {
			break
		}
		colon := bytes.IndexByte(field, ':')
		name, value := field[:colon], trimOWS(field[colon+1:])
		var lower [32]byte
		if len(name) > len(lower) {
			return nil
		}
		for i, c := range name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		switch string(lower[:len(name)]) {
		case "host":
			host = value
		case "x-request-id":
			if rid == nil {
				rid = value[:len(value):len(value)]
			}
		case "connection":
			close = close || hasToken(string(value), "close")
		case "accept-encoding":
			gzip = gzip || transport.AcceptsGzip(string(value))
		default:
			if !transport.PlainField(string(lower[:len(name)])) {
				return nil
			}
		}
	}
	// One string for all: request line, Host, request id.
	var sb strings.Builder
	sb.Grow(len(line) + len(host) + len(rid))
	sb.Write(line)
	sb.Write(host)
	sb.Write(rid)
	all := sb.String()
	h := newHead()
	h.method, h.target = all[:sp1], all[sp1+1:sp2]
	h.host = all[len(line) : len(line)+len(host)]
	h.close, h.gzip, h.n = close, gzip, len(b)
	if rid != nil {
		h.rid = all[len(line)+len(host):]
	}
	return h
}

// fixPragma adds "Cache-Control: no-cache" for "Pragma: no-cache" as
// http.ReadRequest does (RFC 7234 section 5.4), so that handlers see the
// header net/http would give them.
func fixPragma(h http.Header) {
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
}

// hasToken reports whether the comma-separated list v holds token, compared
// case-insensitively, as net/http decides Request.Close.
func hasToken(v, token string) bool {
	for part := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.Trim(part, " \t"), token) {
			return true
		}
	}
	return false
}

// trimOWS trims spaces and tabs from both ends of b: by hand, as
// bytes.Trim builds a set of its cutset on every call.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFoldASCII reports whether b equals the lower-case ASCII string lower,
// ignoring ASCII case.
func equalFoldASCII(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isHostChar reports whether net/http's server accepts c in a Host header
// (httpguts.ValidHostHeader).
func isHostChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
