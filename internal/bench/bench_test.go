package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/internal/bench"
	"github.com/longpoll/longpoll/internal/cli"
)

// newServer starts a longpoll server over a memory store on a loopback
// port.
func newServer(t *testing.T) string {
	t.Helper()
	return newWrappedServer(t, func(h http.Handler) http.Handler { return h })
}

// newWrappedServer is newServer with the server's handler passed through
// wrap.
func newWrappedServer(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	b := memory.New()
	srv, err := longpoll.New(b)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(wrap(srv))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ts.Close()
		b.Close()
	})
	return ts.URL
}

// runBench runs `longpoll bench args...` and returns its exit code, its
// stdout and stderr, and the result it wrote as JSON.
func runBench(t *testing.T, args ...string) (int, string, string, *bench.Result) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "result.json")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	code := cli.Run(ctx, append([]string{"bench", "--json-file", file}, args...), cli.IO{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr})
	var res *bench.Result
	if b, err := os.ReadFile(file); err == nil {
		res = new(bench.Result)
		if err := json.Unmarshal(b, res); err != nil {
			t.Fatalf("the --json-file: %v\n%s", err, b)
		}
	}
	return code, stdout.String(), stderr.String(), res
}

// checkDelivery fails t unless every published message reached every
// subscriber once and in order.
func checkDelivery(t *testing.T, res *bench.Result) {
	t.Helper()
	if res.Published == 0 || res.Delivered != res.Expected || res.Expected != res.Published*uint64(res.Subscribers/res.Topics) {
		t.Errorf("published %d, delivered %d of %d expected", res.Published, res.Delivered, res.Expected)
	}
	if res.Lost != 0 || res.Duplicates != 0 || res.Reordered != 0 || res.Gaps != 0 || res.PublishErrors != 0 {
		t.Errorf("lost %d, duplicates %d, reordered %d, gaps %d, publish errors %d", res.Lost, res.Duplicates, res.Reordered, res.Gaps, res.PublishErrors)
	}
	// Fanout's warm-up rounds reach every subscriber, unmeasured.
	if res.Latency.Count != res.Delivered-uint64(res.Warmup*res.Subscribers) || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || res.Latency.Max > 30_000 {
		t.Errorf("latency %+v for %d deliveries", res.Latency, res.Delivered)
	}
}

