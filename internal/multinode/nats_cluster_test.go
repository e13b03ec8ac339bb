package multinode

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll/broker/redis/redistest"
)

// The JetStream tests run a three-server cluster of nats-server child
// processes. LONGPOLL_NATS_SERVERS names each server's binary, comma
// separated: "debian" is nats-server on PATH (Debian's package, v2.9),
// "module" is the nats-server of go.mod built by the test, anything else
// a path. The default mixes versions: two Debian servers and one built
// from the module.
const defaultNATSServers = "debian,debian,module"

// requireNATS skips the test, or fails it in CI (CI=true), when
// nats-server is not on PATH, and returns the binaries of the three
// servers.
func requireNATS(t *testing.T) []string {
	t.Helper()
	kinds := strings.Split(defaultNATSServers, ",")
	if v := os.Getenv("LONGPOLL_NATS_SERVERS"); v != "" {
		kinds = strings.Split(v, ",")
	}
	if len(kinds) != 3 {
		t.Fatalf("LONGPOLL_NATS_SERVERS=%q: want three comma-separated binaries", os.Getenv("LONGPOLL_NATS_SERVERS"))
	}
	bins := make([]string, len(kinds))
	for i, k := range kinds {
		switch k {
		case "debian":
			p, err := exec.LookPath("nats-server")
			if err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatal("nats-server is not on PATH; CI must install it (apt-get install nats-server)")
				}
				t.Skip("SKIP: nats-server is not on PATH: install nats-server (Debian's package) to run the JetStream fault tests")
			}
			bins[i] = p
		case "module":
			bins[i] = moduleNATSServer(t)
		default:
			bins[i] = k
		}
	}
	return bins
}

var (
	natsBuildOnce sync.Once
	natsBuilt     string
	natsBuildErr  error
)

// moduleNATSServer builds the nats-server of go.mod once, beside the
// longpoll binary (TestMain removes that directory).
func moduleNATSServer(t *testing.T) string {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	natsBuildOnce.Do(func() {
		out := filepath.Join(filepath.Dir(binary), "nats-server")
		b, err := exec.Command("go", "build", "-o", out, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsBuildErr = fmt.Errorf("go build github.com/nats-io/nats-server/v2: %v: %s", err, b)
			return
		}
		natsBuilt = out
	})
	if natsBuildErr != nil {
		t.Fatal(natsBuildErr)
	}
	return natsBuilt
}

// natsServer is one nats-server process with JetStream, a member of a
// cluster. Its ports and store directory stay the same across restarts.
type natsServer struct {
	t                           *testing.T
	name, bin, conf             string
	port, clusterPort, httpPort int

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	out     *tailLog
	version string
}

// natsCluster is three nats-servers routed to each other.
type natsCluster struct {
	t       *testing.T
	Servers []*natsServer
	hc      *http.Client
}

// startNATSCluster starts one server per binary as a JetStream cluster on
// loopback, each with its store under t.TempDir(), and waits until every
// server reports itself healthy (a meta leader is known).
func startNATSCluster(t *testing.T, bins []string) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, hc: &http.Client{Timeout: 2 * time.Second}}
	t.Cleanup(c.hc.CloseIdleConnections)
	for i, bin := range bins {
		c.Servers = append(c.Servers, &natsServer{
			t: t, name: "n" + strconv.Itoa(i), bin: bin,
			port:        redistest.FreePort(t, false),
			clusterPort: redistest.FreePort(t, false),
			httpPort:    redistest.FreePort(t, false),
		})
	}
	var routes []string
	for _, s := range c.Servers {
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(s.clusterPort))
	}
	for _, s := range c.Servers {
		dir := t.TempDir()
		s.conf = filepath.Join(dir, "nats.conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: longpoll
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, s.name, s.port, s.httpPort, filepath.Join(dir, "js"), s.clusterPort, strings.Join(routes, ", "))
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s.start()
		t.Cleanup(s.kill)
	}
	if err := c.waitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// URLs is the servers' client addresses for a nats:// store URL.
func (c *natsCluster) URLs() string {
	var a []string
	for _, s := range c.Servers {
		a = append(a, "127.0.0.1:"+strconv.Itoa(s.port))
	}
	return strings.Join(a, ",")
}

