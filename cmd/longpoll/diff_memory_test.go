package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The per-connection bound the server states for a client that pipelines
// without reading: what it queues for a connection is at most twice the
// largest reply (--max-reply-bytes, 1 MiB by default) plus 256 KiB; and
// diffMemSlack is allowed on top for the garbage collector and runtime.
const (
	diffMaxReply   = 1 << 20
	diffPerConn    = 2 * (diffMaxReply + 256<<10)
	diffMemSlack   = 8 << 20
	diffPipeFor    = 8 * time.Second
	diffBigMessage = 60000 // bytes of data in each message of a backlog
	diffBigCount   = 100   // messages in a backlog: about 6 MB
)

var diffBacklogPad = strings.Repeat("x", diffBigMessage-len(`{"i":00,"p":""}`))

// diffBacklog publishes diffBigCount messages of diffBigMessage bytes to
// topic, message i holding {"i":i,"p":"xxx..."}.
func diffBacklog(ctx context.Context, s *server, topic string) error {
	pad := diffBacklogPad
	for b := 0; b < diffBigCount; b += 10 {
		var body strings.Builder
		body.WriteString(`{"messages":[`)
		for i := b; i < min(b+10, diffBigCount); i++ {
			if i > b {
				body.WriteString(",")
			}
			fmt.Fprintf(&body, `{"topic":%q,"data":{"i":%d,"p":%q}}`, topic, i, pad)
		}
		body.WriteString(`]}`)
		st, _, rb, err := diffDo(ctx, "POST", s.url+"/v1/publish", body.String())
		if err != nil || st != 200 {
			return fmt.Errorf("publishing the backlog: %d %.200s %v", st, rb, err)
		}
	}
	return nil
}

// diffMem is what one side's pipelining phase measured.
type diffMem struct {
	base, peak int64  // the child's VmRSS before, and the most seen during
	wrote      int64  // bytes of requests the server took from the clients
	aborted    string // why the phase stopped early, if it did
	err        error
}

func (m diffMem) String() string {
	s := fmt.Sprintf("RSS %s → peak %s (+%s); the clients sent %s of requests",
		diffMiB(m.base), diffMiB(m.peak), diffMiB(m.peak-m.base), diffMiB(m.wrote))
	if m.aborted != "" {
		s += "; " + m.aborted
	}
	if m.err != nil {
		s += fmt.Sprintf("; error: %v", m.err)
	}
	return s
}

// diffPipeline opens conns connections with a 4 KiB receive buffer and on
// each sends req over and over for dur, reading nothing, while it samples
// the child's VmRSS every 100 ms. It stops early once the growth passes
// abort, so that a server without the bound does not take the machine.
// Every connection and writer is gone when it returns.
func diffPipeline(s *server, req string, conns int, dur time.Duration, abort int64) diffMem {
	var m diffMem
	pid := s.cmd.Process.Pid
	if m.base, m.err = diffRSS(pid); m.err != nil {
		return m
	}
	m.peak = m.base
	cs := make([]*net.TCPConn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range conns {
		c, err := diffDial(diffAddr(s), 4096)
		if err != nil {
			m.err = err
			return m
		}
		cs = append(cs, c)
	}
	chunk := bytes.Repeat([]byte(req), max(1, (64<<10)/len(req)))
	end := time.Now().Add(dur)
	stop := make(chan struct{})
	var wrote atomic.Int64
	var wg sync.WaitGroup
	for _, c := range cs {
		c.SetWriteDeadline(end)
		wg.Go(func() {
			for range 1 << 20 {
				select {
				case <-stop:
					return
				default:
				}
				n, err := c.Write(chunk)
				wrote.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
	}
	tick := time.NewTicker(100 * time.Millisecond)
	start := time.Now()
	for time.Now().Before(end) {
		<-tick.C
		rss, err := diffRSS(pid)
		if err != nil {
			m.err = err
			break
		}
		m.peak = max(m.peak, rss)
		if rss-m.base > abort {
			m.aborted = fmt.Sprintf("stopped after %v: grew past %s", time.Since(start).Round(10*time.Millisecond), diffMiB(abort))
			break
		}
	}
	tick.Stop()
	close(stop)
	for _, c := range cs {
		c.Close()
	}
	wg.Wait()
	m.wrote = wrote.Load()
	return m
}

// TestDiffPipelineMemory: a client that pipelines requests and never
// reads the replies, by any route, authenticated or not, raises the
// dense server's RSS by at most diffPerConn (+ diffMemSlack); 100 such
// clients together by at most 100 times it. std is measured alike and
// logged.
func TestDiffPipelineMemory(t *testing.T) {
	diffGate(t)
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("0123456789abcdef", 3)), 0o600); err != nil {
		t.Fatal(err)
	}
	jwt := []string{"--auth", "jwt", "--jwt-secret-file", secret}
	poll := diffGET("/v1/poll?topic=a.b&timeout=0")
	backlog := diffGET("/v1/poll?topic=big&since=earliest&limit=100")
	cases := []struct {
		name    string
		args    []string
		req     string
		conns   int
		backlog bool
	}{
		{name: "poll", req: poll, conns: 1},
		{name: "poll without token", args: jwt, req: poll, conns: 1},
		{name: "healthz", req: diffGET("/healthz"), conns: 1},
		{name: "backlog poll", req: backlog, conns: 1, backlog: true},
		{name: "100 conns poll without token", args: jwt, req: poll, conns: 100},
		{name: "100 conns backlog poll", req: backlog, conns: 100, backlog: true},
	}
	// The cases of one connection run at once (their phases mostly wait
	// on a bounded server), then the two of 100 connections, each on
	// servers of its own; each is then judged in a subtest of its own.
	// The two groups are apart so that 200 clients do not starve the
	// single ones of the processor they need to show a missing bound.
	pairs := make([]diffPair, len(cases))
	for k, c := range cases {
		pairs[k] = diffStart(t, c.args...)
		if c.backlog {
			for _, s := range pairs[k] {
				if err := diffBacklog(t.Context(), s, "big"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	results := make([][2]diffMem, len(cases))
	for _, group := range []int{1, 100} {
		var wg sync.WaitGroup
		for k, c := range cases {
			if c.conns != group {
				continue
			}
			abort := int64(c.conns)*diffPerConn + diffMemSlack + 512<<20
			wg.Go(func() {
				results[k] = diffEach(pairs[k], func(_ int, s *server) diffMem { return diffPipeline(s, c.req, c.conns, diffPipeFor, abort) })
			})
		}
		wg.Wait()
	}
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bound := int64(c.conns)*diffPerConn + diffMemSlack
			for i, m := range results[k] {
				t.Logf("%s, %d conn(s) for %v: %v (bound +%s)", diffTransports[i], c.conns, diffPipeFor, m, diffMiB(bound))
				if m.err != nil {
					t.Errorf("%s: %v", diffTransports[i], m.err)
				}
				if st, _, _, err := diffDo(t.Context(), "GET", pairs[k][i].url+"/healthz", ""); st != 200 {
					t.Errorf("%s: /healthz after the phase: %d %v", diffTransports[i], st, err)
				}
			}
			if d := results[k][0]; d.peak-d.base > bound {
				t.Errorf("dense: RSS grew by %s, above the bound of %s", diffMiB(d.peak-d.base), diffMiB(bound))
			}
		})
	}
}
