// Package redistest starts real redis-server processes for tests: a single
// server on a free loopback port, and a three-master Redis Cluster. Each
// has persistence off and lives in the test's temporary directory; the
// test's cleanup kills it.
//
// Without redis-server on PATH the tests skip, except in CI (CI=true),
// where they fail.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Require skips the test, or fails it in CI, when redis-server or
// redis-cli is not on PATH.
func Require(t testing.TB) {
	t.Helper()
	for _, name := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not on PATH; CI must install it (see .ci/run)", name)
			}
			t.Skipf("SKIP: %s is not on PATH: install redis-server 7 to run the Redis tests", name)
		}
	}
}

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
	out *logBuf
	// exited is closed when the current process has exited.
	exited chan struct{}
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Start starts a redis-server on a free loopback port. extra are more
// command-line options.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	Require(t)
	port := FreePort(t, false)
	return startOn(t, port, t.TempDir(), extra)
}

func startOn(t testing.TB, port int, dir string, extra []string) *Server {
	t.Helper()
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--protected-mode", "no", "--loglevel", "warning",
	}
	s := &Server{t: t, Port: port, dir: dir, args: append(args, extra...)}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// Restart starts the server again on the same port after Stop or Kill,
// and waits until it answers PING. Without persistence it starts empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatalf("redis-server on port %d is already running", s.Port)
	}
	cmd := exec.Command("redis-server", s.args...)
	s.out = &logBuf{}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := cmd.Start(); err != nil {
			s.t.Fatalf("starting redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		if waitPing(s.Addr(), exited, deadline) {
			s.cmd, s.exited = cmd, exited
			return
		}
		_ = cmd.Process.Kill()
		<-exited
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on port %d did not start: %s", s.Port, s.out)
		}
		// The port may be held a moment longer by the previous process.
		cmd = exec.Command("redis-server", s.args...)
		cmd.Stdout, cmd.Stderr = s.out, s.out
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL and waits for it to exit. It does
// nothing if the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Do runs redis-cli against the server and returns its trimmed output.
func (s *Server) Do(args ...string) string {
	s.t.Helper()
	return Cli(s.t, s.Addr(), args...)
}

// Cli runs redis-cli -h -p addr args... and returns its trimmed output.
func Cli(t testing.TB, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitPing polls addr with PING until it answers PONG, the process exits
// or the deadline passes.
func waitPing(addr string, exited <-chan struct{}, deadline time.Time) bool {
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if ping(addr) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

var portMu sync.Mutex
var usedPorts = map[int]bool{}

// FreePort returns a loopback TCP port that is free now and was not
// returned before in this process. With bus, port+10000 (a cluster node's
// bus port) is free too.
func FreePort(t testing.TB, bus bool) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if usedPorts[p] || (bus && (p+10000 > 65535 || usedPorts[p+10000])) {
			continue
		}
		if bus {
			lb, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
			if err != nil {
				continue
			}
			lb.Close()
			usedPorts[p+10000] = true
		}
		usedPorts[p] = true
		return p
	}
	t.Fatal("no free port found")
	return 0
}

// Cluster is a Redis Cluster of three masters without replicas.
type Cluster struct {
	Nodes []*Server
}

// URL is the cluster's URL for broker/redis: the first node, the others
// as seeds, cluster=true.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr() + "?cluster=true"
	for _, n := range c.Nodes[1:] {
		u += "&addr=" + n.Addr()
	}
	return u
}

// StartCluster starts three cluster-enabled redis-servers, joins them with
// redis-cli --cluster create, and waits until every node reports the
// cluster ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	c := &Cluster{}
	var addrs []string
	for range 3 {
		port := FreePort(t, true)
		dir := t.TempDir()
		s := startOn(t, port, dir, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
		})
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		for !strings.Contains(n.Do("cluster", "info"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s: %s", n.Addr(), n.Do("cluster", "info"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Every node must know every slot's owner before clients are routed.
	for _, n := range c.Nodes {
		for {
			out := n.Do("cluster", "slots")
			if strings.Count(out, "127.0.0.1") >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster slots incomplete on %s: %s", n.Addr(), out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// logBuf keeps the last output of a process, for failure messages.
type logBuf struct {
	mu  sync.Mutex
	buf []byte
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 64<<10 {
		b.buf = b.buf[len(b.buf)-32<<10:]
	}
	return len(p), nil
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("%q", b.buf)
}