// Versions names each server with its version, for the logs.
func (c *natsCluster) Versions() string {
	var a []string
	for _, s := range c.Servers {
		a = append(a, s.name+"="+s.version)
	}
	return strings.Join(a, " ")
}

func (c *natsCluster) server(name string) *natsServer {
	for _, s := range c.Servers {
		if s.name == name {
			return s
		}
	}
	return nil
}

// start runs the server and waits until its monitoring port answers that
// JetStream is enabled.
func (s *natsServer) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatalf("nats-server %s is already running", s.name)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		cmd := exec.Command(s.bin, "-c", s.conf)
		s.out = &tailLog{}
		cmd.Stdout, cmd.Stderr = s.out, s.out
		if err := cmd.Start(); err != nil {
			s.t.Fatalf("starting nats-server %s: %v", s.name, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		for time.Now().Before(deadline) {
			select {
			case <-exited:
			default:
				if s.get("/healthz?js-enabled-only=true") == http.StatusOK {
					s.cmd, s.exited = cmd, exited
					if s.version == "" {
						s.version = s.varzVersion()
					}
					return
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			break
		}
		_ = cmd.Process.Kill()
		<-exited
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server %s (%s) did not start:\n%s", s.name, s.bin, s.out)
		}
		// A port may be held a moment longer by the process before.
		time.Sleep(100 * time.Millisecond)
	}
}

// kill stops the server with SIGKILL and waits for it; it does nothing if
// the server is not running.
func (s *natsServer) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// restart starts the server again after kill, with the same store and
// ports.
func (s *natsServer) restart() { s.start() }

func (s *natsServer) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *natsServer) monitor(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.httpPort) + path
}

