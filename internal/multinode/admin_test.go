package multinode

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/broker/redis/redistest"
	"github.com/longpoll/longpoll/protocol"
)

// do sends one request with an optional bearer token and returns the
// status and body.
func do(ctx context.Context, hc *http.Client, method, u, token, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// waiting returns the polls node holds on topic, -1 if it cannot tell.
func waiting(hc *http.Client, n *node, topic, token string) int {
	status, b, err := do(context.Background(), hc, "GET", "http://"+n.addr+"/v1/topics/"+url.PathEscape(topic), token, "")
	var st struct{ Waiting int }
	if err != nil || status != 200 || json.Unmarshal(b, &st) != nil {
		return -1
	}
	return st.Waiting
}

// heldPoll is one poll's answer.
type heldPoll struct {
	status int
	body   []byte
	err    error
	took   time.Duration // from the admin action (start) to the answer
}

// A topic deleted while 100 polls are held on it on two nodes: every poll
// gets a reset gap and nothing else is lost; the next epoch starts at 1.
func TestAdminDeleteTopicAcrossNodes(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	nodes := []*node{startNode(t, srv.URL()), startNode(t, srv.URL())}
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()
	const del, keep, polls = "mn.del", "mn.keep", 100
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	for i := 1; i <= 3; i++ {
		if st, err := publish(ctx, hc, "http://"+nodes[0].addr, del, i, 1); err != nil || st != 200 {
			t.Fatalf("publish: %d %v", st, err)
		}
	}
	if st, err := publish(ctx, hc, "http://"+nodes[1].addr, keep, 1, 1); err != nil || st != 200 {
		t.Fatalf("publish: %d %v", st, err)
	}
	// A cursor at both heads.
	r, st, err := poll(ctx, hc, "http://"+nodes[0].addr, []string{del, keep}, "", 0)
	if err != nil || st != 200 || len(r.Messages) != 4 {
		t.Fatalf("first poll: %d %v %+v", st, err, r)
	}
	cursor := r.Cursor

	answers := make(chan pollReply, polls)
	errs := make(chan error, polls)
	for i := range polls {
		base := "http://" + nodes[i%2].addr
		go func() {
			r, st, err := poll(ctx, hc, base, []string{del, keep}, cursor, 25*time.Second)
			if err == nil && st != 200 {
				err = fmt.Errorf("held poll: status %d", st)
			}
			if err != nil {
				errs <- err
				return
			}
			answers <- r
		}()
	}
	for _, n := range nodes {
		if !waitFor(15*time.Second, func() bool { return waiting(hc, n, del, "") == polls/2 }) {
			t.Fatalf("node %s: %d polls held on %s, want %d", n.addr, waiting(hc, n, del, ""), del, polls/2)
		}
	}
	status, body, err := do(ctx, hc, "DELETE", "http://"+nodes[0].addr+"/v1/admin/topics/"+del, "", "")
	if err != nil || status != 200 || string(body) != `{"topic":"mn.del","deleted":true}` {
		t.Fatalf("delete: %d %s %v", status, body, err)
	}
	var cursors []string
	for range polls {
		select {
		case err := <-errs:
			t.Fatal(err)
		case r := <-answers:
			if len(r.Messages) != 0 || len(r.Gaps) != 1 || r.Gaps[0].Topic != del || r.Gaps[0].Reason != "reset" {
				t.Fatalf("held poll at the delete: %+v, want one reset gap on %s", r, del)
			}
			cursors = append(cursors, r.Cursor)
		case <-ctx.Done():
			t.Fatalf("only %d of %d held polls answered after the delete", len(cursors), polls)
		}
	}
	// The next epoch starts at 1, and the other topic goes on.
	if st, err := publish(ctx, hc, "http://"+nodes[1].addr, del, 100, 1); err != nil || st != 200 {
		t.Fatalf("publish after the delete: %d %v", st, err)
	}
	if st, err := publish(ctx, hc, "http://"+nodes[0].addr, keep, 2, 1); err != nil || st != 200 {
		t.Fatalf("publish: %d %v", st, err)
	}
	for i, c := range cursors {
		got := map[string]uint64{}
		for len(got) < 2 && ctx.Err() == nil {
			r, st, err := poll(ctx, hc, "http://"+nodes[i%2].addr, []string{del, keep}, c, 5*time.Second)
			if err != nil || st != 200 || len(r.Gaps) != 0 {
				t.Fatalf("poll %d after the delete: %d %v %+v", i, st, err, r)
			}
			for _, m := range r.Messages {
				if _, dup := got[m.Topic]; dup {
					t.Fatalf("poll %d: %s twice", i, m.Topic)
				}
				got[m.Topic] = m.Seq
			}
			c = r.Cursor
		}
		if got[del] != 1 || got[keep] != 2 {
			t.Fatalf("poll %d after the delete: seqs %v, want %s 1 and %s 2", i, got, del, keep)
		}
	}
}

// Each node lists the other through the store's heartbeats, and stops
// listing a node that is gone once its heartbeat runs out.
func TestAdminNodes(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	nodes := []*node{startNode(t, srv.URL()), startNode(t, srv.URL())}
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()
	others := func(n *node) []protocol.AdminNode {
		status, b, err := do(context.Background(), hc, "GET", "http://"+n.addr+"/v1/admin/node", "", "")
		var r protocol.AdminNode
		if err != nil || status != 200 || json.Unmarshal(b, &r) != nil {
			t.Fatalf("admin node: %d %s %v", status, b, err)
		}
		if r.Store.Kind != "redis" || !r.Store.Ready || !r.Ready || r.Version == "" || r.Go == "" || r.ConfigDigest == "" {
			t.Fatalf("admin node of %s: %s", n.addr, b)
		}
		return r.Nodes
	}
	for i, n := range nodes {
		_, port, _ := strings.Cut(nodes[1-i].addr, ":")
		// Each node heartbeats as it starts serving, just after its
		// start-up line: wait for the other's first.
		var o []protocol.AdminNode
		listed := func() bool {
			o = others(n)
			return len(o) == 1 && strings.HasSuffix(o[0].Node, ":"+port) && o[0].Seen != nil && o[0].Ready
		}
		if !waitFor(10*time.Second, listed) {
			t.Fatalf("node %s lists %+v, want the other node (port %s)", n.addr, o, port)
		}
	}
	if testing.Short() {
		t.Log("-short: not waiting 15s for a killed node's heartbeat to run out")
		return
	}
	nodes[1].kill()
	// The heartbeat's ttl is 15s: waitFor bounds the wait for it to run out.
	if !waitFor(30*time.Second, func() bool { return len(others(nodes[0])) == 0 }) {
		t.Fatalf("a killed node is still listed 30s later: %+v", others(nodes[0]))
	}
}

// A disconnect of a subject holding polls on two nodes ends all of them
// with token_revoked; the revoked token is refused on both nodes and
// after a restart of either; other subjects are untouched.
func TestAdminDisconnectAcrossNodes(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("multinode-secret-", 3)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--auth", "jwt", "--jwt-secret-file", secret}
	nodes := []*node{startNode(t, srv.URL(), args...), startNode(t, srv.URL(), args...)}
	sign := func(sub string, admin bool) string {
		tok, err := auth.SignHS256(auth.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(time.Now().Add(-10 * time.Second)),
				ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
			Longpoll: auth.Grants{Subscribe: []string{"mn.>"}, Publish: []string{"mn.>"}, Admin: admin},
		}, secret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice, bob, ops := sign("alice", false), sign("bob", false), sign("ops", true)
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()

	const perNode = 20
	var start time.Time
	var startMu sync.Mutex
	started := func() time.Time { startMu.Lock(); defer startMu.Unlock(); return start }
	results := make(chan heldPoll, 2*perNode+2)
	hold := func(n *node, tok, topic string) {
		status, body, err := do(ctx, hc, "GET", "http://"+n.addr+"/v1/poll?timeout=25s&topic="+topic, tok, "")
		results <- heldPoll{status: status, body: body, err: err, took: time.Since(started())}
	}
	for _, n := range nodes {
		for range perNode {
			go hold(n, alice, "mn.alice")
		}
		go hold(n, bob, "mn.bob")
	}
	for _, n := range nodes {
		if !waitFor(15*time.Second, func() bool {
			return waiting(hc, n, "mn.alice", bob) == perNode && waiting(hc, n, "mn.bob", bob) == 1
		}) {
			t.Fatalf("node %s: polls not all held", n.addr)
		}
	}
	startMu.Lock()
	start = time.Now()
	startMu.Unlock()
	status, body, err := do(ctx, hc, "POST", "http://"+nodes[1].addr+"/v1/admin/disconnect", ops, `{"sub":"alice"}`)
	if err != nil || status != 200 {
		t.Fatalf("disconnect: %d %s %v", status, body, err)
	}
	var slowest time.Duration
	for i := range 2 * perNode {
		select {
		case r := <-results:
			if r.err != nil || r.status != 401 || !strings.Contains(string(r.body), `"token_revoked"`) {
				t.Fatalf("alice's poll %d: %d %s %v, want 401 token_revoked", i, r.status, r.body, r.err)
			}
			slowest = max(slowest, r.took)
		case <-ctx.Done():
			t.Fatalf("%d of alice's %d polls ended after the disconnect", i, 2*perNode)
		}
	}
	t.Logf("all %d of alice's polls on 2 nodes ended %v after the disconnect was sent", 2*perNode, slowest.Round(time.Millisecond))

	refusedEverywhere := func(when string) {
		t.Helper()
		for _, n := range nodes {
			status, body, err := do(ctx, hc, "GET", "http://"+n.addr+"/v1/topics/mn.alice", alice, "")
			if err != nil || status != 401 || !strings.Contains(string(body), "token_revoked") {
				t.Fatalf("%s: alice's token on %s: %d %s %v", when, n.addr, status, body, err)
			}
			if status, body, err := do(ctx, hc, "GET", "http://"+n.addr+"/v1/topics/mn.bob", bob, ""); err != nil || status != 200 {
				t.Fatalf("%s: bob's token on %s: %d %s %v", when, n.addr, status, body, err)
			}
		}
	}
	refusedEverywhere("after the disconnect")
	for _, n := range nodes {
		if w := waiting(hc, n, "mn.bob", bob); w != 1 {
			t.Fatalf("node %s holds %d of bob's polls after alice's disconnect, want 1", n.addr, w)
		}
	}
	nodes[0].stop()
	nodes[0] = startNode(t, srv.URL(), args...)
	refusedEverywhere("after a restart")
}

// A stream killed at random 20 times while 1,000 messages are published,
// resumed each time from Last-Event-ID on the other node, gets each
// message exactly once and in order, across two nodes on Redis.
func TestStreamKilledAndResumedAcrossNodes(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	nodes := []*node{startNode(t, srv.URL()), startNode(t, srv.URL())}
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const topic, total, kills = "mn.stream", 1000, 20

	pubDone := make(chan error, 1)
	var published sync.WaitGroup
	published.Add(1)
	go func() {
		defer published.Done()
		for i := 1; i <= total; i++ {
			if st, err := publish(ctx, hc, "http://"+nodes[i%2].addr, topic, i, 1); err != nil || st != 200 {
				pubDone <- fmt.Errorf("publish %d: %d %v", i, st, err)
				return
			}
		}
		pubDone <- nil
	}()
	defer published.Wait()

	lastID, next := "", 1
	for k := 0; next <= total; k++ {
		n := nodes[k%2]
		sctx, stop := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(sctx, "GET", "http://"+n.addr+"/v1/stream?topic="+topic+"&since=earliest", nil)
		req.Header.Set("Accept", "text/event-stream")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := hc.Do(req)
		if err != nil || resp.StatusCode != 200 {
			stop()
			t.Fatalf("stream %d on %s: %v %v", k, n.addr, err, resp)
		}
		// Kill this stream after a random number of events (the last
		// streams run to the end).
		killAfter := total
		if k < kills {
			killAfter = 1 + rand.IntN(97)
		}
		got := 0
		sc := bufio.NewScanner(resp.Body)
		var id, data, name string
		for got < killAfter && next <= total && sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case strings.HasPrefix(line, "event: "):
				name = line[7:]
			case line == "" && name == "message":
				var m message
				if err := json.Unmarshal([]byte(data), &m); err != nil {
					t.Fatalf("event data %q: %v", data, err)
				}
				i, err := dataIndex(m)
				if err != nil {
					t.Fatal(err)
				}
				if i != next || m.Seq != uint64(i) {
					t.Fatalf("stream %d: got i=%d seq=%d, want %d", k, i, m.Seq, next)
				}
				next++
				got++
				lastID = id
				name = ""
			case line == "":
				if name != "" && name != "message" {
					t.Fatalf("stream %d: unexpected event %s %s", k, name, data)
				}
				name = ""
			}
		}
		stop() // the kill: the connection is dropped mid-stream
		resp.Body.Close()
		if ctx.Err() != nil {
			t.Fatalf("gave up at message %d after %d streams", next, k+1)
		}
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
}
