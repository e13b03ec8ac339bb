package main

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fetch returns the status and body of a GET or, with a body, a POST.
func fetch(t *testing.T, u, body string) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if body == "" {
		resp, err = http.Get(u)
	} else {
		resp, err = http.Post(u, "application/json", strings.NewReader(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDrainDelay: with --drain-delay, SIGTERM first drains: held polls
// are answered with their cursors, readiness and new polls get 503
// draining, publishes go on; then the server shuts down as usual.
func TestDrainDelay(t *testing.T) {
	s := startServer(t, nil, "--drain-delay", "60s")
	polled := pollHeld(s.url, "a")
	waitWaiting(t, s.url, "a", 1)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-polled
	if r["status"] != 200 || r["cursor"] == "" || r["retry_after_ms"] == nil || r["timeout"] != false {
		t.Fatalf("held poll at SIGTERM with a drain delay: %v", r)
	}
	waitLog(t, s, "draining before shutdown")
	if st, b := fetch(t, s.url+"/readyz", ""); st != 503 || !strings.Contains(b, "draining") {
		t.Fatalf("readyz while draining: %d %s", st, b)
	}
	if st, b := fetch(t, s.url+"/v1/poll?topic=a&timeout=0", ""); st != 503 || !strings.Contains(b, `"draining"`) {
		t.Fatalf("poll while draining: %d %s", st, b)
	}
	if st, b := fetch(t, s.url+"/v1/publish", `{"topic":"a","data":1}`); st != 200 {
		t.Fatalf("publish while draining: %d %s", st, b)
	}
	if st, b := fetch(t, s.url+"/v1/admin/node", ""); st != 200 || !strings.Contains(b, `"draining":true`) {
		t.Fatalf("admin node while draining: %d %s", st, b)
	}
	if strings.Contains(s.logText(), "shutting down") {
		t.Fatal("shut down before the drain delay ran out")
	}
	// A second signal ends the drain and the process at once.
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("exit after a second signal: %v, want status 1", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second signal did not end the drain")
	}

	// A short delay runs out, and the usual shutdown follows.
	s = startServer(t, nil, "--drain-delay", "100ms")
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("exit after the drain delay: %v\n%s", err, s.logText())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after the drain delay")
	}
	log := s.logText()
	if d, sd := strings.Index(log, "draining before shutdown"), strings.Index(log, "shutting down"); d < 0 || sd < d {
		t.Fatalf("log does not drain, then shut down:\n%s", log)
	}
}
