package bench_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/internal/bench"
	"github.com/longpoll/longpoll/internal/cli"
)

// node is one longpoll server of a cluster under test, counting the
// publishes it was sent.
type node struct {
	url       string
	publishes atomic.Int64
}

// newCluster starts n longpoll servers over one shared memory store, each
// on its own loopback port: nodes of one cluster, as `longpoll serve`
// processes sharing a Redis store are.
func newCluster(t *testing.T, n int) []*node {
	t.Helper()
	b := memory.New()
	t.Cleanup(func() { b.Close() }) // after every server's cleanup below
	nodes := make([]*node, n)
	for i := range nodes {
		srv, err := longpoll.New(b)
		if err != nil {
			t.Fatal(err)
		}
		nd := &node{}
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/v1/publish" {
				nd.publishes.Add(1)
			}
			srv.ServeHTTP(w, r)
		}))
		nd.url = ts.URL
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			ts.Close()
		})
		nodes[i] = nd
	}
	return nodes
}

func TestClusterFanout(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t, 2)
	servers := []string{nodes[0].url, nodes[1].url}
	code, out, errOut, res := runBench(t, "--scenario", "fanout", "--server", strings.Join(servers, ","),
		"--subscribers", "30", "--messages", "3", "--warmup", "0", "--workers", "2", "--source-addrs", "2", "--run-timeout", "30s", "--quiet")
	if code != cli.ExitOK || res == nil {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	// Every subscriber of either node had every message once, in order:
	// nothing lost, nothing twice, as many deliveries as expected.
	checkDelivery(t, res)
	if res.Published != 3 || len(res.Rounds) != 3 {
		t.Fatalf("published %d in %d rounds", res.Published, len(res.Rounds))
	}
	for _, r := range res.Rounds {
		if r.Received != 30 {
			t.Errorf("round %d reached %d of 30 subscribers", r.Number, r.Received)
		}
	}
	// Half of the subscribers polled the second node, which was sent no
	// publish: what they received came across nodes.
	if !slices.Equal(res.DeliveredPerServer, []uint64{45, 45}) {
		t.Errorf("delivered per server %v, want 15 subscribers × 3 messages on each", res.DeliveredPerServer)
	}
	if p0, p1 := nodes[0].publishes.Load(), nodes[1].publishes.Load(); p0 != 3 || p1 != 0 {
		t.Errorf("publishes: %d to the first node, %d to the second; want 3 and 0", p0, p1)
	}
	// Each node counts only its own polls: 30 held is the sum of both.
	if res.Held != 30 || !slices.Equal(res.HeldPerServer, []int{15, 15}) {
		t.Errorf("held %d, per server %v; want 30 as 15 + 15", res.Held, res.HeldPerServer)
	}
	if res.Server != strings.Join(servers, ",") || !slices.Equal(res.Servers, servers) {
		t.Errorf("server %q, servers %q", res.Server, res.Servers)
	}
	for _, want := range []string{
		fmt.Sprintf("fanout (longpoll at 2 nodes: %s, %s;", servers[0], servers[1]),
		fmt.Sprintf("30 polls at once (as counted by the servers: 15 at %s, 15 at %s)", servers[0], servers[1]),
		fmt.Sprintf("90 of 90 expected (45 at %s, 45 at %s)", servers[0], servers[1]),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// startServeProcess starts this test binary as a longpoll server over its
// own memory store (see serveUntilTerm) and returns its URL and pid once it
// answers.
func startServeProcess(t *testing.T) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), serveEnv+"="+addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, cmd.Process.Pid
			}
		}
		select {
		case <-exited:
			t.Fatal("the server process exited before answering")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server process did not answer at %s: %v", url, err)
		}
	}
}

