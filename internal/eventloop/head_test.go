//go:build linux

package eventloop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/transport"
)

const testMax = 4096

// manyFields returns n header lines "X-Fn: v", CRLF-terminated.
func manyFields(n int) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "X-F%d: v\r\n", i)
	}
	return sb.String()
}

// simpleHead is a head the dense transport serves. parseHead is given head
// followed by rest and must stop after head.
type simpleHead struct {
	name   string
	head   string
	rest   string
	max    int // 0 means testMax
	method string
	target string
	header http.Header
	close  bool
	length int
}

func (tt simpleHead) limit() int {
	if tt.max == 0 {
		return testMax
	}
	return tt.max
}

var simpleHeads = []simpleHead{
	{
		name:   "minimal",
		head:   "GET /v1/poll HTTP/1.1\r\nHost: example.com\r\n\r\n",
		method: "GET", target: "/v1/poll",
		header: http.Header{"Host": {"example.com"}},
	},
	{
		name:   "pipelined next request",
		head:   "GET /v1/poll?topic=a&timeout=5 HTTP/1.1\r\nHost: h:8080\r\n\r\n",
		rest:   "GET /v1/poll?topic=b HTTP/1.1\r\nHost: h:8080\r\n\r\n",
		method: "GET", target: "/v1/poll?topic=a&timeout=5",
		header: http.Header{"Host": {"h:8080"}},
	},
	{
		name:   "pipelined partial bytes",
		head:   "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		rest:   "GE",
		method: "GET", target: "/",
		header: http.Header{"Host": {"h"}},
	},
	{
		name: "OWS trimmed, keys canonical, repeated values in order, empty value",
		head: "GET /v1/poll HTTP/1.1\r\nhost: \t h \t\r\nx-trace-id:a\r\n" +
			"X-TRACE-ID:  b c \r\nAccept:\r\nuser-AGENT: t/1\r\n\r\n",
		method: "GET", target: "/v1/poll",
		header: http.Header{
			"Host":       {"h"},
			"X-Trace-Id": {"a", "b c"},
			"Accept":     {""},
			"User-Agent": {"t/1"},
		},
	},
	{
		name:   "Connection lists close",
		head:   "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n",
		method: "GET", target: "/",
		header: http.Header{"Host": {"h"}, "Connection": {"keep-alive, Close"}},
		close:  true,
	},
	{
		name:   "close in a second Connection header",
		head:   "GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: h\r\nconnection: ,\tclose\t,\r\n\r\n",
		method: "GET", target: "/",
		header: http.Header{"Host": {"h"}, "Connection": {"keep-alive", ",\tclose\t,"}},
		close:  true,
	},
	{
		name:   "Connection token close only as a prefix",
		head:   "GET / HTTP/1.1\r\nHost: h\r\nConnection: closed, x-close\r\n\r\n",
		method: "GET", target: "/",
		header: http.Header{"Host": {"h"}, "Connection": {"closed, x-close"}},
	},
	{
		name:   "Pragma no-cache implies Cache-Control as in net/http",
		head:   "GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n",
		method: "GET", target: "/",
		header: http.Header{"Host": {"h"}, "Pragma": {"no-cache"}, "Cache-Control": {"no-cache"}},
	},
	{
		name:   "Pragma no-cache keeps an explicit Cache-Control",
		head:   "GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\nCache-Control: max-age=1\r\n\r\n",
		method: "GET", target: "/",
		header: http.Header{"Host": {"h"}, "Pragma": {"no-cache"}, "Cache-Control": {"max-age=1"}},
	},
	{
		name:   "Content-Length 0, escapes, other method",
		head:   "DELETE /v1/poll/a%2Fb?x=%7e HTTP/1.1\r\nContent-Length: 0\r\nHost: [::1]:80\r\n\r\n",
		method: "DELETE", target: "/v1/poll/a%2Fb?x=%7e",
		header: http.Header{"Host": {"[::1]:80"}, "Content-Length": {"0"}},
	},
	{
		name:   "Content-Length 5, the body follows",
		head:   "POST /v1/publish HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
		rest:   "hello",
		method: "POST", target: "/v1/publish",
		header: http.Header{"Host": {"h"}, "Content-Length": {"5"}},
		length: 5,
	},
	{
		name:   "Content-Length of nine digits",
		head:   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 123456789\r\n\r\n",
		method: "POST", target: "/",
		header: http.Header{"Host": {"h"}, "Content-Length": {"123456789"}},
		length: 123456789,
	},
	{
		name:   "16-byte token method",
		head:   "M-SEARCH.!#$%&'* / HTTP/1.1\r\nHost: h\r\n\r\n",
		method: "M-SEARCH.!#$%&'*", target: "/",
		header: http.Header{"Host": {"h"}},
	},
	{
		name:   "8192-byte target",
		head:   "GET /" + strings.Repeat("a", 8191) + " HTTP/1.1\r\nHost: h\r\n\r\n",
		max:    9000,
		method: "GET", target: "/" + strings.Repeat("a", 8191),
		header: http.Header{"Host": {"h"}},
	},
	{
		name:   "64 header lines",
		head:   "GET / HTTP/1.1\r\nHost: h\r\n" + manyFields(63) + "\r\n",
		method: "GET", target: "/",
		header: func() http.Header {
			h := http.Header{"Host": {"h"}}
			for i := range 63 {
				h[fmt.Sprintf("X-F%d", i)] = []string{"v"}
			}
			return h
		}(),
	},
	{
		name:   "head exactly max bytes",
		head:   "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		rest:   "more",
		max:    len("GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
		method: "GET", target: "/",
		header: http.Header{"Host": {"h"}},
	},
}

func TestParseHeadSimple(t *testing.T) {
	for _, tt := range simpleHeads {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseHead([]byte(tt.head+tt.rest), tt.limit(), false)
			if err != nil || h == nil {
				t.Fatalf("parseHead = %v, %v; want a head", h, err)
			}
			if h.method != tt.method || h.target != tt.target || h.close != tt.close || h.n != len(tt.head) || h.length != tt.length {
				t.Errorf("got method %q target %q close %v n %d length %d; want %q %q %v %d %d",
					h.method, h.target, h.close, h.n, h.length, tt.method, tt.target, tt.close, len(tt.head), tt.length)
			}
			if !reflect.DeepEqual(h.header, tt.header) {
				t.Errorf("header = %q; want %q", h.header, tt.header)
			}
		})
	}
}

