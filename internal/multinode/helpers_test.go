package multinode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binary is the longpoll command built once by TestMain.
var binary, buildErr = "", error(nil)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "longpoll-multinode-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "longpoll")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/longpoll/longpoll/cmd/longpoll").CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("go build ./cmd/longpoll: %v: %s", err, out)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// node is one `longpoll serve` process.
type node struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
	mu     sync.Mutex
	tail   []string
}

var listening = regexp.MustCompile(`msg="longpoll listening" addr=(\S+)`)

// startNode starts `longpoll serve` on a free loopback port with store and
// waits for its start-up line; the test's cleanup stops it.
func startNode(t *testing.T, store string, extra ...string) *node {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--store", store,
		"--shutdown-grace", "2s", "--log-level", "info"}, extra...)
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
			if !strings.Contains(line, "msg=request") {
				n.mu.Lock()
				n.tail = append(n.tail, line)
				if len(n.tail) > 50 {
					n.tail = n.tail[1:]
				}
				n.mu.Unlock()
			}
		}
	}()
	go func() {
		<-scanned
		_ = cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(n.stop)
	select {
	case n.addr = <-addr:
	case <-n.exited:
		t.Fatalf("longpoll serve exited at start:\n%s", n.log())
	case <-time.After(15 * time.Second):
		t.Fatalf("no start-up line from longpoll serve in 15s:\n%s", n.log())
	}
	return n
}

func (n *node) log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.tail, "\n")
}

// stop sends SIGTERM and waits for the exit, killing the process if it
// takes longer than its grace period.
func (n *node) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
}

// kill stops the process with SIGKILL and waits for it.
func (n *node) kill() {
	_ = n.cmd.Process.Kill()
	<-n.exited
}

// proxy is a round-robin HTTP proxy: each request goes to the next
// backend, and to the one after if that fails to answer, so polls hop
// between nodes and a dead node is passed over.
type proxy struct {
	backends []string
	next     atomic.Uint64
	tr       *http.Transport
	srv      *http.Server
	url      string
	served   []atomic.Int64 // requests answered per backend
}

func startProxy(t *testing.T, backends ...string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{
		backends: backends,
		tr: &http.Transport{
			MaxIdleConnsPerHost: 500,
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		},
		url:    "http://" + ln.Addr().String(),
		served: make([]atomic.Int64, len(backends)),
	}
	p.srv = &http.Server{Handler: p}
	done := make(chan struct{})
	go func() { defer close(done); _ = p.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.srv.Shutdown(ctx)
		<-done
		p.tr.CloseIdleConnections()
	})
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	start := p.next.Add(1)
	for i := range uint64(len(p.backends)) {
		k := (start + i) % uint64(len(p.backends))
		req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.backends[k]+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := p.tr.RoundTrip(req)
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			continue // a dead node: try the next
		}
		p.served[k].Add(1)
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "no backend answered", http.StatusBadGateway)
}

// --- a minimal protocol client ---------------------------------------------

type message struct {
	Topic string          `json:"topic"`
	Seq   uint64          `json:"seq"`
	ID    string          `json:"id"`
	Data  json.RawMessage `json:"data"`
}

type gap struct {
	Topic  string `json:"topic"`
	Reason string `json:"reason"`
	Missed uint64 `json:"missed"`
}

type pollReply struct {
	Messages []message `json:"messages"`
	Cursor   string    `json:"cursor"`
	Timeout  bool      `json:"timeout"`
	Gaps     []gap     `json:"gaps"`
}

func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 500},
		Timeout:   30 * time.Second,
	}
}

// poll does one GET /v1/poll; status is the HTTP status.
func poll(ctx context.Context, c *http.Client, base string, topics []string, cursor string, timeout time.Duration) (pollReply, int, error) {
	q := url.Values{"topic": topics, "since": {"earliest"}, "timeout": {timeout.String()}, "limit": {"200"}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/poll?"+q.Encode(), nil)
	if err != nil {
		return pollReply{}, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return pollReply{}, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return pollReply{}, resp.StatusCode, err
	}
	var r pollReply
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &r); err != nil {
			return pollReply{}, resp.StatusCode, fmt.Errorf("poll reply %q: %w", body, err)
		}
	}
	return r, resp.StatusCode, nil
}

// publish does one POST /v1/publish of data i..i+n-1 to topic, with ids
// m-i..., as one message or one batch.
func publish(ctx context.Context, c *http.Client, base, topic string, i, n int) (int, error) {
	body := fmt.Sprintf(`{"topic":%q,"id":"m-%d","data":{"i":%d}}`, topic, i, i)
	if n > 1 {
		var b strings.Builder
		b.WriteString(`{"messages":[`)
		for k := i; k < i+n; k++ {
			if k > i {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"topic":%q,"id":"m-%d","data":{"i":%d}}`, topic, k, k)
		}
		b.WriteString(`]}`)
		body = b.String()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/publish", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func getStatus(c *http.Client, u string) int {
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func dataIndex(m message) (int, error) {
	var d struct{ I *int }
	if err := json.Unmarshal(m.Data, &d); err != nil || d.I == nil {
		return 0, fmt.Errorf("message %s/%d has data %s", m.Topic, m.Seq, m.Data)
	}
	return *d.I, nil
}

func topicName(k int) string { return "mn.topic-" + strconv.Itoa(k) }
