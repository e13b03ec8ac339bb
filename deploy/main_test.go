package deploy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binary is the longpoll binary that TestMain builds from ../cmd/longpoll.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "longpoll-deploy")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "longpoll")
	if out, err := exec.Command("go", "build", "-o", binary, "../cmd/longpoll").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building longpoll: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// childEnv is the environment of the binary's runs: this process's, less
// every LONGPOLL_ variable (which would change the settings under test),
// plus env.
func childEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LONGPOLL_") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// run runs the binary with args and env, and returns its stdout, its
// stderr and its exit status.
func run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = childEnv(env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("longpoll %s: %v", strings.Join(args, " "), err)
		}
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

var (
	helpFlagLine = regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)\s.*\b(LONGPOLL_[A-Z0-9_]+)\)$`)
	serveHelp    struct {
		once  sync.Once
		flags map[string]string // flag name -> its environment variable
	}
)

// serveFlags returns the flags of longpoll serve, as its --help lists
// them, each with its environment variable.
func serveFlags(t *testing.T) map[string]string {
	t.Helper()
	serveHelp.once.Do(func() {
		out, errOut, _ := run(t, nil, "serve", "--help")
		serveHelp.flags = map[string]string{}
		for _, m := range helpFlagLine.FindAllStringSubmatch(out+errOut, -1) {
			serveHelp.flags[m[1]] = m[2]
		}
	})
	// A help that lost its format would make every flag look unknown;
	// these three must be there.
	for _, f := range []string{"addr", "admin-addr", "drain-delay"} {
		if _, ok := serveHelp.flags[f]; !ok {
			t.Fatalf("longpoll serve --help lists no --%s (%d flags read)", f, len(serveHelp.flags))
		}
	}
	return serveHelp.flags
}

// server is a running longpoll serve.
type server struct {
	cmd    *exec.Cmd
	url    string // the main listener's, http://host:port
	admin  string // --admin-addr's, when given
	exited chan struct{}
	mu     sync.Mutex
	log    strings.Builder
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

var (
	// The start-up lines, in text or JSON (--log-format).
	listenLine = regexp.MustCompile(`msg"?[=:]"longpoll listening",?\s*"?addr"?[=:]"?([^\s",]+)`)
	adminLine  = regexp.MustCompile(`msg"?[=:]"admin listening",?\s*"?addr"?[=:]"?([^\s",]+)`)
)

// startServer runs longpoll with args (serve and its flags) and env, and
// returns once it listens: on its main address and, when withAdmin, on
// --admin-addr too. The server is killed at the test's end unless it has
// exited.
func startServer(t *testing.T, env []string, withAdmin bool, args ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = childEnv(env...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{})}
	logDone := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(s.exited) }()
	mainc, adminc := make(chan string, 1), make(chan string, 1)
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listenLine.FindStringSubmatch(line); m != nil {
				mainc <- m[1]
			}
			if m := adminLine.FindStringSubmatch(line); m != nil {
				adminc <- m[1]
			}
		}
		io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.exited
		<-logDone
	})
	deadline := time.After(20 * time.Second)
	for s.url == "" || (withAdmin && s.admin == "") {
		select {
		case a := <-mainc:
			s.url = "http://" + a
		case a := <-adminc:
			s.admin = "http://" + a
		case <-s.exited:
			t.Fatalf("longpoll %s exited at start:\n%s", strings.Join(args, " "), s.logText())
		case <-deadline:
			t.Fatalf("longpoll %s did not start:\n%s", strings.Join(args, " "), s.logText())
		}
	}
	return s
}

// terminate sends SIGTERM, as the kubelet does.
func (s *server) terminate(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// get fetches url and returns its status and body.
func get(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
