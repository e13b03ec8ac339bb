package client_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll/client"
	"github.com/longpoll/longpoll/internal/cli"
)

// The longpoll binary, built once for the tests that run it (TestMain
// removes binDir).
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func longpollBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "longpoll-cli-test"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "longpoll")
		// go test puts its own go first on the PATH of what it runs.
		const goTool = "go"
		out, err := exec.Command(goTool, "build", "-o", binPath, "github.com/longpoll/longpoll/cmd/longpoll").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// listenWatcher is a process's stderr: it keeps the text and reports the
// URL of serve's "longpoll listening" line.
type listenWatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
	url  chan string
}

var listeningURL = regexp.MustCompile(`msg="longpoll listening".* url=(\S+)`)

func (w *listenWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := listeningURL.FindSubmatch(w.buf.Bytes()); m != nil {
		w.once.Do(func() { w.url <- string(m[1]) })
	}
	return len(p), nil
}

func (w *listenWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startServe runs "longpoll serve" on a free port and returns its URL; the
// server is stopped with SIGTERM at the end of the test.
func startServe(t *testing.T, bin string) string {
	t.Helper()
	// A fresh memory store each time: the default store keeps its data.
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--store", "memory", "--shutdown-grace", "2s")
	cmd.Env = sandboxEnv(t, "LONGPOLL_LOG_LEVEL=info")
	stderr := &listenWatcher{url: make(chan string, 1)}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("longpoll serve: %v\n%s", err, stderr)
		}
	})
	select {
	case u := <-stderr.url:
		return u
	case <-time.After(30 * time.Second):
		t.Fatalf("longpoll serve did not start:\n%s", stderr)
		return ""
	}
}

// sandboxEnv is the environment of a child process: this one's, with
// XDG_DATA_HOME in the test's temporary directory so that nothing lands
// in the user's own data directory, and extra.
func sandboxEnv(t *testing.T, extra ...string) []string {
	env := append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	return append(env, extra...)
}

// runCLI runs the binary to completion with stdin and returns its exit
// code, stdout and stderr.
func runCLI(t *testing.T, bin string, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = sandboxEnv(t, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// line is one line of longpoll subscribe.
type subLine struct {
	Topic string          `json:"topic"`
	Seq   uint64          `json:"seq"`
	Time  string          `json:"time"`
	ID    string          `json:"id"`
	Data  json.RawMessage `json:"data"`
	Gap   *struct {
		Topic  string `json:"topic"`
		Reason string `json:"reason"`
		Missed uint64 `json:"missed"`
	} `json:"gap"`
}

// subscriber is a running "longpoll subscribe".
type subscriber struct {
	cmd    *exec.Cmd
	out    *bufio.Reader
	stderr *listenWatcher
	lines  []subLine
}

func startSubscribe(t *testing.T, bin string, args ...string) *subscriber {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"subscribe"}, args...)...)
	cmd.Env = sandboxEnv(t)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &subscriber{cmd: cmd, out: bufio.NewReader(stdout), stderr: &listenWatcher{url: make(chan string, 1)}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return s
}

// read reads lines until the subscriber has printed want in all, or its
// output ends; a last line cut short by a kill is dropped.
func (s *subscriber) read(t *testing.T, want int) {
	t.Helper()
	for want < 0 || len(s.lines) < want {
		text, err := s.out.ReadString('\n')
		if err != nil {
			if err == io.EOF && want < 0 {
				return
			}
			t.Fatalf("after %d lines: %v; stderr:\n%s", len(s.lines), err, s.stderr)
		}
		var l subLine
		if err := json.Unmarshal([]byte(text), &l); err != nil {
			t.Fatalf("line %q: %v", text, err)
		}
		s.lines = append(s.lines, l)
	}
}

// stop signals the subscriber, reads the rest of its output and returns
// its exit code (-1 when killed).
func (s *subscriber) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	s.cmd.Process.Signal(sig)
	s.read(t, -1)
	err := s.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

func TestCLIEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := longpollBinary(t)
	url := startServe(t, bin)
	env := []string{"LONGPOLL_SERVER=" + url}

	t.Run("publish stdin twice appends once", func(t *testing.T) {
		var in strings.Builder
		for i := 1; i <= 250; i++ {
			fmt.Fprintf(&in, "{\"n\": %d}\n", i)
		}
		in.WriteString("\n") // blank: skipped, still counted
		for pass := range 2 {
			code, out, errs := runCLI(t, bin, env, in.String(), "publish", "--id-prefix", "r1-", "--batch", "40", "cli.once")
			if code != 0 {
				t.Fatalf("pass %d: exit %d: %s", pass, code, errs)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 250 {
				t.Fatalf("pass %d: %d receipts", pass, len(lines))
			}
			for i, l := range lines {
				want := fmt.Sprintf(`{"topic":"cli.once","seq":%d,"id":"r1-%d"`, i+1, i+1)
				if pass == 1 {
					want += `,"duplicate":true`
				}
				if l != want+"}" {
					t.Fatalf("pass %d: receipt %q, want %q; stderr:\n%s", pass, l, want+"}", errs)
				}
			}
		}
	})

	for _, tc := range []struct {
		name string
		sig  os.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"SIGKILL", syscall.SIGKILL}} {
		t.Run("subscribe resume after "+tc.name, func(t *testing.T) {
			testSubscribeResume(t, bin, url, env, tc.sig)
		})
	}
}

// testSubscribeResume stops a subscriber with sig while messages flow,
// resumes it from its cursor file and checks what the two runs printed.
func testSubscribeResume(t *testing.T, bin, url string, env []string, sig os.Signal) {
	const first, total, limit = 200, 500, 10
	topic := "cli." + strings.ToLower(sig.String()[:4])
	var in strings.Builder
	for i := 1; i <= first; i++ {
		fmt.Fprintf(&in, "%d\n", i)
	}
	if code, _, errs := runCLI(t, bin, env, in.String(), "publish", topic); code != 0 {
		t.Fatalf("publish: exit %d: %s", code, errs)
	}
	cursorFile := filepath.Join(t.TempDir(), "sub.cursor")
	args := []string{topic, "--server", url, "--since", "earliest", "--cursor-file", cursorFile, "--limit", fmt.Sprint(limit), "--timeout", "5s"}

	// More messages arrive while the first run prints.
	c := newClient(t, url)
	published := make(chan error, 1)
	go func() {
		for i := first + 1; i <= total; i++ {
			if _, err := c.Publish(t.Context(), topic, i); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	run1 := startSubscribe(t, bin, args...)
	run1.read(t, first+50)
	code := run1.stop(t, sig)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if sig == syscall.SIGTERM && code != 0 {
		t.Fatalf("SIGTERM: exit %d, want 0; stderr:\n%s", code, run1.stderr)
	}
	if saved, err := client.ReadCursorFile(cursorFile); err != nil || saved == "" {
		t.Fatalf("cursor file after %v: %q, %v", sig, saved, err)
	}

	run2 := startSubscribe(t, bin, args...)
	seen := map[uint64]bool{}
	for _, l := range run1.lines {
		seen[l.Seq] = true
	}
	for len(seen) < total {
		run2.read(t, len(run2.lines)+1)
		seen[run2.lines[len(run2.lines)-1].Seq] = true
	}
	if code := run2.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("second run: exit %d; stderr:\n%s", code, run2.stderr)
	}

	// Each run is in order without gaps; together they cover 1..total.
	for r, lines := range [][]subLine{run1.lines, run2.lines} {
		for i, l := range lines {
			if l.Gap != nil || l.Topic != topic || (i > 0 && l.Seq != lines[i-1].Seq+1) || string(l.Data) != fmt.Sprint(l.Seq) {
				t.Fatalf("run %d, line %d: %+v (previous seq %d)", r+1, i, l, lines[max(i-1, 0)].Seq)
			}
			if _, err := time.Parse(time.RFC3339Nano, l.Time); err != nil || len(l.Time) != len("2026-11-27T18:38:55.305229179Z") {
				t.Fatalf("time %q", l.Time)
			}
		}
	}
	n1, n2 := len(run1.lines), len(run2.lines)
	if run1.lines[0].Seq != 1 || run2.lines[n2-1].Seq < total {
		t.Fatalf("runs cover %d..%d and %d..%d", run1.lines[0].Seq, run1.lines[n1-1].Seq, run2.lines[0].Seq, run2.lines[n2-1].Seq)
	}
	resumed, last := run2.lines[0].Seq, run1.lines[n1-1].Seq
	t.Logf("%v after %d lines (seq %d); the resumed run started at seq %d and printed %d lines", sig, n1, last, resumed, n2)
	if resumed > last+1 {
		t.Fatalf("lost seqs %d to %d", last+1, resumed-1)
	}
	dups := last + 1 - resumed
	switch {
	case sig == syscall.SIGTERM && dups != 0:
		t.Fatalf("%d messages printed again after a clean stop", dups)
	case dups > limit:
		t.Fatalf("%d messages printed again: more than one batch of %d", dups, limit)
	}
}

// runInProcess runs the CLI's Run in this process.
func runInProcess(ctx context.Context, stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Run(ctx, args, cli.IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

func TestCLIUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"publish"}, "TOPIC is required"},
		{[]string{"publish", "t", "not json"}, "--raw"},
		{[]string{"publish", "t", "1", "2"}, "unexpected argument"},
		{[]string{"publish", "--id-prefix", "p", "t", "1"}, "--id-prefix is for stdin"},
		{[]string{"publish", "--id", "x", "t"}, "--id is for DATA"},
		{[]string{"publish", "--batch", "0", "t"}, "--batch"},
		{[]string{"publish", "bad topic", "1"}, "topic"},
		{[]string{"publish", "--server", "localhost:1", "t", "1"}, "--server"},
		{[]string{"subscribe"}, "at least one TOPIC"},
		{[]string{"subscribe", "--since", "latest", "t"}, "--since"},
		{[]string{"subscribe", "--timeout", "0s", "t"}, "--timeout"},
		{[]string{"subscribe", "t", "bad topic"}, "topic"},
	} {
		code, _, errs := runInProcess(t.Context(), "", tc.args...)
		if code != cli.ExitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errs, cli.ExitUsage, tc.want)
		}
	}
	code, _, errs := runInProcess(t.Context(), "", "publish", "--help")
	if code != cli.ExitOK || !strings.Contains(errs, "--raw") || strings.Contains(errs, "*--id ") {
		t.Errorf("publish --help: exit %d:\n%s", code, errs)
	}
}

