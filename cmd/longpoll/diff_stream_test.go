package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// diffNormEvents is a stream's body with what may differ set aside:
// comments (pings, whose number depends on timing) are left out, the
// advised retry's value and the events' ids (cursors) are blanked, and
// each event's data is compared as JSON, as reply bodies are.
func diffNormEvents(body []byte) string {
	var b strings.Builder
	for _, ev := range bytes.Split(body, []byte("\n\n")) {
		var fields []string
		for _, line := range strings.Split(string(ev), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			switch {
			case line == "" || strings.HasPrefix(line, ":"):
			case k == "retry":
				fields = append(fields, "retry")
			case k == "id":
				if v == "" {
					fields = append(fields, "id=empty")
				} else {
					fields = append(fields, "id")
				}
			case k == "data":
				fields = append(fields, "data="+diffNormBody([]byte(v)))
			default:
				fields = append(fields, line)
			}
		}
		if len(fields) > 0 {
			fmt.Fprintf(&b, "{%s}", strings.Join(fields, " "))
		}
	}
	return b.String()
}

// TestDiffStream: GET /v1/stream, which the event loop parks as it parks
// a poll, framed and ended as net/http ends it: a backlog, a message
// published while it waits, a request pipelined behind it (which waits
// for the stream's end, as under net/http), a half-close, Connection:
// close, CORS, and the errors before a stream begins.
func TestDiffStream(t *testing.T) {
	diffGate(t)
	t.Parallel()
	const accept = "Accept: text/event-stream\r\n"
	get := func(target, extra string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + accept + extra + "\r\n"
	}
	cases := []struct {
		name       string
		setup      []string // messages published to topic "ds" first
		send       string
		closeWrite bool
		want       int
		publish    string // published to topic "dl" once a stream waits on it
		statuses   []int
	}{
		{name: "backlog, then its end", setup: []string{`1`, `{"a":2}`, `"three"`}, send: get("/v1/stream?topic=ds&since=earliest", ""), want: 1, statuses: []int{200}},
		{name: "a publish while it waits", send: get("/v1/stream?topic=dl", ""), want: 1, publish: `{"live":true}`, statuses: []int{200}},
		{name: "a request pipelined behind it", setup: []string{`1`}, send: get("/v1/stream?topic=ds&since=earliest", "") + diffGET("/healthz"), want: 2, statuses: []int{200, 200}},
		{name: "half-close", send: get("/v1/stream?topic=dh", ""), closeWrite: true, statuses: []int{200}},
		{name: "connection close", send: get("/v1/stream?topic=dc", "Connection: close\r\n"), statuses: []int{200}},
		{name: "cors", send: get("/v1/stream?topic=do", "Origin: https://app.example\r\n"), want: 1, statuses: []int{200}},
		{name: "no topic", send: get("/v1/stream", ""), want: 1, statuses: []int{400}},
		{name: "bad cursor", send: get("/v1/stream?topic=a&cursor=zz", ""), want: 1, statuses: []int{400}},
		{name: "bad Last-Event-ID", send: get("/v1/stream?topic=a", "Last-Event-ID: nope\r\n"), want: 1, statuses: []int{400}},
		{name: "bad since", send: get("/v1/stream?topic=a&since=yesterday", ""), want: 1, statuses: []int{400}},
		{name: "POST", send: diffPOST("/v1/stream?topic=a", `{}`), want: 1, statuses: []int{405}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := diffStart(t, "--max-stream", "2s", "--cors-origins", "https://app.example")
			ctx := t.Context()
			res := diffEach(p, func(_ int, s *server) diffResult {
				for _, d := range c.setup {
					if st, _, body, err := diffDo(ctx, "POST", s.url+"/v1/publish", `{"topic":"ds","data":`+d+`}`); err != nil || st != 200 {
						return diffResult{end: fmt.Sprintf("setup publish: %d %s %v", st, body, err)}
					}
				}
				sc := diffScript{parts: [][]byte{[]byte(c.send)}, closeWrite: c.closeWrite, want: c.want, wait: 8 * time.Second}
				if c.publish == "" {
					return diffPlay(diffAddr(s), sc)
				}
				out := make(chan diffResult, 1)
				go func() { out <- diffPlay(diffAddr(s), sc) }()
				if err := diffWaiting(ctx, s, "dl", 1); err != nil {
					<-out
					return diffResult{end: "waiting: " + err.Error()}
				}
				if st, _, body, err := diffDo(ctx, "POST", s.url+"/v1/publish", `{"topic":"dl","data":`+c.publish+`}`); err != nil || st != 200 {
					<-out
					return diffResult{end: fmt.Sprintf("publish: %d %s %v", st, body, err)}
				}
				return <-out
			})
			diffCompare(t, res, false, true)
			for i, r := range res {
				tr := diffTransports[i]
				if len(r.resps) != len(c.statuses) {
					t.Errorf("%s: %d replies, want %d: %s", tr, len(r.resps), len(c.statuses), r.summary())
					continue
				}
				for j, x := range r.resps {
					if x.Status != c.statuses[j] {
						t.Errorf("%s: reply %d: status %d, want %d", tr, j+1, x.Status, c.statuses[j])
					}
				}
			}
			if len(res[0].resps) != len(res[1].resps) {
				return
			}
			for j := range res[0].resps {
				d, s := res[0].resps[j], res[1].resps[j]
				if d.Header.Get("Content-Type") != "text/event-stream" {
					if a, b := diffNormBody(d.Body), diffNormBody(s.Body); a != b {
						t.Errorf("reply %d's body differs:\n dense: %s\n   std: %s", j+1, a, b)
					}
					continue
				}
				a, b := diffNormEvents(d.Body), diffNormEvents(s.Body)
				if a != b {
					t.Errorf("reply %d's events differ:\n dense: %s\n   std: %s", j+1, a, b)
				}
				if c.name == "backlog, then its end" && strings.Count(a, "event: message") != 3 || !strings.Contains(a, `"reason":"max_stream"`) && !c.closeWrite {
					t.Errorf("reply %d's events: %s; want the messages, then the close event", j+1, a)
				}
			}
		})
	}
}