func TestClusterCapacity(t *testing.T) {
	t.Parallel()
	url0, pid0 := startServeProcess(t)
	url1, pid1 := startServeProcess(t)
	code, out, errOut, res := runBench(t, "--scenario", "capacity", "--server", url0+", "+url1,
		"--server-pid", fmt.Sprintf("%d,%d", pid0, pid1), "--subscribers", "40", "--workers", "2",
		"--duration", "300ms", "--run-timeout", "30s", "--quiet")
	if code != cli.ExitOK || res == nil {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if res.Held != 40 || !slices.Equal(res.HeldPerServer, []int{20, 20}) {
		t.Errorf("held %d, per server %v; want 40 as 20 + 20", res.Held, res.HeldPerServer)
	}
	if res.ServerPID != 0 || !slices.Equal(res.ServerPIDs, []int{pid0, pid1}) {
		t.Errorf("server pid %d, pids %v; want %d and %d", res.ServerPID, res.ServerPIDs, pid0, pid1)
	}
	if len(res.RSSBeforePerPID) != 2 || len(res.RSSHeldPerPID) != 2 {
		t.Fatalf("RSS per pid %v before, %v held", res.RSSBeforePerPID, res.RSSHeldPerPID)
	}
	for i := range 2 {
		if res.RSSBeforePerPID[i] <= 0 || res.RSSHeldPerPID[i] <= 0 {
			t.Errorf("pid %d: RSS %d before, %d held", res.ServerPIDs[i], res.RSSBeforePerPID[i], res.RSSHeldPerPID[i])
		}
	}
	if sum := res.RSSBeforePerPID[0] + res.RSSBeforePerPID[1]; res.RSSBefore != sum {
		t.Errorf("RSS before %d, the pids' sum %d", res.RSSBefore, sum)
	}
	if sum := res.RSSHeldPerPID[0] + res.RSSHeldPerPID[1]; res.RSSHeld != sum {
		t.Errorf("RSS held %d, the pids' sum %d", res.RSSHeld, sum)
	}
	if want := float64((res.RSSHeld - res.RSSBefore) / 40); res.RSSPerPoll < want-1 || res.RSSPerPoll > want+1 {
		t.Errorf("RSS per poll %g, want (held - before) / 40 = %g", res.RSSPerPoll, want)
	}
	for _, want := range []string{
		fmt.Sprintf("capacity (longpoll at 2 nodes: %s, %s;", url0, url1),
		"held (sum over 2 pids)",
		fmt.Sprintf("pid %d ", pid0),
		fmt.Sprintf("pid %d ", pid1),
		"RSS per held poll",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	const two = "http://127.0.0.1:1,http://127.0.0.1:2"
	for _, tc := range []struct {
		name string
		cfg  bench.Config
		want string // in the error; "" for none
	}{
		{"one server", bench.Config{Server: "http://127.0.0.1:1", ServerPID: "7"}, ""},
		{"two servers, two pids", bench.Config{Server: two, ServerPID: "7, 8"}, ""},
		{"two servers, one pid", bench.Config{Server: two, ServerPID: "7"}, ""},
		{"a bad URL among several", bench.Config{Server: "http://127.0.0.1:1,ftp://x"}, `not "ftp://x"`},
		{"an empty URL", bench.Config{Server: "http://127.0.0.1:1,"}, `not ""`},
		{"a URL twice", bench.Config{Server: "http://127.0.0.1:1,http://127.0.0.1:1/"}, "lists http://127.0.0.1:1/ twice"},
		{"too many URLs", bench.Config{Server: manyServers(bench.MaxServers + 1)}, fmt.Sprintf("at most %d URLs", bench.MaxServers)},
		{"nchan with two", bench.Config{Server: two, Protocol: bench.ProtocolNchan}, "--protocol nchan takes one --server URL, not 2"},
		{"spawn with two", bench.Config{Server: two, Spawn: "longpoll serve"}, "--spawn starts one server"},
		{"more pids than URLs", bench.Config{Server: two, ServerPID: "7,8,9"}, "lists 3 pids for 2 --server URL(s)"},
		{"two pids for one URL", bench.Config{Server: "http://127.0.0.1:1", ServerPID: "7,8"}, "lists 2 pids for 1 --server URL(s)"},
		{"a bad pid", bench.Config{Server: two, ServerPID: "7,x"}, `not "x"`},
		{"a negative pid", bench.Config{Server: "http://127.0.0.1:1", ServerPID: "-1"}, `not "-1"`},
		{"a pid twice", bench.Config{Server: two, ServerPID: "7,7"}, "lists 7 twice"},
		{"pids and spawn", bench.Config{Server: "http://127.0.0.1:1", ServerPID: "7", Spawn: "x"}, "exclude each other"},
		{"fewer subscribers than URLs", bench.Config{Server: two + ",http://127.0.0.1:3", Subscribers: 2}, "--subscribers (2) must be at least the number of --server URLs (3)"},
		{"a negative warm-up", bench.Config{Server: two, Warmup: -1}, "--warmup must be 0 to 100"},
		{"a negative start", bench.Config{Server: two, StartAfter: -time.Second}, "--start-after must be 0 or more"},
		{"a start past the timeout", bench.Config{Server: two, StartAfter: time.Minute, Timeout: time.Minute}, "shorter than --run-timeout"},
		{"a negative period", bench.Config{Server: two, Scenario: bench.Fanout, RoundEvery: -time.Second}, "--round-every and --round-offset must be 0 or more"},
		{"an offset alone", bench.Config{Server: two, Scenario: bench.Fanout, RoundOffset: time.Second}, "--round-offset needs --round-every"},
		{"turns outside a fanout", bench.Config{Server: two, Scenario: bench.Burst, RoundEvery: time.Second}, "--round-every is for the fanout scenario"},
		{"reading first outside a fanout", bench.Config{Server: two, Scenario: bench.Throughput, ReadFirst: true}, "--read-first is for the fanout scenario"},
		{"source addresses, one URL not loopback", bench.Config{Server: "http://127.0.0.1:1,http://example.com", SourceAddrs: 2}, "needs every --server on loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			if c.Scenario == "" {
				c.Scenario = bench.Fanout
			}
			if c.Protocol == "" {
				c.Protocol = bench.ProtocolLongpoll
			}
			err := c.Check()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// Source addresses default on only when every server is on loopback.
func TestConfigSourceAddrsDefault(t *testing.T) {
	for _, tc := range []struct {
		server string
		want   int
	}{
		{"http://127.0.0.1:1,http://localhost:2", 1},
		{"http://127.0.0.1:1,http://192.0.2.1:2", 0},
	} {
		c := bench.Config{Scenario: bench.Fanout, Protocol: bench.ProtocolLongpoll, Server: tc.server}
		if err := c.Check(); err != nil {
			t.Fatalf("%s: %v", tc.server, err)
		}
		if c.SourceAddrs != tc.want {
			t.Errorf("%s: %d source addresses, want %d", tc.server, c.SourceAddrs, tc.want)
		}
	}
}

func manyServers(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("http://127.0.0.1:%d", 1000+i)
	}
	return strings.Join(s, ",")
}