func TestCLIPublishAndSubscribeInProcess(t *testing.T) {
	s := startServer(t, serverConfig{})
	ctx := t.Context()
	code, out, errs := runInProcess(ctx, "", "publish", "--server", s.URL, "--id", "k1", "t", `{"a": [1, 2]}`)
	if code != 0 || out != `{"topic":"t","seq":1,"id":"k1"}`+"\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out, errs)
	}
	code, out, errs = runInProcess(ctx, "plain text\r\n\nsecond line", "publish", "--server", s.URL, "--raw", "--id-prefix", "p", "t")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"id":"p3"`) {
		t.Fatalf("raw: exit %d, out %q, err %q", code, out, errs)
	}
	code, out, errs = runInProcess(ctx, "1\n2\noops\n4\n", "publish", "--server", s.URL, "t")
	if code != cli.ExitError || strings.Count(out, "\n") != 2 || !strings.Contains(errs, "line 3") {
		t.Fatalf("bad line: exit %d, out %q, err %q", code, out, errs)
	}

	cursor := filepath.Join(t.TempDir(), "c")
	sctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- cli.Run(sctx, []string{"subscribe", "--server", s.URL, "--since", "earliest", "--cursor-file", cursor, "t"},
			cli.IO{Stdin: strings.NewReader(""), Stdout: pw, Stderr: &errb})
		pw.Close()
	}()
	r := bufio.NewReader(pr)
	var lines []string
	for len(lines) < 6 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err, errb.String())
		}
		lines = append(lines, l)
	}
	cancel()
	io.Copy(io.Discard, r)
	if code := <-done; code != 0 {
		t.Fatalf("subscribe: exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(lines[0], `{"topic":"t","seq":1,"time":"`) || !strings.HasSuffix(lines[0], `,"id":"k1","data":{"a":[1,2]}}`+"\n") {
		t.Fatalf("line %q", lines[0])
	}
	if !strings.HasSuffix(lines[1], `"id":"p1","data":"plain text"}`+"\n") || !strings.HasSuffix(lines[2], `"id":"p2","data":""}`+"\n") {
		t.Fatalf("raw lines %q", lines[1:3])
	}
	if c, err := client.ReadCursorFile(cursor); err != nil || c == "" {
		t.Fatalf("cursor file: %q, %v", c, err)
	}
}
