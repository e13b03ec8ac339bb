package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var binary string

// covering is set when the binary the tests run counts in their coverage
// (see buildArgs).
var covering bool

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "longpoll-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "longpoll")
	if out, err := exec.Command("go", buildArgs(binary)...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building longpoll: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// buildArgs returns the arguments of the go command that builds the
// binary at path. The tests run the binary as a child process, which the
// test binary's coverage cannot see; so under go test -cover the binary is
// built with -cover over the whole module, in the tests' counter mode, and
// each run of it writes its counters to the tests' -test.gocoverdir,
// through GOCOVERDIR, which every child inherits. go test alone sets that
// directory to one it discards; .ci/run names its own
// (go test -cover -coverpkg=./... ./... -args -test.gocoverdir=DIR) and
// counts both with go tool covdata percent -i=DIR.
func buildArgs(path string) []string {
	args := []string{"build", "-o", path}
	mode := testing.CoverMode()
	f := flag.Lookup("test.gocoverdir")
	if mode == "" || f == nil || f.Value.String() == "" {
		return append(args, ".")
	}
	dir, err := filepath.Abs(f.Value.String())
	if err == nil {
		err = os.Setenv("GOCOVERDIR", dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	covering = true
	return append(args, "-cover", "-covermode="+mode, "-coverpkg=github.com/longpoll/longpoll/...", ".")
}

// lockedBuffer is a child's stderr, read while the child writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// server is a longpoll serve child process.
type server struct {
	cmd    *exec.Cmd
	url    string
	mu     sync.Mutex
	stderr strings.Builder
	exited chan error
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

var (
	listenLine    = regexp.MustCompile(`msg="longpoll listening" addr=(\S+)`)
	listenAdmin   = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)
	publishedLine = regexp.MustCompile(`(?m)^longpoll_published_messages_total (\S+)$`)
)

func startServer(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	return startServerVia(t, nil, env, args...)
}

// startServerVia starts longpoll serve as startServer does, but through
// wrapper, a command that runs its arguments (a shell that sets the umask
// first, say); with no wrapper, directly.
func startServerVia(t *testing.T, wrapper []string, env []string, args ...string) *server {
	t.Helper()
	argv := slices.Concat(wrapper, []string{binary, "serve", "--addr", "127.0.0.1:0", "--store", "memory"}, args)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait(); pw.Close() }()
	addr := make(chan string, 1)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.stderr.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listenLine.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		if covering {
			stopForCounters(cmd.Process, logDone)
		}
		cmd.Process.Kill()
		<-logDone
	})
	select {
	case a := <-addr:
		s.url = "http://" + a
	case err := <-s.exited:
		t.Fatalf("server exited at start: %v\n%s", err, s.logText())
	case <-time.After(20 * time.Second):
		t.Fatal("server did not start")
	}
	return s
}

