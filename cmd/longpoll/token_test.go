package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jwtServer starts longpoll serve --auth jwt and returns it with its
// secret file and a long-lived token that may publish and subscribe to
// news.*.
func jwtServer(t *testing.T, args ...string) (s *server, secret, full string) {
	t.Helper()
	secret = filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("0123456789abcdef", 3)), 0o600); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, nil, append([]string{"--auth", "jwt", "--jwt-secret-file", secret}, args...)...)
	full = token(t, "--secret-file", secret, "--sub", "ops", "--subscribe", "news.*", "--publish", "news.*")
	return s, secret, full
}

// writeToken replaces file with tok as a rotating process would: a new
// file renamed over the old one, so a reader never sees half a token.
func writeToken(t *testing.T, file, tok string) {
	t.Helper()
	tmp := file + ".new"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// expiry reads the exp claim of tok, unverified.
func expiry(t *testing.T, tok string) time.Time {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Exp int64 }
	if err := json.Unmarshal(b, &c); err != nil || c.Exp == 0 {
		t.Fatalf("no exp in %s: %v", b, err)
	}
	return time.Unix(c.Exp, 0)
}

// child is a longpoll command running beside the test: its stdout as
// lines, its stderr as text, its exit.
type child struct {
	lines  chan string
	stderr lockedBuffer
	exited chan error
	cmd    *exec.Cmd
}

func startChild(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	c := &child{lines: make(chan string, 100), exited: make(chan error, 1), cmd: exec.Command(binary, args...)}
	c.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	c.cmd.Stdout, c.cmd.Stderr = pw, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- c.cmd.Wait(); pw.Close() }()
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-read:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-read
		}
	})
	return c
}

// next returns the child's next line of stdout.
func (c *child) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("the command ended; stderr:\n%s", c.stderr.String())
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatalf("no line in 20s; stderr:\n%s", c.stderr.String())
	}
	return ""
}

// wait returns the child's exit status.
func (c *child) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-c.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("the command did not end in %v; stderr:\n%s", within, c.stderr.String())
	}
	return -1
}

