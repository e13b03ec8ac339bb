package main

import (
	"bufio"
	"bytes"
	"context"
	byteorder "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// corruptChild is a longpoll serve child process that may fail to start.
type corruptChild struct {
	cmd    *exec.Cmd
	url    string // "" if it never listened
	mu     sync.Mutex
	stderr strings.Builder
	exited chan struct{}
	err    error // its exit, once exited is closed
}

func (c *corruptChild) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// corruptServe starts longpoll serve with args and waits until it listens
// or exits.
func corruptServe(t *testing.T, args ...string) *corruptChild {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &corruptChild{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			c.mu.Lock()
			c.stderr.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		c.err = cmd.Wait()
		pw.Close()
		<-logDone
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	select {
	case a := <-addr:
		c.url = "http://" + a
	case <-c.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("serve neither listened nor exited within 30s")
	}
	return c
}

// stop sends SIGTERM and waits for the exit.
func (c *corruptChild) stop(t *testing.T) error {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return c.err
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit within 20s of SIGTERM")
		return nil
	}
}

// corruptWritten is what the write phase published: per topic, the data
// of each seq.
type corruptWritten map[string][]string

var corruptTopics = []string{"alpha", "beta", "gamma/1", "delta.x", "eps", "zeta"}

// corruptData is the data of message i of topic: a marker found nowhere
// else, then padding so that a topic spans pages.
func corruptData(topic string, i int) string {
	return fmt.Sprintf(`{"m":"#%s#%03d#","pad":"%s"}`, topic, i, strings.Repeat("p", 100+i%50))
}

// corruptMeta reads the high water mark and page size from the meta page
// bbolt uses (the one of the higher txid; both are sound here).
func corruptMeta(data []byte) (hwm, ps int) {
	ps = int(byteorder.NativeEndian.Uint32(data[16+8:]))
	best := uint64(0)
	for _, off := range []int{0, ps} {
		m := data[off+16:]
		if txid := byteorder.NativeEndian.Uint64(m[48:]); txid >= best {
			best, hwm = txid, int(byteorder.NativeEndian.Uint64(m[40:]))
		}
	}
	return hwm, ps
}

// corruptPages lists the pages that hold a branch or leaf page (in use or
// an old copy in freed space).
func corruptPages(data []byte) []int {
	hwm, ps := corruptMeta(data)
	var pages []int
	for p := 2; p < hwm; p++ {
		h := data[p*ps:]
		if byteorder.NativeEndian.Uint64(h) == uint64(p) {
			if f := byteorder.NativeEndian.Uint16(h[8:]); f == 0x01 || f == 0x02 {
				pages = append(pages, p)
			}
		}
	}
	return pages
}

// corruptDamage applies damage of the given kind to a copy of clean.
func corruptDamage(rng *rand.Rand, clean []byte, kind int) (data []byte, what string) {
	data = bytes.Clone(clean)
	_, ps := corruptMeta(data)
	pages := corruptPages(data)
	page := pages[rng.IntN(len(pages))]
	base := page * ps
	switch kind {
	case 0: // one byte of a stored message, wherever a copy of it lies
		topic := corruptTopics[rng.IntN(len(corruptTopics))]
		i := 1 + rng.IntN(40)
		marker := fmt.Sprintf("#%s#%03d#", topic, i)
		for at := bytes.Index(data, []byte(marker)); at >= 0; at = bytes.Index(data, []byte(marker)) {
			data[at+2] ^= 0x01 // a letter of the topic's name: still JSON
		}
		return data, "data of " + marker
	case 1: // the order of keys: a high bit of a key in a leaf
		for tries := 0; tries < 1000; tries++ {
			base = pages[rng.IntN(len(pages))] * ps
			count := int(byteorder.NativeEndian.Uint16(data[base+10:]))
			if byteorder.NativeEndian.Uint16(data[base+8:]) != 0x02 || count < 2 {
				continue
			}
			e := base + 16 + rng.IntN(count)*16
			pos, ksize := int(byteorder.NativeEndian.Uint32(data[e+4:])), int(byteorder.NativeEndian.Uint32(data[e+8:]))
			if ksize == 0 || e+pos+ksize > len(data) {
				continue
			}
			bit := rng.IntN(min(ksize, 4) * 8)
			data[e+pos+bit/8] ^= 0x80 >> (bit % 8)
			return data, fmt.Sprintf("key order, page %d", base/ps)
		}
		return data, "none"
	case 2: // one bit anywhere in a page
		bit := rng.IntN(ps * 8)
		data[base+bit/8] ^= 1 << (bit % 8)
		return data, fmt.Sprintf("bit %d of page %d", bit, page)
	case 3: // a few random bytes in a page
		n := 1 + rng.IntN(8)
		for range n {
			data[base+rng.IntN(ps)] = byte(rng.IntN(256))
		}
		return data, fmt.Sprintf("%d bytes of page %d", n, page)
	default: // a bit of the page's header or its first elements
		bit := rng.IntN((16 + 4*16) * 8)
		data[base+bit/8] ^= 1 << (bit % 8)
		return data, fmt.Sprintf("header bit %d of page %d", bit, page)
	}
}

type corruptReply struct {
	Messages []struct {
		Topic string          `json:"topic"`
		Seq   uint64          `json:"seq"`
		Data  json.RawMessage `json:"data"`
	} `json:"messages"`
	Cursor string `json:"cursor"`
	Gaps   []struct {
		Topic  string `json:"topic"`
		Reason string `json:"reason"`
		Missed uint64 `json:"missed"`
	} `json:"gaps"`
}

// corruptReadAll follows topic from its earliest message. Every 200 must
// be valid JSON holding only messages as published, in order, and corrupt
// gaps; it returns how many messages it got and how many a gap skipped,
// or ok false if the server answered 500 internal (a damaged record).
func corruptReadAll(t *testing.T, base, topic string, want []string) (got, skipped int, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	query := "since=earliest"
	next := uint64(1)
	for range 200 {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/poll?timeout=0&limit=17&topic="+topic+"&"+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("poll %s: %v", topic, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("poll %s: %v", topic, err)
		}
		if !json.Valid(body) {
			t.Fatalf("poll %s: %d with a body that is not JSON: %q", topic, resp.StatusCode, body)
		}
		if resp.StatusCode == 500 && bytes.Contains(body, []byte(`"internal"`)) {
			return got, skipped, false
		}
		if resp.StatusCode != 200 {
			t.Fatalf("poll %s: %d %s", topic, resp.StatusCode, body)
		}
		var r corruptReply
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("poll %s: %v in %s", topic, err, body)
		}
		for _, g := range r.Gaps {
			if g.Reason != "corrupt" || g.Missed == 0 {
				t.Fatalf("poll %s: gap %+v, want only corrupt gaps", topic, g)
			}
			skipped += int(g.Missed)
			next += g.Missed
		}
		for _, m := range r.Messages {
			if m.Topic != topic || m.Seq != next || m.Seq > uint64(len(want)) || string(m.Data) != want[m.Seq-1] {
				t.Fatalf("poll %s: message %d %s, want seq %d %s", topic, m.Seq, m.Data, next, want[min(next, uint64(len(want)))-1])
			}
			got++
			next++
		}
		if len(r.Messages) == 0 && len(r.Gaps) == 0 {
			return got, skipped, true
		}
		query = "cursor=" + r.Cursor
	}
	t.Fatalf("poll %s: no end after 200 polls", topic)
	return
}

