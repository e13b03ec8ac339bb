package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// answer is what a transport answered to one raw request, less what
// differs between two processes (Date).
type answer struct {
	status                       int
	contentType, location, allow string
	body                         string
}

// sendRaw writes head, then body, on a new connection to the server at
// base, and reads one reply.
func sendRaw(t *testing.T, base, method, head, body string) answer {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, head+body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", head, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: reading the body: %v", head, err)
	}
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Location"), resp.Header.Get("Allow"), string(b)}
}

// TestPathsSameOnEveryTransport sends the same raw requests, paths that
// net/http's mux would clean, escaped separators, trailing slashes and
// case, to longpoll serve over the event loop and over net/http, and
// requires the same status, headers and body. Every path under /v1/
// answers JSON, a path the mux would clean with a 307 to the clean path.
func TestPathsSameOnEveryTransport(t *testing.T) {
	dense := startServer(t, nil, "--transport", "dense")
	std := startServer(t, nil, "--transport", "std")
	if !strings.Contains(dense.logText(), "transport=dense") {
		t.Skip("no event-loop transport on this system")
	}
	const publish = `{"topic":"p","data":1}`
	cases := []struct {
		method, target, body string
		status               int
		location             string // a 307's
	}{
		{"GET", "/v1/topics/../../healthz", "", 307, "/healthz"},
		{"GET", "/v1/topics/a/../b", "", 307, "/v1/topics/b"},
		{"GET", "/v1//poll?topic=a&timeout=0", "", 307, "/v1/poll?topic=a&timeout=0"},
		{"GET", "/v1/./poll?topic=a", "", 307, "/v1/poll?topic=a"},
		{"GET", "/v1/poll/..", "", 307, "/v1"},
		{"GET", "/v1//topics/a%2Fb", "", 307, "/v1/topics/a%2Fb"},
		{"HEAD", "/v1/topics/../poll", "", 307, "/v1/poll"},
		{"HEAD", "/v1//topics/a", "", 307, "/v1/topics/a"},
		{"OPTIONS", "/v1//poll", "", 307, "/v1/poll"},
		{"POST", "/v1//publish", publish, 307, "/v1/publish"},
		{"POST", "/v1/topics/../publish", publish, 307, "/v1/publish"},
		{"GET", "/v1/poll/", "", 404, ""},
		{"POST", "/v1/poll/", `{"topics":["a"]}`, 404, ""},
		{"GET", "/V1/poll?topic=a", "", 404, ""},
		{"GET", "/v1/Poll?topic=a", "", 404, ""},
		{"GET", "/v1/", "", 404, ""},
		{"GET", "/v1%2Fpoll", "", 400, ""}, // the poll, without a topic
		{"GET", "/v1/p%6Fll", "", 400, ""},
		{"GET", "/v1/topics/a%2Fb", "", 200, ""},
		{"GET", "/v1/topics/a%2F..%2Fb", "", 200, ""},
		{"GET", "/v1/topics/..%2F..%2Fhealthz", "", 200, ""},
		{"HEAD", "/v1/topics/a%2fb", "", 200, ""},
		{"DELETE", "/v1/poll", "", 405, ""},
		{"PUT", "/v1//poll", "x", 307, "/v1/poll"},
		{"GET", "/healthz", "", 200, ""},
		// Not under /v1/: net/http's mux answers, the same on both.
		{"GET", "//v1/poll", "", 307, "/v1/poll"},
		{"GET", "/healthz/../readyz", "", 307, "/readyz"},
		{"GET", "/nosuch", "", 404, ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			head := c.method + " " + c.target + " HTTP/1.1\r\nHost: x\r\nX-Request-Id: same\r\nConnection: close\r\n"
			if c.body != "" {
				head += "Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(c.body)) + "\r\n"
			}
			head += "\r\n"
			d := sendRaw(t, dense.url, c.method, head, c.body)
			s := sendRaw(t, std.url, c.method, head, c.body)
			if d != s {
				t.Fatalf("dense answered %+v\nstd answered   %+v", d, s)
			}
			if d.status != c.status || d.location != c.location {
				t.Fatalf("%d Location %q (%s), want %d %q", d.status, d.location, d.body, c.status, c.location)
			}
			if strings.HasPrefix(c.target, "/v1/") && d.contentType != "application/json" {
				t.Fatalf("Content-Type %q under /v1/", d.contentType)
			}
		})
	}
	// No unclean publish was taken as one.
	for _, base := range []string{dense.url, std.url} {
		if st, b := get(t, base+"/v1/topics/p", ""); st != 200 || b != `{"topic":"p","head":0,"oldest":0,"waiting":0}` {
			t.Fatalf("%s after the unclean publishes: %d %s", base, st, b)
		}
	}
}