// waitStderr waits until the child's stderr holds text.
func (c *child) waitStderr(t *testing.T, text string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(c.stderr.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("stderr never said %q:\n%s", text, c.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run runs a longpoll command to its end.
func run(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// TestTokenFlags: publish and subscribe authenticate with --token-file,
// --token and LONGPOLL_TOKEN; without a token both fail saying how to give
// one; --token with --token-file is a usage error.
func TestTokenFlags(t *testing.T) {
	s, _, full := jwtServer(t)
	file := filepath.Join(t.TempDir(), "token")
	writeToken(t, file, full)

	sub := startChild(t, nil, "subscribe", "--server", s.url, "--token-file", file, "news.a")
	waitWaiting(t, s.url, "news.a", 1, full)
	pubs := []struct {
		name string
		env  []string
		args []string
	}{
		{"token-file", nil, []string{"--token-file", file}},
		{"token", nil, []string{"--token", full}},
		{"LONGPOLL_TOKEN", []string{"LONGPOLL_TOKEN=" + full}, nil},
		{"LONGPOLL_TOKEN_FILE", []string{"LONGPOLL_TOKEN_FILE=" + file}, nil},
		{"flag over env", []string{"LONGPOLL_TOKEN=garbage"}, []string{"--token-file", file}},
	}
	for i, p := range pubs {
		args := append([]string{"publish", "--server", s.url}, p.args...)
		code, out, errs := run(t, p.env, append(args, "news.a", `{"n":`+strconv.Itoa(i+1)+`}`)...)
		if code != 0 || !strings.Contains(out, `"seq":`) {
			t.Fatalf("publish with %s: exit %d\n%s%s", p.name, code, out, errs)
		}
		if l := sub.next(t); !strings.Contains(l, `"data":{"n":`+strconv.Itoa(i+1)+`}`) {
			t.Fatalf("publish with %s: the subscriber printed %s", p.name, l)
		}
	}

	// A subscriber with LONGPOLL_TOKEN, from the earliest message.
	envSub := startChild(t, []string{"LONGPOLL_TOKEN=" + full}, "subscribe", "--server", s.url, "--since", "earliest", "news.a")
	if l := envSub.next(t); !strings.Contains(l, `"data":{"n":1}`) {
		t.Fatalf("subscribe with LONGPOLL_TOKEN printed %s", l)
	}

	t.Run("no token", func(t *testing.T) {
		for _, args := range [][]string{
			{"publish", "--server", s.url, "news.a", "1"},
			{"subscribe", "--server", s.url, "news.a"},
		} {
			code, _, errs := run(t, nil, args...)
			if code != 1 || !strings.Contains(errs, "401 unauthorized") || !strings.Contains(errs, "--token-file") {
				t.Fatalf("%s without a token: exit %d, stderr %q; want 1 and a hint", args[0], code, errs)
			}
		}
	})
	t.Run("both", func(t *testing.T) {
		for _, c := range []struct {
			env  []string
			args []string
		}{
			{nil, []string{"--token", full, "--token-file", file}},
			{[]string{"LONGPOLL_TOKEN=" + full, "LONGPOLL_TOKEN_FILE=" + file}, nil},
		} {
			for _, cmd := range []string{"publish", "subscribe"} {
				args := append(append([]string{cmd, "--server", s.url}, c.args...), "news.a", "1")
				code, _, errs := run(t, c.env, args...)
				if code != 2 || !strings.Contains(errs, "not both") {
					t.Fatalf("%s with both (%v %v): exit %d, stderr %q; want 2", cmd, c.env, c.args, code, errs)
				}
			}
		}
	})
}

// TestSubscribeTokenRotation: a token rotated on disk after the one in use
// expired is read when the server ends the hold with token_expired, and
// the subscription goes on with it.
func TestSubscribeTokenRotation(t *testing.T) {
	s, secret, full := jwtServer(t)
	short := token(t, "--secret-file", secret, "--sub", "u", "--subscribe", "news.*", "--ttl", "1s")
	file := filepath.Join(t.TempDir(), "token")
	writeToken(t, file, short)

	sub := startChild(t, nil, "subscribe", "--server", s.url, "--token-file", file, "news.r")
	waitWaiting(t, s.url, "news.r", 1, full)
	if code, out, errs := run(t, nil, "publish", "--server", s.url, "--token", full, "news.r", `"before"`); code != 0 {
		t.Fatalf("publish: %d %s%s", code, out, errs)
	}
	if l := sub.next(t); !strings.Contains(l, `"before"`) {
		t.Fatalf("got %s", l)
	}
	// The token is past its exp now; the server still takes it for its
	// leeway (5s), and ends the held poll at the leeway's end.
	time.Sleep(time.Until(expiry(t, short)) + 100*time.Millisecond)
	writeToken(t, file, token(t, "--secret-file", secret, "--sub", "u", "--subscribe", "news.*"))
	sub.waitStderr(t, "refreshing", 20*time.Second)
	if code, out, errs := run(t, nil, "publish", "--server", s.url, "--token", full, "news.r", `"after"`); code != 0 {
		t.Fatalf("publish: %d %s%s", code, out, errs)
	}
	if l := sub.next(t); !strings.Contains(l, `"after"`) {
		t.Fatalf("got %s", l)
	}
	sub.cmd.Process.Signal(syscall.SIGTERM)
	if code := sub.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("interrupted subscribe: exit %d; stderr:\n%s", code, sub.stderr.String())
	}
}

// TestSubscribeTokenRefused: when the token expires and the file holds no
// valid new one, subscribe stops with exit status 1 and says why.
func TestSubscribeTokenRefused(t *testing.T) {
	s, secret, full := jwtServer(t)
	for _, c := range []struct {
		name, rotate, want string
	}{
		{"file unchanged", "", "holds no new one"},
		{"invalid token", "not-a-token", "give a token the server accepts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			short := token(t, "--secret-file", secret, "--sub", "u", "--subscribe", "news.*", "--ttl", "1s")
			file := filepath.Join(t.TempDir(), "token")
			writeToken(t, file, short)
			topic := "news." + strings.ReplaceAll(c.name, " ", "-")
			sub := startChild(t, nil, "subscribe", "--server", s.url, "--token-file", file, topic)
			waitWaiting(t, s.url, topic, 1, full)
			if c.rotate != "" {
				writeToken(t, file, c.rotate)
			}
			if code := sub.wait(t, 30*time.Second); code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, sub.stderr.String())
			}
			if errs := sub.stderr.String(); !strings.Contains(errs, c.want) {
				t.Fatalf("stderr does not say %q:\n%s", c.want, errs)
			}
		})
	}
}

// TestBenchSecretFile: a bench against --auth jwt with --secret-file holds
// more subscribers than --max-held-per-client lets one identity hold,
// each under a token of its own, and delivers every round to all of them.
// The old flag names still work, with a warning.
func TestBenchSecretFile(t *testing.T) {
	s, secret, _ := jwtServer(t, "--max-held-per-client", "10")
	file := filepath.Join(t.TempDir(), "result.json")
	code, out, errs := run(t, nil, "bench", "--server", s.url, "--secret-file", secret,
		"--scenario", "fanout", "--subscribers", "30", "--messages", "2", "--warmup", "0",
		"--workers", "1", "--source-addrs", "1", "--quiet", "--timeout", "30s", "--json", file)
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s%s", code, out, errs)
	}
	var res struct {
		Subscribers int
		Published   uint64
		Delivered   uint64
		Lost        uint64
		PollErrors  uint64 `json:"poll_errors"`
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Subscribers != 30 || res.Published != 2 || res.Delivered != 60 || res.Lost != 0 || res.PollErrors != 0 {
		t.Fatalf("result %+v, want 2 rounds delivered to 30 subscribers\n%s", res, b)
	}
	for _, old := range []string{"--timeout is deprecated", "--json is deprecated"} {
		if !strings.Contains(errs, old) {
			t.Errorf("no warning %q in stderr:\n%s", old, errs)
		}
	}

	for _, args := range [][]string{
		{"--secret-file", secret, "--token", "x"},
		{"--timeout", "1m", "--run-timeout", "1m"},
	} {
		code, _, errs := run(t, nil, append([]string{"bench", "--server", s.url}, args...)...)
		if code != 2 {
			t.Errorf("bench %v: exit %d, want 2; stderr %q", args, code, errs)
		}
	}
}