// TestCorruptDataFile writes a store through a disk-store server, stops it
// cleanly (and, for every other case, kills a second run of it so that
// the full check runs at the next start), then starts a server on each of
// 20 seeded random corruptions of the file. Each must be a normal start
// whose every 200 is valid JSON holding only what was published or
// corrupt gaps (500 internal for a damaged topic record), or a start-up
// error naming the file; never a panic.
func TestCorruptDataFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "longpoll.db")
	serveArgs := func(dir string) []string {
		return []string{"--store", "disk", "--data-dir", dir, "--retention-messages", "100000"}
	}
	s := corruptServe(t, serveArgs(dir)...)
	if s.url == "" {
		t.Fatalf("serve did not start: %v\n%s", s.err, s.log())
	}
	written := corruptWritten{}
	for _, topic := range corruptTopics {
		var batch []string
		for i := 1; i <= 40; i++ {
			d := corruptData(topic, i)
			written[topic] = append(written[topic], d)
			batch = append(batch, fmt.Sprintf(`{"topic":%q,"id":"%s-%d","data":%s}`, topic, topic, i, d))
		}
		// Two publishes a topic, so that its pages were rewritten once.
		for _, part := range [][]string{batch[:25], batch[25:]} {
			resp, err := http.Post(s.url+"/v1/publish", "application/json", strings.NewReader(`{"messages":[`+strings.Join(part, ",")+`]}`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("publish: %d %s", resp.StatusCode, body)
			}
		}
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("serve exit: %v\n%s", err, s.log())
	}
	clean, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The same store as a crash leaves it: no clean-stop mark.
	s = corruptServe(t, serveArgs(dir)...)
	if s.url == "" {
		t.Fatalf("serve did not start again: %v\n%s", s.err, s.log())
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	crashed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	outcomes := map[string]int{}
	for seed := range 20 {
		rng := rand.New(rand.NewPCG(uint64(seed), 28))
		kind := seed % 5
		src, stop := clean, "clean stop"
		if seed%2 == 1 {
			src, stop = crashed, "crash"
		}
		data, what := corruptDamage(rng, src, kind)
		name := fmt.Sprintf("seed %d (%s, after a %s)", seed, what, stop)
		cdir := t.TempDir()
		cpath := filepath.Join(cdir, "longpoll.db")
		if err := os.WriteFile(cpath, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := corruptServe(t, serveArgs(cdir)...)
		noPanic := func() {
			if l := c.log(); strings.Contains(l, "panic:") || strings.Contains(l, "goroutine ") || strings.Contains(l, "fatal error") {
				t.Fatalf("%s: the server panicked:\n%s", name, l)
			}
		}
		if c.url == "" {
			noPanic()
			l := c.log()
			if c.err == nil || !strings.Contains(l, cpath) || !strings.Contains(l, "not a readable longpoll database") {
				t.Fatalf("%s: serve exited (%v) without an error naming the file as damaged:\n%s", name, c.err, l)
			}
			if kind == 0 {
				t.Fatalf("%s: damaged message data refused the start; it should be a corrupt gap:\n%s", name, l)
			}
			outcomes["refused at start"]++
			continue
		}
		gaps, internal := 0, 0
		for _, topic := range corruptTopics {
			got, skipped, ok := corruptReadAll(t, c.url, topic, written[topic])
			switch {
			case !ok:
				internal++
			case got+skipped != len(written[topic]):
				t.Fatalf("%s: %s: %d messages and %d skipped, want %d in all", name, topic, got, skipped, len(written[topic]))
			case skipped > 0:
				gaps++
			}
		}
		if kind == 0 && gaps == 0 {
			t.Fatalf("%s: no corrupt gap for damaged message data", name)
		}
		if gaps > 0 {
			resp, err := http.Get(c.url + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(body, []byte(`longpoll_gaps_total{reason="corrupt"} 0`)) ||
				!bytes.Contains(body, []byte(`longpoll_gaps_total{reason="corrupt"}`)) {
				t.Fatalf("%s: corrupt gaps served but not counted:\n%s", name, body)
			}
		}
		if err := c.stop(t); err != nil && gaps == 0 && internal == 0 {
			t.Errorf("%s: serve exit: %v\n%s", name, err, c.log())
		}
		noPanic()
		switch {
		case internal > 0:
			outcomes["started, a topic answers 500 internal"]++
		case gaps > 0:
			outcomes["started, corrupt gaps"]++
		default:
			outcomes["started, every message intact"]++
		}
	}
	t.Logf("20 corruptions: %v", outcomes)
}
