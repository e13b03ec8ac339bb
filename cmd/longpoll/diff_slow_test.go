package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

const (
	diffSlowReaders   = 100
	diffReplyMemory   = 64 << 20 // --max-reply-memory
	diffSlowSlack     = 16 << 20 // on top of it: garbage collector, runtime, 100 connections
	diffSlowTopic     = "slow"
	diffSlowFirstPoll = "topic=" + diffSlowTopic + "&since=earliest&limit=1000"
)

var pendingLine = regexp.MustCompile(`(?m)^longpoll_reply_bytes_pending (\S+)$`)

// diffSlowReader is one slow reader's story.
type diffSlowReader struct {
	slowBytes int           // bytes it read at 1 byte/s
	cutAt     time.Duration // when the slow phase saw the server end the connection (0: it did not)
	cutHow    string        // "eof" or "reset"
	drained   string        // at the slow phase's end: "cut" (ended before a complete reply), "complete NNN", "held" or an error
	polls     int           // polls of the fast phase
	refused   int           // of which 503
	got       []uint64      // the seqs it received, in order
	err       error
}

// TestDiffSlowReaders: 100 clients poll a backlog of about 6 MB (so each
// reply is about --max-reply-bytes, 1 MiB) on connections with a 4 KiB
// receive buffer, and read at 1 byte/s for LONGPOLL_DIFF_SLOW (60 s by
// default). The dense server, with --max-reply-memory 64 MiB, must stay
// within that budget (plus its RSS before, plus diffSlowSlack) throughout,
// and must cut every one of them. Then each polls at full speed from the
// same start (since=earliest, then the cursors it gets) and must get
// every message once, in order.
//
// It logs: the child's RSS before and at its peak (sampled every second,
// both phases), each reader's outcome counted (cut during the slow phase,
// and when; cut as seen when draining; complete replies; still held),
// longpoll_reply_bytes_pending at the slow phase's end, and the time and
// polls (and 503s) of the fast phase.
func TestDiffSlowReaders(t *testing.T) {
	diffGate(t)
	t.Parallel()
	slow := 60 * time.Second
	if v := os.Getenv("LONGPOLL_DIFF_SLOW"); v != "" {
		var err error
		if slow, err = time.ParseDuration(v); err != nil || slow < time.Second {
			t.Fatalf("LONGPOLL_DIFF_SLOW=%q: want a duration of 1s or more", v)
		}
	}
	s := startServer(t, nil, "--transport", "dense", "--max-reply-memory", strconv.Itoa(diffReplyMemory))
	ctx := t.Context()
	if err := diffBacklog(ctx, s, diffSlowTopic); err != nil {
		t.Fatal(err)
	}
	first, _, err := diffPoll(ctx, s, diffSlowFirstPoll+"&timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a first poll returns %d of the %d messages", len(first.Messages), diffBigCount)
	time.Sleep(200 * time.Millisecond)
	pid := s.cmd.Process.Pid
	base, err := diffRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The budget bounds the live reply bytes; the collector lets the heap
	// grow to twice the live bytes (GOGC=100) before it collects, and on
	// a busy machine it runs late: the RSS bound allows for both.
	bound := base + 2*diffReplyMemory + diffSlowSlack
	readers := make([]diffSlowReader, diffSlowReaders)
	conns := make([]*net.TCPConn, diffSlowReaders)
	for i := range conns {
		c, err := diffDial(diffAddr(s), 4096)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		defer c.Close()
	}
	// The child's RSS, every second from here to the end (nothing below
	// stops the test before the sampler is stopped).
	type rssAt struct {
		at  time.Duration
		rss int64
	}
	var samples []rssAt
	start := time.Now()
	stopSampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if rss, err := diffRSS(pid); err == nil {
				samples = append(samples, rssAt{time.Since(start), rss})
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	// The slow phase.
	slowEnd := start.Add(slow)
	var wg sync.WaitGroup
	prefix := make([][]byte, diffSlowReaders)
	for i, c := range conns {
		wg.Go(func() { prefix[i] = diffReadSlowly(c, &readers[i], start, slowEnd) })
	}
	wg.Wait()
	if _, _, b, err := diffDo(ctx, "GET", s.url+"/metrics", ""); err == nil {
		if m := pendingLine.FindSubmatch(b); m != nil {
			t.Logf("longpoll_reply_bytes_pending at the slow phase's end: %s", m[1])
		}
	}
	// What the server did with each: drain what is left at full speed.
	for i, c := range conns {
		wg.Go(func() { readers[i].drained = diffDrain(c, prefix[i]) })
	}
	wg.Wait()

	// The fast phase: every reader, on new connections, from the start.
	fastStart := time.Now()
	fctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for i := range readers {
		wg.Go(func() { diffReadFast(fctx, s, &readers[i]) })
	}
	wg.Wait()
	fast := time.Since(fastStart)
	close(stopSampling)
	<-sampled
	var peak, slowPeak rssAt
	for _, x := range samples {
		if x.rss > peak.rss {
			peak = x
		}
		if x.at <= slow && x.rss > slowPeak.rss {
			slowPeak = x
		}
	}

	counts, hows := map[string]int{}, map[string]int{}
	var cutSlow, polls, refused int
	var lastCut time.Duration
	for i, r := range readers {
		counts[r.drained]++
		if r.cutAt > 0 {
			cutSlow++
			hows[r.cutHow]++
			lastCut = max(lastCut, r.cutAt)
		}
		polls += r.polls
		refused += r.refused
		if r.drained != "cut" {
			t.Errorf("reader %d was not cut in the slow phase: read %d bytes slowly, then %s", i, r.slowBytes, r.drained)
		}
		if r.err != nil {
			t.Errorf("reader %d: %v", i, r.err)
		} else if len(r.got) != diffBigCount {
			t.Errorf("reader %d got %d messages, want %d", i, len(r.got), diffBigCount)
		}
	}
	t.Logf("RSS before %s; peak %s at %v (in the slow phase %s at %v); budget %s + slack %s",
		diffMiB(base), diffMiB(peak.rss), peak.at.Round(time.Second), diffMiB(slowPeak.rss), slowPeak.at.Round(time.Second),
		diffMiB(diffReplyMemory), diffMiB(diffSlowSlack))
	t.Logf("slow phase %v: %d of %d readers saw the cut while reading slowly (%v, the last at %v); at its end: %v",
		slow, cutSlow, diffSlowReaders, hows, lastCut.Round(time.Second), counts)
	t.Logf("fast phase: %v, %d polls, %d of them 503", fast.Round(10*time.Millisecond), polls, refused)
	if peak.rss > bound {
		t.Errorf("RSS reached %s at %v, above %s (before) + 2 x %s (--max-reply-memory, and as much garbage) + %s",
			diffMiB(peak.rss), peak.at.Round(time.Second), diffMiB(base), diffMiB(diffReplyMemory), diffMiB(diffSlowSlack))
	}
}

// diffReadSlowly sends the first poll on c and reads it one byte a
// second until end, or until the server ends the connection. It returns
// the bytes read.
func diffReadSlowly(c *net.TCPConn, r *diffSlowReader, start, end time.Time) []byte {
	var got []byte
	if _, err := c.Write([]byte(diffGET("/v1/poll?" + diffSlowFirstPoll))); err != nil {
		r.cutAt, r.cutHow = time.Since(start), "write: "+diffErrKind(err)
		return got
	}
	var b [1]byte
	for next := time.Now(); next.Before(end); next = next.Add(time.Second) {
		time.Sleep(time.Until(next))
		c.SetReadDeadline(next.Add(time.Second))
		n, err := c.Read(b[:])
		got = append(got, b[:n]...)
		if err != nil {
			if k := diffErrKind(err); k != "timeout" {
				r.cutAt, r.cutHow = time.Since(start), k
				break
			}
		}
	}
	r.slowBytes = len(got)
	return got
}

// diffDrain reads what is left on c at full speed and says how its reply
// ended: "cut" when the connection ended before a complete reply.
func diffDrain(c *net.TCPConn, prefix []byte) string {
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	r, err := diffReadResp(bufio.NewReaderSize(io.MultiReader(bytes.NewReader(prefix), c), 64<<10))
	if err == nil && r.Framing != "eof" {
		return fmt.Sprintf("complete %d", r.Status)
	}
	if err == nil {
		return "cut" // a reply delimited by the close: only the 400 net/http writes
	}
	switch k := diffErrKind(err); k {
	case "eof", "reset":
		return "cut"
	case "timeout":
		return "held"
	default:
		return k
	}
}

// diffReadFast polls from since=earliest, then from each cursor, until it
// has every message of the backlog; a 503 is retried after its
// Retry-After (at most 2 s). Its polls are raw and their replies scanned,
// not decoded: through net/http's client and encoding/json, the race
// detector makes the 600 MB the readers take last minutes.
func diffReadFast(ctx context.Context, s *server, r *diffSlowReader) {
	q := diffSlowFirstPoll
	for len(r.got) < diffBigCount && ctx.Err() == nil {
		res := diffPlay(diffAddr(s), diffScript{parts: [][]byte{[]byte(diffGET("/v1/poll?" + q + "&timeout=0"))}, want: 1, wait: 30 * time.Second})
		r.polls++
		if len(res.resps) != 1 {
			r.err = fmt.Errorf("poll %s: %s", q, res.summary())
			return
		}
		x := res.resps[0]
		if x.Status == 503 {
			r.refused++
			wait := 200 * time.Millisecond
			if sec, err := strconv.Atoi(x.Header.Get("Retry-After")); err == nil {
				wait = min(time.Duration(sec)*time.Second, 2*time.Second)
			}
			time.Sleep(wait)
			continue
		}
		seqs, is, cursor, err := diffScanBacklog(x.Body)
		if x.Status != 200 || err != nil {
			r.err = fmt.Errorf("poll %s: %d %v: %.200s", q, x.Status, err, x.Body)
			return
		}
		if len(seqs) == 0 {
			r.err = fmt.Errorf("poll %s: nothing, with %d of %d messages read", q, len(r.got), diffBigCount)
			return
		}
		for k, seq := range seqs {
			if want := uint64(len(r.got) + 1); seq != want || is[k] != int(want)-1 {
				r.err = fmt.Errorf("got seq %d (data %d) where %d was due", seq, is[k], want)
				return
			}
			r.got = append(r.got, seq)
		}
		q = "topic=" + diffSlowTopic + "&cursor=" + cursor + "&limit=1000"
	}
	if len(r.got) < diffBigCount && r.err == nil {
		r.err = ctx.Err()
	}
}

// diffScanBacklog reads a poll reply of backlog messages (diffBacklog):
// each message's seq and data.i, and the cursor. It checks the shape
// {"messages":[{...,"seq":S,...,"data":{"i":I,"p":"<pad>"}},...],"cursor":"C",...
// and steps over each pad by its length instead of reading it.
func diffScanBacklog(b []byte) (seqs []uint64, is []int, cursor string, err error) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"messages":[`))
	if !ok {
		return nil, nil, "", errors.New("not a poll reply")
	}
	number := func(after string) (uint64, error) {
		k := bytes.Index(rest[:min(len(rest), 512)], []byte(after))
		if k < 0 {
			return 0, fmt.Errorf("no %s in a message", after)
		}
		rest = rest[k+len(after):]
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		v, err := strconv.ParseUint(string(rest[:n]), 10, 64)
		rest = rest[n:]
		return v, err
	}
	for len(rest) > 0 && rest[0] == '{' {
		seq, err := number(`"seq":`)
		if err != nil {
			return nil, nil, "", err
		}
		i, err := number(`"data":{"i":`)
		if err != nil {
			return nil, nil, "", err
		}
		tail := `,"p":"` + diffBacklogPad + `"}}`
		if len(rest) < len(tail) || string(rest[:6]) != tail[:6] || string(rest[len(tail)-3:len(tail)]) != `"}}` {
			return nil, nil, "", fmt.Errorf("message %d is not one of the backlog's", seq)
		}
		rest = rest[len(tail):]
		if len(rest) > 0 && rest[0] == ',' {
			rest = rest[1:]
		}
		seqs, is = append(seqs, seq), append(is, int(i))
	}
	rest, ok = bytes.CutPrefix(rest, []byte(`],"cursor":"`))
	k := bytes.IndexByte(rest, '"')
	if !ok || k < 0 {
		return nil, nil, "", errors.New("no cursor after the messages")
	}
	return seqs, is, string(rest[:k]), nil
}