func TestScenariosAgainstLongpoll(t *testing.T) {
	url := newServer(t)
	pid := fmt.Sprint(os.Getpid())
	svg := filepath.Join(t.TempDir(), "chart.svg")

	t.Run("capacity", func(t *testing.T) {
		t.Parallel()
		code, out, errOut, res := runBench(t, "--scenario", "capacity", "--server", url, "--subscribers", "40",
			"--workers", "2", "--source-addrs", "2", "--duration", "300ms", "--server-pid", pid)
		if code != cli.ExitOK || res == nil {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		if res.Held != 40 || res.Workers != 2 || res.SourceAddrs != 2 || res.PollErrors != 0 {
			t.Errorf("held %d with %d workers, %d addresses, %d poll errors (%s)", res.Held, res.Workers, res.SourceAddrs, res.PollErrors, res.FirstError)
		}
		if res.RSSBefore <= 0 || res.RSSHeld <= 0 {
			t.Errorf("RSS %d before, %d held, %g per poll", res.RSSBefore, res.RSSHeld, res.RSSPerPoll)
		}
		for _, want := range []string{"RSS per held poll", "40 polls at once"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(errOut, "conns") {
			t.Errorf("no progress on stderr: %q", errOut)
		}
	})

	t.Run("fanout", func(t *testing.T) {
		t.Parallel()
		code, out, errOut, res := runBench(t, "--scenario", "fanout", "--server", url, "--subscribers", "30",
			"--messages", "3", "--warmup", "2", "--server-pid", pid, "--svg", svg, "--quiet",
			"--round-every", "250ms", "--round-offset", "100ms")
		if code != cli.ExitOK || res == nil {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		checkDelivery(t, res)
		if res.Published != 5 || len(res.Rounds) != 3 || res.Warmup != 2 {
			t.Fatalf("published %d in %d rounds after %d warm-up rounds", res.Published, len(res.Rounds), res.Warmup)
		}
		for i, r := range res.Rounds {
			if r.Number != 3+i || r.Received != 30 || r.AllReceived <= 0 || r.AllReceived > res.Latency.Max {
				t.Errorf("round %+v, latency max %g", r, res.Latency.Max)
			}
			if runtime.GOOS == "linux" && (r.AllArrived <= 0 || r.AllArrived > r.AllReceived) {
				t.Errorf("round %d: the last reply reached its socket %g ms after the publish, and was read at %g ms", r.Number, r.AllArrived, r.AllReceived)
			}
			// Round n waits for its turn: 100 ms + (n-1) x 250 ms.
			if turn := float64(100 + (r.Number-1)*250); r.Published < turn {
				t.Errorf("round %d published at %g ms, before its turn at %g ms", r.Number, r.Published, turn)
			}
		}
		// The subscribers stay until the turn after the last: 100 ms + 5 x 250 ms.
		if res.ElapsedMS < 1350 {
			t.Errorf("the run ended %g ms after it began, before its next turn at 1350 ms", res.ElapsedMS)
		}
		if a := res.Arrival; runtime.GOOS == "linux" && (a == nil || a.Count == 0 || a.Max > res.Latency.Max || !strings.Contains(out, "all arrived")) {
			t.Errorf("socket arrival %+v, latency max %g; table:\n%s", a, res.Latency.Max, out)
		}
		if res.ServerCPUMS < 0 || !strings.Contains(out, "all received") || !strings.Contains(out, "2 round(s) before these") {
			t.Errorf("table:\n%s", out)
		}
		if errOut != "" {
			t.Errorf("stderr with --quiet: %q", errOut)
		}
		b, err := os.ReadFile(svg)
		if err != nil || xml.Unmarshal(b, new(struct{})) != nil || !bytes.Contains(b, []byte("<polyline")) {
			t.Errorf("--svg wrote %d bytes, %v", len(b), err)
		}
	})

	t.Run("throughput", func(t *testing.T) {
		t.Parallel()
		code, out, errOut, res := runBench(t, "--scenario", "throughput", "--server", url, "--subscribers", "20",
			"--topics", "5", "--publishers", "2", "--rate", "200", "--duration", "500ms", "--start-after", "1500ms", "--quiet")
		if code != cli.ExitOK || res == nil {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		checkDelivery(t, res)
		if res.WindowStartMS < 1500 {
			t.Errorf("publishing began %g ms into the run, before --start-after 1500ms", res.WindowStartMS)
		}
		if res.Published < 20 || res.Published > 110 {
			t.Errorf("published %d at 200/s for 0.5 s", res.Published)
		}
		if res.PublishedPerSec <= 0 || res.DeliveredPerSec <= 0 || res.Topics != 5 {
			t.Errorf("%g published/s, %g delivered/s over %d topics", res.PublishedPerSec, res.DeliveredPerSec, res.Topics)
		}
	})

	// Over streams: every subscriber holds one GET /v1/stream, which the
	// server ends after --max-stream (here its default, longer than the
	// run); the burst's messages arrive whole, once and in order.
	t.Run("sse burst", func(t *testing.T) {
		t.Parallel()
		code, out, errOut, res := runBench(t, "--scenario", "burst", "--transport", "sse", "--server", url, "--subscribers", "20",
			"--topics", "2", "--messages", "100", "--quiet")
		if code != cli.ExitOK || res == nil {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		checkDelivery(t, res)
		if res.Published != 200 || res.Transport != "sse" || !strings.Contains(out, "over sse") {
			t.Errorf("published %d over %q; table:\n%s", res.Published, res.Transport, out)
		}
	})

	t.Run("sse fanout", func(t *testing.T) {
		t.Parallel()
		code, out, errOut, res := runBench(t, "--scenario", "fanout", "--transport", "sse", "--server", url, "--subscribers", "30",
			"--messages", "3", "--warmup", "1", "--quiet")
		if code != cli.ExitOK || res == nil {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		checkDelivery(t, res)
		for _, r := range res.Rounds {
			if r.Received != 30 {
				t.Errorf("round %+v", r)
			}
		}
	})

	t.Run("burst", func(t *testing.T) {
		t.Parallel()
		code, out, errOut, res := runBench(t, "--scenario", "burst", "--server", url, "--subscribers", "20",
			"--topics", "2", "--messages", "100", "--size", "200", "--quiet")
		if code != cli.ExitOK || res == nil {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		checkDelivery(t, res)
		if res.Published != 200 {
			t.Errorf("published %d, want 100 on each of 2 topics", res.Published)
		}
		// The bench's own publishing alone takes CPU time in the window.
		if res.LoadCPUMS <= 0 || res.LoadCPUPerDelivery <= 0 {
			t.Errorf("load CPU %v ms, %v us per delivery; want both above 0", res.LoadCPUMS, res.LoadCPUPerDelivery)
		}
		for _, want := range []string{"lost         0", "duplicates   0", "reordered    0", "load CPU"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
	})
}

func TestSpawn(t *testing.T) {
	t.Parallel()
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
	spawn := fmt.Sprintf("exec env BENCH_TEST_SERVE=%s %s", addr, exe)
	code, out, errOut, res := runBench(t, "--scenario", "fanout", "--server", "http://"+addr, "--subscribers", "10",
		"--messages", "2", "--spawn", spawn, "--quiet")
	if code != cli.ExitOK || res == nil {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	checkDelivery(t, res)
	if res.ServerPID <= 0 || res.ServerPID == os.Getpid() || res.RSSAfter <= 0 {
		t.Errorf("server pid %d, RSS after %d", res.ServerPID, res.RSSAfter)
	}
	if !strings.Contains(out, "server CPU") {
		t.Errorf("table:\n%s", out)
	}
	// The bench stopped the server it started.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the spawned server still listens")
	}
}

// nchanModule is where bench/nchan/nginx.conf loads the Nchan module
// from: Debian's libnginx-mod-nchan puts it there.
const nchanModule = "/usr/lib/nginx/modules/ngx_nchan_module.so"

// needNchan returns the path of nginx once it and the Nchan module are
// found. Without them the test skips, except in CI (CI=true), where .ci/run
// installs them and the test fails.
func needNchan(t *testing.T) string {
	t.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		// Debian installs it in /usr/sbin, which a user's PATH may lack.
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			nginx, err = "/usr/sbin/nginx", nil
		}
	}
	var missing []string
	if err != nil {
		missing = append(missing, "nginx")
	}
	if _, err := os.Stat(nchanModule); err != nil {
		missing = append(missing, nchanModule)
	}
	if len(missing) == 0 {
		return nginx
	}
	msg := fmt.Sprintf("%s not found: the Nchan smoke test needs nginx and the Nchan module (apt-get install -y nginx libnginx-mod-nchan)", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestNchan runs the bench against an nginx of its own: this user, a
// prefix in a temporary directory for its pid and temp files, a free
// loopback port, started and stopped by --spawn. A system nginx, on port
// 80 or Nchan's 8090, is neither used nor touched.
func TestNchan(t *testing.T) {
	t.Parallel()
	nginx := needNchan(t)
	conf, err := filepath.Abs("../../bench/nchan/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	// The committed config on another port, so as not to meet a running
	// Nchan.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("127.0.0.1:8090")) {
		t.Fatalf("%s no longer listens on 127.0.0.1:8090: the test cannot move it to a port of its own", conf)
	}
	prefix := t.TempDir()
	mine := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(mine, bytes.ReplaceAll(b, []byte("127.0.0.1:8090"), []byte(addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	spawn := fmt.Sprintf("%s -p %s/ -c %s -e stderr", nginx, prefix, mine)
	// Its long-poll subscribers, then its EventSource ones.
	for _, tr := range []string{"poll", "sse"} {
		code, out, errOut, res := runBench(t, "--protocol", "nchan", "--transport", tr, "--scenario", "burst", "--server", "http://"+addr,
			"--subscribers", "10", "--messages", "50", "--spawn", spawn, "--quiet")
		if code != cli.ExitOK || res == nil {
			t.Fatalf("%s: exit %d\n%s\n%s", tr, code, out, errOut)
		}
		checkDelivery(t, res)
		if res.Protocol != "nchan" || res.Transport != tr || res.ServerPID <= 0 || res.RSSAfter <= 0 {
			t.Errorf("protocol %q over %q, server pid %d, RSS %d", res.Protocol, res.Transport, res.ServerPID, res.RSSAfter)
		}
		// The bench stopped the nginx it started.
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s: the spawned nginx still listens", tr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "nope"},
		{"--protocol", "mqtt"},
		{"--server", "ftp://x"},
		{"--subscribers", "-1"},
		{"--subscribers", "10", "--topics", "11"},
		{"--duration", "5m", "--run-timeout", "1m"},
		{"--server-pid", "1", "--spawn", "x"},
		{"--server", "http://example.com", "--source-addrs", "2"},
		{"extra"},
		{"--compare", "earlier.json"},
		{"--compare", "/nonexistent/earlier.json", "--svg", "chart.svg"},
	} {
		code, _, errOut, _ := runBench(t, args...)
		if code != cli.ExitUsage || !strings.Contains(errOut, "longpoll bench") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
}
