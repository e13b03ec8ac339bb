package longpoll_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// rawRequest sends one request, written as it is, on a new connection to
// the server at base and returns the reply with its body read.
func rawRequest(t *testing.T, base, method, target, extra string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := method + " " + target + " HTTP/1.1\r\nHost: x\r\nX-Request-Id: paths\r\nConnection: close\r\n" + extra + "\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return resp, b
}

// TestUncleanPaths: a /v1/ path that net/http's ServeMux would clean is
// answered as the mux answers it, 307 to the clean path with the query
// kept, but in JSON; it is never taken as a topic name or a route. A path
// the mux leaves as it is (a trailing slash, an escaped slash or dot) is
// served as it is.
func TestUncleanPaths(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		method, target string
		status         int
		location       string // of a 307; the body names it too
		code           string // of an error
	}{
		{"GET", "/v1/topics/../../healthz", 307, "/healthz", ""},
		{"GET", "/v1/topics/a/../b", 307, "/v1/topics/b", ""},
		{"GET", "/v1/topics/a/./b", 307, "/v1/topics/a/b", ""},
		{"GET", "/v1//poll?topic=a&timeout=0", 307, "/v1/poll?topic=a&timeout=0", ""},
		{"GET", "/v1/poll/../poll?topic=a", 307, "/v1/poll?topic=a", ""},
		{"GET", "/v1/topics/x/..", 307, "/v1/topics", ""},
		{"GET", "/v1/topics/x/../", 307, "/v1/topics/", ""},
		{"GET", "/v1//topics/a%2Fb?q=%22", 307, "/v1/topics/a%2Fb?q=%22", ""},
		{"POST", "/v1//publish", 307, "/v1/publish", ""},
		{"HEAD", "/v1/./topics/a", 307, "/v1/topics/a", ""},
		{"OPTIONS", "/v1/../v1/poll", 307, "/v1/poll", ""},
		{"DELETE", "/v1/a/../poll", 307, "/v1/poll", ""},
		{"GET", "/v1/poll/", 404, "", "not_found"},
		{"GET", "/v1/publish/", 404, "", "not_found"},
		{"GET", "/v1/", 404, "", "not_found"},
		{"DELETE", "/v1/poll", 405, "", "method_not_allowed"},
		{"GET", "/v1%2Fpoll", 400, "", "invalid_parameter"}, // the poll, with no topic
		{"GET", "/v1/p%6Fll", 400, "", "invalid_parameter"},
		{"GET", "/v1/topics/a%2Fb", 200, "", ""},
		{"GET", "/v1/topics/a%2F..%2Fb", 200, "", ""},
		{"GET", "/v1/topics/%2e%2e/%2e%2e/healthz", 200, "", ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			resp, b := rawRequest(t, e.url, c.method, c.target, "")
			if resp.StatusCode != c.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, c.status)
			}
			checkJSONHeaders(t, resp.Header)
			if got := resp.Header.Get("Location"); got != c.location {
				t.Errorf("Location %q, want %q", got, c.location)
			}
			if c.method == "HEAD" {
				if len(b) != 0 {
					t.Errorf("HEAD with a body: %q", b)
				}
				return
			}
			switch {
			case c.location != "":
				var r struct{ Location string }
				if err := json.Unmarshal(b, &r); err != nil || r.Location != c.location {
					t.Errorf("body %s: %v, want the location %q", b, err, c.location)
				}
			case c.code != "":
				var er errReply
				if err := json.Unmarshal(b, &er); err != nil || er.Error.Code != c.code {
					t.Errorf("body %s: %v, want code %s", b, err, c.code)
				}
			default:
				var info struct{ Topic string }
				if err := json.Unmarshal(b, &info); err != nil || info.Topic == "" {
					t.Errorf("body %s: %v, want topic info", b, err)
				}
			}
		})
	}
	// The unclean publish appended nothing.
	if _, _, b := e.do(t.Context(), "GET", "/v1/topics/a", "", ""); string(b) != `{"topic":"a","head":0,"oldest":0,"waiting":0}` {
		t.Fatalf("after the redirects: %s", b)
	}
}

// TestUncleanPathPublishFollowed: a client that follows the 307 repeats
// its method and body on the clean path, so an unclean publish still
// publishes, once.
func TestUncleanPathPublishFollowed(t *testing.T) {
	e := newEnv(t, nil)
	status, _, b := e.do(t.Context(), "POST", "/v1//publish", "application/json", `{"topic":"r","data":1}`)
	if status != 200 || !strings.Contains(string(b), `"seq":1`) {
		t.Fatalf("publish through the redirect: %d %s", status, b)
	}
	if r := e.poll(q("topic", "r", "since", "earliest", "timeout", "0")); len(r.Messages) != 1 {
		t.Fatalf("%d messages, want 1", len(r.Messages))
	}
}