// notSimpleHead breaks one rule of a simple head.
type notSimpleHead struct {
	name string
	in   string
	max  int // 0 means testMax
}

func (tt notSimpleHead) limit() int {
	if tt.max == 0 {
		return testMax
	}
	return tt.max
}

var notSimpleHeads = []notSimpleHead{
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0},
	{"TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0},
	{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: h\r\n\r\n", 0},
	{"lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", 0},
	{"longer version", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", 0},
	{"no version", "GET /\r\nHost: h\r\n\r\n", 0},
	{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"17-byte method", "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"non-token method", "GE{T / HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"two spaces after method", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"two spaces before version", "GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 0},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"asterisk target", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"absolute-form target", "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"8193-byte target", "GET /" + strings.Repeat("a", 8192) + " HTTP/1.1\r\nHost: h\r\n\r\n", 9000},
	{"DEL in target", "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"0x80 in target", "GET /a\x80 HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"bad escape in path", "GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"short escape at target end", "GET /a%4 HTTP/1.1\r\nHost: h\r\n\r\n", 0},
	{"bare LF after request line", "GET / HTTP/1.1\nHost: h\r\n\r\n", 0},
	{"bare LF after header", "GET / HTTP/1.1\r\nHost: h\n\r\n", 0},
	{"bare LF ending head", "GET / HTTP/1.1\r\nHost: h\r\n\n", 0},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 0},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 0},
	{"obs-fold with tab", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 0},
	{"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 0},
	{"empty name", "GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", 0},
	{"no colon", "GET / HTTP/1.1\r\nHost: h\r\nX-Foo\r\n\r\n", 0},
	{"non-token name", "GET / HTTP/1.1\r\nHost: h\r\nX(y): 1\r\n\r\n", 0},
	{"0x80 in value", "GET / HTTP/1.1\r\nHost: h\r\nX: caf\x80\r\n\r\n", 0},
	{"control byte in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 0},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 0},
	{"65 header lines", "GET / HTTP/1.1\r\nHost: h\r\n" + manyFields(64) + "\r\n", 0},
	{"no Host", "GET / HTTP/1.1\r\nX: h\r\n\r\n", 0},
	{"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 0},
	{"empty Host", "GET / HTTP/1.1\r\nHost: \t \r\n\r\n", 0},
	{"Host with inner space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0},
	{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 0},
	{"Connection element of two words", "GET / HTTP/1.1\r\nHost: h\r\nConnection: 00 Close 0\r\n\r\n", 0},
	{"Connection element not a token", "GET / HTTP/1.1\r\nHost: h\r\nConnection: close;q=1\r\n\r\n", 0},
	{"Content-Length of ten digits", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890\r\n\r\n", 0},
	{"negative Content-Length", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 0},
	{"Content-Length with a sign", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 0},
	{"Content-Length 00", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 00\r\n\r\n", 0},
	{"empty Content-Length", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 0},
	{"two Content-Length 0", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n", 0},
	{"Transfer-Encoding chunked", "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0},
	{"Transfer-Encoding identity", "GET / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: identity\r\n\r\n", 0},
	{"Expect 100-continue", "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", 0},
	{"Upgrade h2c", "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", 0},
	{"Trailer", "GET / HTTP/1.1\r\nHost: h\r\nTrailer: X\r\n\r\n", 0},
	{"complete head over max", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", len("GET / HTTP/1.1\r\nHost: h\r\n\r\n") - 1},
	{"max bytes without end of head", "GET / HTTP/1.1\r\nHost: h\r\nX: aaaa", len("GET / HTTP/1.1\r\nHost: h\r\nX: aaaa")},
}

func TestParseHeadNotSimple(t *testing.T) {
	for _, tt := range notSimpleHeads {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseHead([]byte(tt.in), tt.limit(), false)
			if h != nil || !errors.Is(err, errNotSimple) {
				t.Fatalf("parseHead = %+v, %v; want errNotSimple", h, err)
			}
		})
	}
}

// With no room for a head, even an empty b is over the limit.
func TestParseHeadNoRoom(t *testing.T) {
	for _, max := range []int{0, -5} {
		for _, in := range []string{"", "GET / HTTP/1.1\r\nHost: h\r\n\r\n"} {
			if h, err := parseHead([]byte(in), max, false); h != nil || err != errNotSimple {
				t.Errorf("parseHead(%q, %d) = %+v, %v; want errNotSimple", in, max, h, err)
			}
		}
	}
}

// Every proper prefix of a simple head may still become it.
func TestParseHeadIncomplete(t *testing.T) {
	for _, tt := range simpleHeads {
		t.Run(tt.name, func(t *testing.T) {
			for i := range len(tt.head) {
				if h, err := parseHead([]byte(tt.head[:i]), tt.limit(), false); h != nil || err != nil {
					t.Fatalf("parseHead(%q) = %+v, %v; want nil, nil", tt.head[:i], h, err)
				}
			}
		})
	}
}

// A prefix that no continuation can make simple is rejected before the
// head is complete, so such connections go to net/http at once.
func TestParseHeadEarlyReject(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"HTTP/2 preface", "PRI *"},
		{"TLS record", "\x16"},
		{"leading CR", "\r"},
		{"method too long", "ABCDEFGHIJKLMNOPQ"},
		{"double space", "GET  "},
		{"target not origin-form", "GET h"},
		{"target too long", "GET /" + strings.Repeat("a", 8192)},
		{"bad escape", "GET /%x"},
		{"HTTP/1.0", "GET / HTTP/1.0"},
		{"version too long", "GET / HTTP/1.1 "},
		{"request line ends early", "GET / HTTP/1.\r"},
		{"bare LF", "GET / HTTP/1.1\n"},
		{"bare CR", "GET / HTTP/1.1\r\r"},
		{"obs-fold start", "GET / HTTP/1.1\r\nHost: h\r\n "},
		{"second Host", "GET / HTTP/1.1\r\nHost: h\r\nhost:"},
		{"inner space in Host", "GET / HTTP/1.1\r\nHost: a b"},
		{"Content-Length with a leading zero", "GET / HTTP/1.1\r\nContent-Length: 01"},
		{"Content-Length 0x", "GET / HTTP/1.1\r\nContent-Length: 0 x"},
		{"Connection of two words", "GET / HTTP/1.1\r\nConnection: keep alive"},
		{"Transfer-Encoding name", "GET / HTTP/1.1\r\nTransfer-Encoding:"},
		{"no Host at blank line", "GET / HTTP/1.1\r\nX: y\r\n\r"},
		{"65th header line starts", "GET / HTTP/1.1\r\nHost: h\r\n" + manyFields(63) + "X"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if h, err := parseHead([]byte(tt.in), 1<<20, false); h != nil || err != errNotSimple {
				t.Fatalf("parseHead(%q) = %+v, %v; want errNotSimple", tt.in, h, err)
			}
		})
	}
}

func TestParseHeadAllocs(t *testing.T) {
	const simple = "GET /v1/poll?topic=a&timeout=5 HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\nConnection: keep-alive\r\n\r\n"
	tests := []struct {
		name string
		in   string
		max  float64
	}{
		{"incomplete", simple[:len(simple)-1], 0},
		{"not simple", "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", 0},
		// head, the one string, the map and its first group, the values array.
		{"simple", simple, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.in)
			got := testing.AllocsPerRun(100, func() { parseHead(b, testMax, false) })
			if got > tt.max {
				t.Errorf("allocs = %v; want at most %v", got, tt.max)
			}
		})
	}
}

// FuzzParseHead checks parseHead against net/http: whatever it accepts,
// http.ReadRequest reads the same way and net/http's server hands to its
// handler; and every prefix of an accepted head is still incomplete.
func FuzzParseHead(f *testing.F) {
	for _, tt := range simpleHeads {
		f.Add([]byte(tt.head+tt.rest), uint16(tt.limit()))
	}
	for _, tt := range notSimpleHeads {
		f.Add([]byte(tt.in), uint16(tt.limit()))
	}
	// net/http's server closes after this one although Request.Close is false.
	f.Add([]byte("0 / HTTP/1.1\r\nCon00000000000:0000\r\nHost:00\r\nConneCtion:00 Close 0\r\n\r\n"), uint16(testMax))
	f.Add([]byte("GET /%41?%zz#f HTTP/1.1\r\nHost: h\r\nX:\t\t\r\n\r\n"), uint16(testMax))

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	f.Cleanup(srv.Close)
	client := &rawClient{addr: srv.Listener.Addr().String()}
	f.Cleanup(client.close)

	f.Fuzz(func(t *testing.T, b []byte, max16 uint16) {
		max := int(max16)
		h, err := parseHead(b, max, false)
		switch {
		case err != nil:
			if err != errNotSimple || h != nil {
				t.Fatalf("parseHead = %+v, %v; want nil, errNotSimple", h, err)
			}
			if len(b) < max {
				// An early rejection must hold whatever follows.
				for _, more := range []string{"\r\n", "\r\nHost: h\r\n\r\n", "\n\r\n\r\n"} {
					if h, _ := parseHead(append(slices.Clip(b), more...), max, false); h != nil {
						t.Fatalf("rejected %q but accepted it followed by %q", b, more)
					}
				}
			}
			return
		case h == nil:
			if len(b) >= max {
				t.Fatalf("parseHead(%d bytes, %d) = nil, nil; want errNotSimple", len(b), max)
			}
			return
		}

		if h.n < 4 || h.n > min(len(b), max) || string(b[h.n-4:h.n]) != "\r\n\r\n" {
			t.Fatalf("n = %d of %d bytes (max %d): not the end of a head", h.n, len(b), max)
		}
		raw := b[:h.n]
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatalf("accepted %q but http.ReadRequest: %v", raw, err)
		}
		if req.Method != h.method || req.RequestURI != h.target || req.Close != h.close {
			t.Errorf("net/http read method %q target %q close %v; parseHead %q %q %v",
				req.Method, req.RequestURI, req.Close, h.method, h.target, h.close)
		}
		if req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.ContentLength != int64(h.length) || req.TransferEncoding != nil {
			t.Errorf("net/http read proto %d.%d, length %d, TE %q", req.ProtoMajor, req.ProtoMinor,
				req.ContentLength, req.TransferEncoding)
		}
		for key, vals := range h.header {
			if key == "Host" {
				if len(vals) != 1 || req.Host != vals[0] {
					t.Errorf("Host = %q; net/http read %q", vals, req.Host)
				}
				continue
			}
			if !slices.Equal(req.Header[key], vals) {
				t.Errorf("%s = %q; net/http read %q", key, vals, req.Header[key])
			}
		}
		for key := range req.Header {
			if _, ok := h.header[key]; !ok {
				t.Errorf("net/http read header %s that parseHead lost; parseHead keys %q",
					key, slices.Sorted(maps.Keys(h.header)))
			}
		}

		checkBare(t, raw, h)

		if again, err := parseHead(raw, h.n, false); err != nil || !reflect.DeepEqual(again, h) {
			t.Errorf("parseHead(head, len(head), false) = %+v, %v; want %+v", again, err, h)
		}
		if again, err := parseHead(raw, h.n-1, false); again != nil || err != errNotSimple {
			t.Errorf("parseHead(head, len(head)-1) = %+v, %v; want errNotSimple", again, err)
		}
		for i := range h.n {
			if p, err := parseHead(b[:i], max, false); p != nil || err != nil {
				t.Fatalf("prefix %q of accepted head: parseHead = %+v, %v; want nil, nil", b[:i], p, err)
			}
		}

		if h.length > 1<<16 {
			return // not worth sending to the server
		}
		resp := client.roundTrip(t, append(slices.Clip(raw), make([]byte, h.length)...))
		if resp.StatusCode != http.StatusNoContent || resp.Close != h.close {
			t.Errorf("net/http server answered %q with %s, close %v; want 204, close %v",
				raw, resp.Status, resp.Close, h.close)
		}
	})
}

// rawClient sends raw requests to a net/http server over one loopback
// connection, kept alive while the server keeps it, so that fuzzing does not
// run out of ephemeral ports.
type rawClient struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
}

// roundTrip sends raw and reads the server's answer.
func (c *rawClient) roundTrip(t *testing.T, raw []byte) *http.Response {
	t.Helper()
	if c.conn == nil {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	resp, err := c.send(raw)
	if err != nil || resp.Close {
		c.close()
	}
	if err != nil {
		t.Fatalf("net/http's answer to %q: %v", raw, err)
	}
	return resp
}

func (c *rawClient) send(raw []byte) (*http.Response, error) {
	if err := c.conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(raw); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, err
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// checkBare holds the bare form of an accepted head to its full form h:
// bare exactly when every field is plain, with the same request line,
// Host, first X-Request-Id, close and length.
func checkBare(t *testing.T, raw []byte, h *head) {
	t.Helper()
	b, err := parseHead(raw, len(raw), true)
	if err != nil || b == nil {
		t.Fatalf("bare parseHead(%q) = %+v, %v", raw, b, err)
	}
	plain := true
	for key := range h.header {
		if !transport.PlainField(strings.ToLower(key)) && key != "X-Request-Id" {
			plain = false
		}
	}
	if !plain {
		if !reflect.DeepEqual(b, h) {
			t.Errorf("bare parseHead(%q) = %+v; want the full head %+v", raw, b, h)
		}
		return
	}
	if b.header != nil || b.method != h.method || b.target != h.target || b.close != h.close ||
		b.length != h.length || b.n != h.n || b.host != h.header.Get("Host") || b.rid != h.header.Get("X-Request-Id") {
		t.Errorf("bare parseHead(%q) = %+v; full head %+v", raw, b, h)
	}
}

func TestBareHead(t *testing.T) {
	for _, raw := range []string{
		"GET /v1/poll?topic=a HTTP/1.1\r\nHost: h:1\r\nUser-Agent: x\r\n\r\n",
		"GET /v1/poll?topic=a HTTP/1.1\r\nhost: h\r\nX-REQUEST-ID:  r-1 \r\nx-request-id: r-2\r\nConnection: keep-alive, Close\r\n\r\n",
		"GET /v1/poll HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n\r\n",
		"GET /v1/poll HTTP/1.1\r\nHost: h\r\nOrigin: https://a.example\r\n\r\n",
		"GET /v1/poll HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n",
	} {
		h, err := parseHead([]byte(raw), testMax, false)
		if err != nil || h == nil {
			t.Fatalf("%q: %v", raw, err)
		}
		checkBare(t, []byte(raw), h)
	}
	b, _ := parseHead([]byte("GET /v1/poll?topic=a HTTP/1.1\r\nhost: h\r\nX-REQUEST-ID:  r-1 \r\nx-request-id: r-2\r\nConnection: keep-alive, Close\r\n\r\n"), testMax, true)
	if b.header != nil || b.rid != "r-1" || b.host != "h" || !b.close || b.target != "/v1/poll?topic=a" {
		t.Errorf("bare head %+v", b)
	}
	if b, _ := parseHead([]byte("GET /v1/poll HTTP/1.1\r\nHost: h\r\nCookie: a=b\r\n\r\n"), testMax, true); b.header == nil {
		t.Errorf("a head with a Cookie came bare: %+v", b)
	}
}

func TestBareURL(t *testing.T) {
	for _, target := range []string{"/v1/poll", "/v1/poll?", "/v1/poll?topic=a&cursor=x", "/v1/poll?a?", "/v1/poll??", "/v1/poll?a#b", "/v1/poll?%zz"} {
		want, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatal(err)
		}
		if got := bareURL(target); !reflect.DeepEqual(&got, want) {
			t.Errorf("bareURL(%q) = %#v; url.ParseRequestURI gives %#v", target, got, *want)
		}
	}
}
