package main

import (
	"sync"
	"testing"
	"time"
)

// diffBytes cuts s into one-byte writes.
func diffBytes(s string) [][]byte {
	out := make([][]byte, len(s))
	for i := range out {
		out[i] = []byte{s[i]}
	}
	return out
}

// TestDiffHeaderTimeout: with --read-header-timeout 2s, a connection that
// sends nothing, or sends a head slowly, is closed 2 s (±1 s) after the
// head started: from the accept for a silent one, from the first byte
// of a pipelined head, and once only for a head the loop hands to
// net/http part way.
func TestDiffHeaderTimeout(t *testing.T) {
	diffGate(t)
	t.Parallel()
	const timeout = 2 * time.Second
	const slow = "GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: a-slow-client\r\n\r\n"
	// slowPause puts no byte near net/http's cut at 2 s (with one byte a
	// second, the third reached it just as it cut the connection, and the
	// kernel's reset for that byte could discard the 400 before the
	// client read it), and none between that cut and the loop's, which
	// its whole-second wheel makes in [2 s, 3 s): both sides then cut a
	// head of the same bytes.
	const slowPause = 1500 * time.Millisecond
	cases := []struct {
		name string
		sc   diffScript // the head starts with its first part (or the connection)
		want int        // replies before the cut
	}{
		{name: "silent"},
		{name: "slow head", sc: diffScript{parts: diffBytes(slow), pause: slowPause}},
		// A request and, in the same write, the first byte of the next
		// head; then one byte every slowPause.
		{name: "pipelined slow head", want: 1, sc: diffScript{
			parts: append([][]byte{[]byte(diffGET("/healthz") + "G")}, diffBytes(slow[1:])...), pause: slowPause}},
		// A plain poll's head, a field at 0.75 s, then at 1.5 s a field
		// (Expect) that makes the loop hand the connection to net/http,
		// and nothing more: net/http must not start the timeout over (it
		// would cut at 3.5 s). No byte comes near the cut, whose reset
		// could discard the 400 before the client read it.
		{name: "handed late", sc: diffScript{
			parts: [][]byte{[]byte("GET /v1/poll?topic=a&timeout=0 HTTP/1.1\r\nHost: x\r\n"),
				[]byte("User-Agent: ab\r\n"), []byte("Expect:")},
			pause: 750 * time.Millisecond}},
	}
	// The cases mostly wait: they run at once, each on servers of its
	// own, and are judged each in a subtest.
	wait := timeout + 6*time.Second
	pairs := make([]diffPair, len(cases))
	for k := range cases {
		pairs[k] = diffStart(t, "--read-header-timeout", timeout.String())
	}
	results := make([][2]diffResult, len(cases))
	var wg sync.WaitGroup
	for k, c := range cases {
		sc := c.sc
		sc.wait = wait
		wg.Go(func() {
			results[k] = diffEach(pairs[k], func(_ int, s *server) diffResult { return diffPlay(diffAddr(s), sc) })
		})
	}
	wg.Wait()
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := results[k]
			diffCompare(t, res, true, false)
			for i, r := range res {
				tr := diffTransports[i]
				var from time.Duration
				if len(r.partAt) > 0 {
					from = r.partAt[0]
				}
				cut := r.endAt - from
				t.Logf("%s: cut %v after the head started (%d bytes sent)", tr, cut.Round(10*time.Millisecond), len(r.partAt))
				// ±1 s, and 200 ms for this side's own scheduling on a
				// loaded machine.
				if r.end != "eof" && r.end != "reset" {
					t.Errorf("%s: not cut within %v (end %s)", tr, wait, r.end)
				} else if cut < timeout-time.Second || cut > timeout+time.Second+200*time.Millisecond {
					t.Errorf("%s: cut %v after the head started, want %v ±1s", tr, cut.Round(10*time.Millisecond), timeout)
				}
				// net/http answers a head cut part way with 400 (compared
				// above); the replies before it are the ones asked for.
				n := len(r.resps)
				if n > 0 && r.resps[n-1].Status == 400 {
					n--
				}
				if n != c.want {
					t.Errorf("%s: %d replies before the cut, want %d", tr, n, c.want)
				}
			}
		})
	}
}