// stopForCounters ends a server that a test leaves running as an operator
// would, since a killed process writes no coverage counters: SIGTERM,
// then a second one, which exits at once (cli.Main), each given a moment.
// exited is closed when the process has exited.
func stopForCounters(p *os.Process, exited <-chan struct{}) {
	for range 2 {
		if p.Signal(syscall.SIGTERM) != nil {
			return // exited already
		}
		select {
		case <-exited:
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "longpoll ") || !strings.Contains(string(out), "go1.") {
		t.Fatalf("version: %q %v", out, err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nosuch"}, {"serve", "--no-such-flag"}, {"serve", "extra"}, {"serve", "--max-hold", "-1s"}} {
		err := exec.Command(binary, args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("longpoll %v: %v, want exit code 2", args, err)
		}
	}
}

// TestSignalShutdown: SIGTERM answers a held poll at once with its cursor
// and a retry_after_ms, and the process exits 0 well within the grace.
func TestSignalShutdown(t *testing.T) {
	s := startServer(t, nil)
	polled := pollHeld(s.url, "a")
	waitWaiting(t, s.url, "a", 1)
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-polled
	if r["status"] != 200 || r["cursor"] == "" || r["retry_after_ms"] == nil || r["timeout"] != false {
		t.Fatalf("held poll at SIGTERM: %v", r)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.logText())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not exit")
	}
	t.Logf("exited %v after SIGTERM", time.Since(start))
}

// mustPublish publishes body, failing the test unless it is answered 200.
func mustPublish(t *testing.T, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/v1/publish", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
}

// pollHeld starts a poll of topic that holds for 50 s and returns where
// its reply arrives, decoded, with its "status".
func pollHeld(base, topic string) <-chan map[string]any {
	polled := make(chan map[string]any, 1)
	go func() {
		resp, err := http.Get(base + "/v1/poll?timeout=50&topic=" + topic)
		if err != nil {
			polled <- map[string]any{"error": err.Error()}
			return
		}
		defer resp.Body.Close()
		var r map[string]any
		json.NewDecoder(resp.Body).Decode(&r)
		r["status"] = resp.StatusCode
		polled <- r
	}()
	return polled
}

// TestEnvAndFlags: a LONGPOLL_ variable sets a flag; the flag wins over it;
// flags may follow positional arguments.
func TestEnvAndFlags(t *testing.T) {
	s := startServer(t, []string{"LONGPOLL_MAX_TOPICS_PER_POLL=1", "LONGPOLL_MAX_BATCH=2"}, "--max-batch", "3")
	get := func(path, body string) (int, string) {
		var resp *http.Response
		var err error
		if body == "" {
			resp, err = http.Get(s.url + path)
		} else {
			resp, err = http.Post(s.url+path, "application/json", strings.NewReader(body))
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, b := get("/v1/poll?topic=a&topic=b&timeout=0", ""); st != 400 || !strings.Contains(b, "too_many_topics") {
		t.Fatalf("env LONGPOLL_MAX_TOPICS_PER_POLL ignored: %d %s", st, b)
	}
	three := `{"messages":[{"topic":"a","data":1},{"topic":"a","data":2},{"topic":"a","data":3}]}`
	if st, b := get("/v1/publish", three); st != 200 {
		t.Fatalf("flag --max-batch 3 must win over LONGPOLL_MAX_BATCH=2: %d %s", st, b)
	}
	if st, _ := get("/metrics", ""); st != 200 {
		t.Fatalf("/metrics: %d", st)
	}
	// At least our 3 (the server also publishes its own stats).
	st, b := get("/metrics", "")
	var n float64
	if m := publishedLine.FindStringSubmatch(b); st == 200 && m != nil {
		fmt.Sscan(m[1], &n)
	}
	if n < 3 {
		t.Fatalf("/metrics lacks the publish count: %d %.300s", st, b)
	}
}

// waitWaiting waits until topic has n polls waiting on the server at
// base, asking with the bearer token tok when it is not empty.
func waitWaiting(t *testing.T, base, topic string, n int, tok ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/topics/"+topic, nil)
		if len(tok) > 0 {
			req.Header.Set("Authorization", "Bearer "+tok[0])
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var r struct{ Waiting int }
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if r.Waiting == n {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("topic %s never had %d waiting", topic, n)
}

// TestSecondSignalExitsAtOnce: with a request stuck in flight, the first
// SIGTERM waits for it (up to the grace period); a second one exits at
// once with status 1.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	s := startServer(t, nil, "--shutdown-grace", "60s")
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A publish whose body never finishes arriving keeps a handler busy.
	// The server's "100 Continue" proves the handler is reading the body.
	fmt.Fprintf(conn, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("no 100 Continue: %q %v", line, err)
	}
	fmt.Fprintf(conn, "{\"topic\":")
	s.cmd.Process.Signal(syscall.SIGTERM)
	waitLog(t, s, "shutting down")
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("exit after a second signal: %v, want status 1", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second signal did not exit at once")
	}
}

// waitLog waits until the server's log holds text.
func waitLog(t *testing.T, s *server, text string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.logText(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", text, s.logText())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
