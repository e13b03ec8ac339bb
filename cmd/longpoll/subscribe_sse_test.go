package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var streamsServed = regexp.MustCompile(`(?m)^longpoll_http_requests_total\{code="2xx",route="stream"\} (\d+)$`)

// streamsEnded returns how many streams the server has ended, from its
// metrics.
func streamsEnded(t *testing.T, base string) int {
	t.Helper()
	st, body := fetch(t, base+"/metrics", "")
	if st != 200 {
		t.Fatalf("metrics: %d", st)
	}
	m := streamsServed.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestSubscribeSSE runs subscribe --transport sse (and LONGPOLL_TRANSPORT)
// against the binary: every message once and in order across the
// server's ends of the stream, and a cursor file that the poll transport
// resumes from, and the other way round, exactly where the other stopped.
func TestSubscribeSSE(t *testing.T) {
	s := startServer(t, nil, "--max-stream", "200ms", "--retry-after", "50ms")
	cursor := filepath.Join(t.TempDir(), "cursor")
	published := 0
	publish := func(n int) {
		for range n {
			published++
			if st, b := fetch(t, s.url+"/v1/publish", fmt.Sprintf(`{"topic":"sse.t","data":%d}`, published)); st != 200 {
				t.Fatalf("publish: %d %s", st, b)
			}
		}
	}
	printed := 0
	expect := func(c *child, n int) {
		t.Helper()
		for range n {
			printed++
			l := c.next(t)
			if !strings.Contains(l, fmt.Sprintf(`"seq":%d,`, printed)) || !strings.HasSuffix(l, fmt.Sprintf(`"data":%d}`, printed)) {
				t.Fatalf("printed %s, want message %d", l, printed)
			}
		}
	}
	stop := func(c *child) {
		t.Helper()
		c.cmd.Process.Signal(syscall.SIGTERM)
		if code := c.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("exit %d at SIGTERM; stderr:\n%s", code, c.stderr.String())
		}
	}

	publish(2)
	sub := startChild(t, []string{"LONGPOLL_TRANSPORT=sse"}, "subscribe", "--server", s.url, "--since", "earliest", "--cursor-file", cursor, "sse.t")
	expect(sub, 2)
	deadline := time.Now().Add(20 * time.Second)
	for streamsEnded(t, s.url) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams ended in 20s of a 200ms --max-stream", streamsEnded(t, s.url))
		}
		publish(1)
		expect(sub, 1)
	}
	t.Logf("%d messages across %d streams", printed, streamsEnded(t, s.url))
	stop(sub)

	publish(3)
	poll := startChild(t, []string{"LONGPOLL_TRANSPORT=sse"}, "subscribe", "--server", s.url, "--transport", "poll", "--cursor-file", cursor, "sse.t")
	expect(poll, 3)
	stop(poll)

	publish(3)
	sub = startChild(t, nil, "subscribe", "--server", s.url, "--transport", "sse", "--cursor-file", cursor, "sse.t")
	expect(sub, 3)
	stop(sub)

	for _, tc := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"--transport", "websocket"}},
		{[]string{"LONGPOLL_TRANSPORT=dense"}, nil}, // serve's, not subscribe's
	} {
		args := append(append([]string{"subscribe", "--server", s.url}, tc.args...), "sse.t")
		if code, _, errs := run(t, tc.env, args...); code != 2 || !strings.Contains(errs, `--transport must be "poll" or "sse"`) {
			t.Fatalf("%v %v: exit %d, stderr %q; want 2", tc.env, tc.args, code, errs)
		}
	}
}