// get returns the status of a GET of the monitoring path, 0 on error.
func (s *natsServer) get(path string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(s.monitor(path))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func (s *natsServer) getJSON(path string, v any) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(s.monitor(path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", s.name, path, b)
	}
	return json.Unmarshal(b, v)
}

func (s *natsServer) varzVersion() string {
	var v struct{ Version string }
	if err := s.getJSON("/varz", &v); err != nil {
		return "?"
	}
	return v.Version
}

// waitHealthy waits until every running server answers /healthz with 200:
// JetStream is on, a meta leader is known and its streams are current.
func (c *natsCluster) waitHealthy(d time.Duration) error {
	deadline := time.Now().Add(d)
	for _, s := range c.Servers {
		if !s.running() {
			continue
		}
		for s.get("/healthz") != http.StatusOK {
			if time.Now().After(deadline) {
				return fmt.Errorf("nats-server %s not healthy after %v:\n%s", s.name, d, s.out)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return nil
}

// jsz is the part of /jsz?streams=true the tests read.
type jsz struct {
	Meta *struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
	Accounts []struct {
		Streams []struct {
			Name    string `json:"name"`
			Cluster *struct {
				Leader   string `json:"leader"`
				Replicas []struct {
					Name    string `json:"name"`
					Current bool   `json:"current"`
				} `json:"replicas"`
			} `json:"cluster"`
			State struct {
				Messages uint64 `json:"messages"`
				LastSeq  uint64 `json:"last_seq"`
			} `json:"state"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

// streamLeader returns the name of the stream's leader as a running
// server reports it, "" if none knows one yet.
func (c *natsCluster) streamLeader(stream string) string {
	for _, s := range c.Servers {
		if !s.running() {
			continue
		}
		var j jsz
		if err := s.getJSON("/jsz?streams=true", &j); err != nil {
			continue
		}
		for _, a := range j.Accounts {
			for _, st := range a.Streams {
				if st.Name == stream && st.Cluster != nil && st.Cluster.Leader != "" {
					return st.Cluster.Leader
				}
			}
		}
	}
	return ""
}

// leaders describes the leader of every stream (the key-value buckets
// are streams too) as a running server sees them, sorted by stream.
func (c *natsCluster) leaders() string {
	for _, s := range c.Servers {
		if !s.running() {
			continue
		}
		var j jsz
		if err := s.getJSON("/jsz?streams=true", &j); err != nil {
			continue
		}
		var a []string
		for _, acc := range j.Accounts {
			for _, st := range acc.Streams {
				if st.Cluster != nil {
					a = append(a, st.Name+"="+st.Cluster.Leader)
				}
			}
		}
		sort.Strings(a)
		return strings.Join(a, " ")
	}
	return ""
}

// metaLeader returns the name of the JetStream meta leader, "" if unknown.
func (c *natsCluster) metaLeader() string {
	for _, s := range c.Servers {
		if !s.running() {
			continue
		}
		var j jsz
		if err := s.getJSON("/jsz", &j); err == nil && j.Meta != nil && j.Meta.Leader != "" {
			return j.Meta.Leader
		}
	}
	return ""
}

// waitStreamLeader waits up to d for the stream to have a leader among the
// running servers and returns it.
func (c *natsCluster) waitStreamLeader(stream string, d time.Duration) (*natsServer, error) {
	deadline := time.Now().Add(d)
	for {
		if s := c.server(c.streamLeader(stream)); s != nil && s.running() {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("stream %s has no leader among the running servers after %v", stream, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// natsRequest sends one request on the NATS protocol to addr and returns
// the reply's payload: enough to call the JetStream API without a client
// library.
func natsRequest(addr, subject string, payload []byte, d time.Duration) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		return nil, err
	}
	fmt.Fprintf(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\nSUB _INBOX.mn 1\r\nPUB %s _INBOX.mn %d\r\n%s\r\n", subject, len(payload), payload)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "PING":
			fmt.Fprint(c, "PONG\r\n")
		case strings.HasPrefix(line, "-ERR"):
			return nil, fmt.Errorf("nats %s: %s", subject, line)
		case strings.HasPrefix(line, "MSG "):
			f := strings.Fields(line)
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return nil, fmt.Errorf("nats %s: %q", subject, line)
			}
			b := make([]byte, n+2)
			if _, err := io.ReadFull(r, b); err != nil {
				return nil, err
			}
			return b[:n], nil
		}
	}
}

// tailLog keeps the last output of a process, for failure messages.
type tailLog struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bytes.Contains(p, []byte("Healthcheck failed")) {
		return len(p), nil // the test's own polling of /healthz
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) > 64<<10 {
		b.buf = b.buf[len(b.buf)-32<<10:]
	}
	return len(p), nil
}

func (b *tailLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := string(b.buf)
	if len(s) > 4<<10 {
		s = s[len(s)-4<<10:]
	}
	return s
}

// streamInfo asks the cluster for $JS.API.STREAM.INFO of stream and
// describes its leader, replicas and state; ok is false if a replica is
// not current.
func (c *natsCluster) streamInfo(stream string) (desc string, ok bool) {
	var info struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
		State struct {
			Messages uint64 `json:"messages"`
			LastSeq  uint64 `json:"last_seq"`
		} `json:"state"`
		Cluster struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Name    string `json:"name"`
				Current bool   `json:"current"`
				Lag     uint64 `json:"lag"`
			} `json:"replicas"`
		} `json:"cluster"`
	}
	for _, s := range c.Servers {
		if !s.running() {
			continue
		}
		b, err := natsRequest("127.0.0.1:"+strconv.Itoa(s.port), "$JS.API.STREAM.INFO."+stream, nil, 5*time.Second)
		if err != nil {
			desc = err.Error()
			continue
		}
		if err := json.Unmarshal(b, &info); err != nil || info.Error != nil {
			desc = fmt.Sprintf("stream info: %s", b)
			continue
		}
		ok = true
		desc = fmt.Sprintf("meta leader %s, stream leader %s, replicas", c.metaLeader(), info.Cluster.Leader)
		for _, r := range info.Cluster.Replicas {
			desc += fmt.Sprintf(" %s (current %t, lag %d)", r.Name, r.Current, r.Lag)
			ok = ok && r.Current
		}
		desc += fmt.Sprintf("; %d JetStream messages, last sequence %d", info.State.Messages, info.State.LastSeq)
		return desc, ok
	}
	return desc, false
}
