package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReadmeStream runs the README's curl command for /v1/stream against
// the binary and sees a message published meanwhile arrive as an event.
func TestReadmeStream(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is not installed; .ci/run installs it")
		}
		t.Skip("curl is not installed")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^curl -N .*/v1/stream\?topic=news'$`).Find(readme)
	if line == nil {
		t.Fatal("no curl -N ... /v1/stream command in the README")
	}
	s := startServer(t, nil)
	cmdline := strings.ReplaceAll(string(line), "localhost:8080", strings.TrimPrefix(s.url, "http://"))
	cmd := exec.Command("sh", "-c", "exec "+cmdline+" --max-time 20 --silent")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitWaiting(t, s.url, "news", 1)
	if st, b := fetch(t, s.url+"/v1/publish", `{"topic":"news","data":{"text":"hello"}}`); st != 200 {
		t.Fatalf("publish: %d %s", st, b)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	deadline := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("curl ended; it printed %q", seen)
			}
			seen = append(seen, l)
			if strings.HasPrefix(l, "data: ") && strings.Contains(l, `"data":{"text":"hello"}`) {
				if len(seen) < 3 || seen[len(seen)-3] != "event: message" || !strings.HasPrefix(seen[len(seen)-2], "id: ") {
					t.Fatalf("the event is not event/id/data: %q", seen)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no message event from curl in 15s; it printed %q", seen)
		}
	}
}
