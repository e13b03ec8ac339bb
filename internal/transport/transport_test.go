package transport

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestResponseHead(t *testing.T) {
	for _, close := range []bool{false, true} {
		var w Response
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("Vary", "Origin")
		w.Header().Add("Vary", "Cookie")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"a":`))
		w.Write([]byte(`1}`))
		w.WriteHeader(http.StatusOK) // too late: ignored
		raw := append(w.AppendHead(nil, close), w.Body...)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 429 || string(body) != `{"a":1}` || resp.ContentLength != 7 || resp.Close != close ||
			len(resp.Header["Vary"]) != 2 || resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("close=%v: %d %q %v", close, resp.StatusCode, body, resp.Header)
		}
	}
}

func TestAppendHeadExtraAndLength(t *testing.T) {
	hdr := http.Header{"Content-Length": {"2"}}
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	raw := AppendHead(nil, 200, hdr, []byte("X-Request-Id: r\r\n"), 99, false, now)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(append(raw, "ok"...))), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "ok" || resp.Header.Get("X-Request-Id") != "r" || len(resp.Header["Content-Length"]) != 1 ||
		resp.Header.Get("Date") != "Sat, 28 Nov 2026 18:00:00 GMT" {
		t.Errorf("%q: %q %v", raw, body, resp.Header)
	}
}

func TestSetJSON(t *testing.T) {
	w := Response{RequestID: "r-1"}
	w.SetJSON(http.StatusCreated, []byte(`{"a":1}`))
	raw := append(w.AppendHead(nil, false), w.Body...)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	want := map[string]string{
		"Content-Type": "application/json", "Cache-Control": "no-store", "X-Accel-Buffering": "no",
		"Vary": "Accept-Encoding", "Content-Length": "7", "X-Request-Id": "r-1",
	}
	for k, v := range want {
		if got := resp.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if resp.StatusCode != 201 || string(body) != `{"a":1}` || len(resp.Header) != len(want)+1 || resp.Header.Get("Date") == "" {
		t.Errorf("%d %q %v", resp.StatusCode, body, resp.Header)
	}
	if w.Fields() != nil {
		t.Errorf("SetJSON made a header map: %v", w.Fields())
	}
}

// headerLines returns the header lines of a head that appendHead wrote
// from hdr alone (no fields, no extra, no Connection): it drops the status
// line and the Content-Length and Date lines appendHead adds itself. The
// lines are put in net/http's order, by name, each name's values in
// order (a stable sort: appendHead follows the map's order).
func headerLines(t *testing.T, head []byte, hdr http.Header) []string {
	t.Helper()
	s, ok := strings.CutSuffix(string(head), "\r\n\r\n")
	if !ok {
		t.Fatalf("%q: no blank line at the end", head)
	}
	lines := strings.Split(s, "\r\n")
	lines = lines[1 : len(lines)-1] // the status line, Date
	if _, ok := hdr["Content-Length"]; !ok {
		lines = lines[:len(lines)-1]
	}
	slices.SortStableFunc(lines, func(a, b string) int {
		ka, _, _ := strings.Cut(a, ":")
		kb, _, _ := strings.Cut(b, ":")
		return strings.Compare(ka, kb)
	})
	return lines
}

// stdLines renders hdr as net/http writes a response header.
func stdLines(hdr http.Header) []string {
	var b strings.Builder
	hdr.Write(&b)
	s := strings.TrimSuffix(b.String(), "\r\n")
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\r\n")
}

// FuzzAppendHeadFields: appendHead writes a header map as net/http does,
// whatever its names and values: a name that is not a token is dropped,
// CR and LF in a value become spaces and the value is trimmed, so that
// nothing a handler puts in a header can end the head or start another
// field. The head net/http reads back has exactly the fields written.
func FuzzAppendHeadFields(f *testing.F) {
	f.Add("X-A", "plain", "two", "Vary", "Origin")
	f.Add("X-A", "a\r\nSet-Cookie: x=1", " b\t", "X B", "v")
	f.Add("Location", "/x\r\n\r\nHTTP/1.1 200 OK", "\n", "", "\r")
	f.Add("x-a", " \t lead and trail \t ", "mid\rdle", "K:", "\x00\x7f\xff")
	f.Add("Content-Length", "5", "", "\xc3\xa9", "é")
	f.Fuzz(func(t *testing.T, k1, v1, v2, k2, v3 string) {
		hdr := http.Header{}
		hdr[k1] = []string{v1, v2}
		hdr[k2] = append(hdr[k2], v3)
		now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
		head := appendHead(nil, http.StatusOK, hdr, "", nil, 0, false, now)
		got, want := headerLines(t, head, hdr), stdLines(hdr)
		if !slices.Equal(got, want) {
			t.Fatalf("appendHead wrote\n%q\nnet/http writes\n%q", got, want)
		}
		// Nothing in a value ends a line early: the head has one line per
		// field written, and its own.
		lines := len(want) + 3 // the status line, Date, the blank line
		if _, ok := hdr["Content-Length"]; !ok {
			lines++
		}
		if n := strings.Count(string(head), "\r\n"); n != lines {
			t.Fatalf("%q: %d lines, want %d", head, n, lines)
		}
	})
}

// TestAppendHeadFieldsAsServed: on hostile header values, appendHead
// writes the lines a real net/http server writes on the wire.
func TestAppendHeadFieldsAsServed(t *testing.T) {
	hdr := http.Header{
		"X-Inject":   {"a\r\nSet-Cookie: x=1"},
		"X-Split":    {"b\r\n\r\nHTTP/1.1 200 OK"},
		"X-Trim":     {" \t v \t "},
		"X-Multi":    {"1", "\n2\r"},
		"X-Empty":    {""},
		"Bad Name":   {"v"},
		"X-Colon:":   {"v"},
		"X-Nonascii": {"é"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, vs := range hdr {
			w.Header()[k] = vs
		}
		w.Header().Set("Content-Type", "text/plain") // no sniffing
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	raw, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	wire, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	var served []string
	for _, l := range strings.Split(wire, "\r\n")[1:] {
		if name, _, _ := strings.Cut(l, ":"); !slices.Contains([]string{"Date", "Content-Length", "Content-Type", "Connection"}, name) {
			served = append(served, l)
		}
	}
	slices.Sort(served) // net/http sorts by name; the values here sort within theirs
	got := headerLines(t, appendHead(nil, http.StatusOK, hdr, "", nil, 0, false, time.Now()), hdr)
	if !slices.Equal(got, served) {
		t.Fatalf("appendHead wrote\n%q\nnet/http served\n%q", got, served)
	}
	if len(got) != 7 {
		t.Fatalf("%q: want the 7 fields with valid names", got)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for v, want := range map[string]bool{
		"gzip": true, "GZIP": true, "x-gzip": true, "deflate, gzip": true, "gzip;q=1": true,
		"gzip; q=0.5": true, "gzip;q=0.001": true, "*": true, "br, *;q=0.1": true,
		"": false, "identity": false, "br, deflate": false, "gzip;q=0": false, "gzip;q=0.0": false,
		"gzip;q=0.000": false, "gzip;q=0, *": false, "*, gzip;q=0": false, "*;q=0": false,
		"gzipx": false, "gzip;q=": false,
	} {
		if got := AcceptsGzip(v); got != want {
			t.Errorf("AcceptsGzip(%q) = %v, want %v", v, got, want)
		}
	}
}

// FuzzAcceptsGzip: any field value is read without a panic, and a value
// that lists gzip alone with no parameter is always taken.
func FuzzAcceptsGzip(f *testing.F) {
	for _, s := range []string{"gzip", "gzip;q=0", "*, br;q=0.5", ";;,,=", "gzip;q=0.", "x-gzip ; Q = 0.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		AcceptsGzip(v)
		if !strings.Contains(v, "gzip") && !strings.Contains(v, "*") && !strings.Contains(strings.ToLower(v), "gzip") && AcceptsGzip(v) {
			t.Fatalf("AcceptsGzip(%q) with no gzip and no *", v)
		}
	})
}
