package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// freeAddr returns a loopback address nobody listens on now, so that a
// restarted server can come back on the same one.
func freeAddr(t *testing.T) string {
	t.Helper()
	// Below Linux's ephemeral range (32768 and up), so that no outgoing
	// connection of another test takes the port before the server binds
	// it; free on every address, so that a wildcard bind succeeds too.
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ln.Close()
		return "127.0.0.1:" + strconv.Itoa(port)
	}
	t.Fatal("no free port")
	return ""
}

type pollReply struct {
	Messages []struct {
		Topic string
		Seq   uint64
		ID    string
		Data  json.RawMessage
	}
	Cursor string
	Gaps   []map[string]any
}

func pollOnce(ctx context.Context, base, query string) (pollReply, error) {
	var r pollReply
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/poll?"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return r, err
	}
	if resp.StatusCode != 200 {
		return r, fmt.Errorf("poll: %d %s", resp.StatusCode, b)
	}
	return r, json.Unmarshal(b, &r)
}

// TestCrashLosesNothing kills the disk-store server with SIGKILL at random
// moments while publishers publish and a subscriber follows with its
// cursor. Every publish that got a 200 must be there afterwards, in order,
// with gapless seqs, and the subscriber must get each exactly once.
func TestCrashLosesNothing(t *testing.T) {
	kills := 3
	if os.Getenv("LONGPOLL_CRASH_LOOPS") != "" {
		fmt.Sscan(os.Getenv("LONGPOLL_CRASH_LOOPS"), &kills)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	args := []string{"--addr", addr, "--store", "disk", "--data-dir", dir, "--retention-messages", "1000000", "--retention-bytes", "1000000000"}
	s := startServer(t, nil, args...)
	base := s.url

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type ack struct {
		seq  uint64
		data string
	}
	var mu sync.Mutex
	acked := map[string]ack{} // id -> what the server acknowledged
	var pubs sync.WaitGroup
	for p := range 4 {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("p%d-%d", p, i)
				body := fmt.Sprintf(`{"topic":"crash","id":%q,"data":{"p":%d,"i":%d}}`, id, p, i)
				// Retry with the same id until acknowledged: the server
				// may be down, or may have appended before dying.
				for ctx.Err() == nil {
					resp, err := http.Post(base+"/v1/publish", "application/json", strings.NewReader(body))
					if err != nil {
						time.Sleep(5 * time.Millisecond) // the server is restarting: back off a little
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						continue
					}
					var r struct{ Messages []struct{ Seq uint64 } }
					json.Unmarshal(b, &r)
					mu.Lock()
					acked[id] = ack{r.Messages[0].Seq, fmt.Sprintf(`{"p":%d,"i":%d}`, p, i)}
					mu.Unlock()
					break
				}
			}
		}()
	}
	// The subscriber follows with its cursor across the crashes.
	type got struct {
		seq uint64
		id  string
	}
	var received []got
	var gaps []map[string]any
	subDone := make(chan struct{})
	stopSub := make(chan struct{})
	go func() {
		defer close(subDone)
		first, err := pollOnce(ctx, base, "topic=crash&since=earliest&timeout=0&limit=1000")
		for err != nil && ctx.Err() == nil {
			first, err = pollOnce(ctx, base, "topic=crash&since=earliest&timeout=0&limit=1000")
		}
		cur := first.Cursor
		handle := func(r pollReply) {
			gaps = append(gaps, r.Gaps...)
			for _, m := range r.Messages {
				received = append(received, got{m.Seq, m.ID})
			}
			cur = r.Cursor
		}
		handle(first)
		for {
			select {
			case <-stopSub:
				return
			default:
			}
			r, err := pollOnce(ctx, base, "topic=crash&timeout=1&limit=1000&cursor="+cur)
			if err == nil {
				handle(r)
			}
		}
	}()

	countAcked := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	target := 0
	for k := range kills {
		// Kill after a random number of further acknowledged publishes.
		target += 100 + rand.IntN(400)
		waitFor(t, func() bool { return countAcked() >= target }, "acknowledged publishes")
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
		t.Logf("kill %d after %d acknowledged publishes", k+1, countAcked())
		s = startServer(t, nil, args...)
	}
	target += 200
	waitFor(t, func() bool { return countAcked() >= target }, "acknowledged publishes after the last restart")
	cancel()
	pubs.Wait()
	close(stopSub)
	<-subDone

	// Read the whole topic from a fresh cursor.
	var all []got
	r, err := pollOnce(t.Context(), s.url, "topic=crash&since=earliest&timeout=0&limit=1000")
	for err == nil {
		for _, m := range r.Messages {
			all = append(all, got{m.Seq, m.ID})
		}
		if len(r.Messages) == 0 {
			break
		}
		r, err = pollOnce(t.Context(), s.url, "topic=crash&timeout=0&limit=1000&cursor="+r.Cursor)
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]uint64{}
	for i, m := range all {
		if m.seq != uint64(i+1) {
			t.Fatalf("seq %d at position %d: not gapless", m.seq, i)
		}
		if _, dup := seen[m.id]; dup {
			t.Fatalf("id %s appended twice", m.id)
		}
		seen[m.id] = m.seq
	}
	for id, a := range acked {
		if seen[id] != a.seq {
			t.Fatalf("acknowledged publish %s (seq %d) is missing or moved (found at %d)", id, a.seq, seen[id])
		}
	}
	if len(gaps) != 0 {
		t.Fatalf("the subscriber was told of gaps across crashes: %v", gaps)
	}
	// The subscriber got a prefix of the log, each exactly once, in order.
	for i, m := range received {
		if m != all[i] {
			t.Fatalf("subscriber message %d is %v, the log has %v", i, m, all[i])
		}
	}
	t.Logf("%d kills; %d acknowledged, %d in the log, subscriber received %d", kills, len(acked), len(all), len(received))
}

// TestBackupWhileRunning copies a running server's store; a server started
// on the copy serves the same topics, seqs and epochs: the old cursor
// continues there with no gap.
func TestBackupWhileRunning(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, nil, "--store", "disk", "--data-dir", dir)
	for i := range 50 {
		resp, err := http.Post(s.url+"/v1/publish", "application/json", strings.NewReader(fmt.Sprintf(`{"topic":"b","data":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	r, err := pollOnce(t.Context(), s.url, "topic=b&since=earliest&timeout=0&limit=40")
	if err != nil || len(r.Messages) != 40 {
		t.Fatalf("%v %d", err, len(r.Messages))
	}
	copyDir := t.TempDir()
	out, err := exec.Command(binary, "backup", "--data-dir", dir, filepath.Join(copyDir, "longpoll.db")).CombinedOutput()
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	s2 := startServer(t, nil, "--store", "disk", "--data-dir", copyDir)
	r2, err := pollOnce(t.Context(), s2.url, "topic=b&timeout=0&cursor="+r.Cursor)
	if err != nil || len(r2.Gaps) != 0 || len(r2.Messages) != 10 || r2.Messages[0].Seq != 41 {
		t.Fatalf("the copy does not continue the cursor: %v %+v", err, r2)
	}
	// A directory in use gives a clear start-up error.
	out, err = exec.Command(binary, "serve", "--addr", "127.0.0.1:0", "--store", "disk", "--data-dir", dir).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("in use by another longpoll server")) {
		t.Fatalf("second server on one data directory: %v\n%s", err, out)
	}
}

// waitFor waits, up to a minute, until cond holds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
