package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// diffBodyLimit is the --max-body-size the body cases run with (the
// default); --max-message-size is set above it so that the body limit is
// the one a large publish meets.
const diffBodyLimit = 8 << 20

var diffBodyArgs = []string{"--max-body-size", strconv.Itoa(diffBodyLimit), "--max-message-size", "16777216", "--retention-bytes", "16777216"}

func diffPublishHead(n int) string {
	return fmt.Sprintf("POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", n)
}

// diffBodyFor is the body length that makes a whole publish request
// total bytes long.
func diffBodyFor(total int) int {
	n := total - len(diffPublishHead(total))
	for len(diffPublishHead(n))+n != total {
		n = total - len(diffPublishHead(n))
	}
	return n
}

// diffXs is a run of 'x' longer than any body, made once: the race
// detector makes building one per case slow.
var diffXs = sync.OnceValue(func() []byte { return bytes.Repeat([]byte("x"), diffBodyLimit+(128<<10)) })

// diffPublishBody is a publish of one message to topic whose body is n
// bytes: a JSON string of 'x' padded to length.
func diffPublishBody(topic string, n int) []byte {
	pre := `{"topic":"` + topic + `","data":"`
	k := max(n-len(pre)-2, 0)
	b := make([]byte, 0, len(pre)+k+2)
	b = append(b, pre...)
	b = append(b, diffXs()[:k]...)
	return append(b, `"}`...)
}

// diffPublishData is the data a body of diffPublishBody carries.
func diffPublishData(topic string, body []byte) []byte {
	return body[len(`{"topic":"`+topic+`","data":`) : len(body)-1]
}

// diffStoredOne checks that topic holds one message, seq, whose data is
// data.
// It compares the reply's bytes rather than decoding it: decoding 8 MiB
// under the race detector takes seconds.
func diffStoredOne(ctx context.Context, s *server, topic string, seq uint64, data []byte) error {
	st, _, b, err := diffDo(ctx, "GET", s.url+"/v1/topics/"+topic, "")
	var info struct{ Head, Oldest uint64 }
	if err != nil || st != 200 || json.Unmarshal(b, &info) != nil {
		return fmt.Errorf("topic info: %d %.200s %v", st, b, err)
	}
	if info.Head != seq || info.Oldest != seq {
		return fmt.Errorf("topic %s holds seqs %d to %d, want %d alone", topic, info.Oldest, info.Head, seq)
	}
	// Raw, not through net/http's client: its 4 KiB reads cost seconds
	// under the race detector.
	r := diffPlay(diffAddr(s), diffScript{parts: [][]byte{[]byte(diffGET("/v1/poll?topic=" + topic + "&since=earliest&timeout=0"))}, want: 1, wait: 60 * time.Second})
	if len(r.resps) != 1 || r.resps[0].Status != 200 {
		return fmt.Errorf("read-back: %s", r.summary())
	}
	b = r.resps[0].Body
	// {"messages":[{"topic":...,"seq":1,"time":...,"data":DATA}],"cursor":...
	i := bytes.Index(b[:min(len(b), 512)], []byte(`"data":`))
	if i < 0 || len(b) < i+7+len(data)+3 || !bytes.Equal(b[i+7:i+7+len(data)], data) || string(b[i+7+len(data):i+7+len(data)+3]) != "}]," {
		return fmt.Errorf("read-back: %d bytes, not the message sent: %.200s", len(b), b)
	}
	return nil
}

// diffPieces cuts a request into small writes: the head in two, the
// body's first byte, its next 999, then the rest in four.
func diffPieces(head string, body []byte) [][]byte {
	parts := [][]byte{[]byte(head[:len(head)/2]), []byte(head[len(head)/2:])}
	cuts := []int{0, min(1, len(body)), min(1000, len(body))}
	rest := len(body) - cuts[2]
	for i := 1; i <= 4; i++ {
		cuts = append(cuts, cuts[2]+rest*i/4)
	}
	for i := 1; i < len(cuts); i++ {
		if cuts[i] > cuts[i-1] {
			parts = append(parts, body[cuts[i-1]:cuts[i]])
		}
	}
	return parts
}

// TestDiffBodies: publishes whose body, or whole request, is one byte
// either side of each buffer of the dense transport (its 64 KiB reads
// and pending input, the 1 MiB body it serves itself, the 4 MiB it used
// to buffer for net/http) and of --max-body-size, and a few random sizes;
// each sent in one write and in pieces with pauses. Over the limit is 413
// on both, with the same framing; under it, 200 and the message stored.
// The cases over the limit run LONGPOLL_DIFF_RUNS times.
func TestDiffBodies(t *testing.T) {
	diffGate(t)
	t.Parallel()
	runs := diffEnvInt(t, "LONGPOLL_DIFF_RUNS", 1)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("LONGPOLL_DIFF_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("LONGPOLL_DIFF_SEED=%q", v)
		}
	}
	t.Logf("random sizes from LONGPOLL_DIFF_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	type size struct {
		name string
		body int
	}
	var sizes []size
	for _, b := range []struct {
		name string
		n    int
	}{{"64KiB", 64 << 10}, {"1MiB", 1 << 20}, {"4MiB", 4 << 20}, {"limit", diffBodyLimit}} {
		for d := -1; d <= 1; d++ {
			sizes = append(sizes, size{fmt.Sprintf("body=%s%+d", b.name, d), b.n + d})
			// The buffers count bytes of input, head included; the limit
			// counts the body's alone.
			if b.n != diffBodyLimit {
				sizes = append(sizes, size{fmt.Sprintf("request=%s%+d", b.name, d), diffBodyFor(b.n + d)})
			}
		}
	}
	for range 3 {
		n := 64 + rng.IntN(diffBodyLimit+(64<<10))
		sizes = append(sizes, size{fmt.Sprintf("body=%d", n), n})
	}

	p := diffStart(t, diffBodyArgs...)
	for i, sz := range sizes {
		for _, mode := range []string{"one-write", "pieces"} {
			t.Run(sz.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				topic := fmt.Sprintf("b%d.%s", i, mode)
				body := diffPublishBody(topic, sz.body)
				head := diffPublishHead(len(body))
				sc := diffScript{want: 1, wait: 60 * time.Second}
				if mode == "one-write" {
					sc.parts = [][]byte{append([]byte(head), body...)}
				} else {
					sc.parts, sc.pause = diffPieces(head, body), 20*time.Millisecond
				}
				want, n := 200, 1
				if len(body) > diffBodyLimit {
					want, n = 413, runs
				}
				for run := range n {
					res := diffEach(p, func(_ int, s *server) diffResult { return diffPlay(diffAddr(s), sc) })
					diffCompare(t, res, true, false)
					for k, r := range res {
						if len(r.resps) != 1 || r.resps[0].Status != want {
							t.Errorf("run %d: %s: %s; want %d", run+1, diffTransports[k], r.summary(), want)
						}
						if want == 200 && r.writeErr != nil {
							t.Errorf("%s: write: %v", diffTransports[k], r.writeErr)
						}
					}
					if t.Failed() {
						return
					}
				}
				for k, s := range p {
					if want == 200 {
						if err := diffStoredOne(t.Context(), s, topic, 1, diffPublishData(topic, body)); err != nil {
							t.Errorf("%s: %v", diffTransports[k], err)
						}
					} else if data, err := diffStored(t.Context(), s, topic); err != nil || len(data) != 0 {
						t.Errorf("%s: %d messages stored after a refused publish (%v)", diffTransports[k], len(data), err)
					}
				}
			})
		}
	}
}

// TestDiffBodyLimitConcurrent: 8 publishes of a body exactly at
// --max-body-size, at once on 8 connections, all get their 200 and are
// stored; LONGPOLL_DIFF_RUNS times in a row.
func TestDiffBodyLimitConcurrent(t *testing.T) {
	diffGate(t)
	t.Parallel()
	runs := diffEnvInt(t, "LONGPOLL_DIFF_RUNS", 1)
	// One message per topic is kept, so that a hundred runs stay small.
	p := diffStart(t, append(diffBodyArgs, "--retention-messages", "1")...)
	const n = 8
	reqs := make([][]byte, n)
	for i := range reqs {
		body := diffPublishBody(fmt.Sprintf("c%d", i), diffBodyLimit)
		reqs[i] = append([]byte(diffPublishHead(len(body))), body...)
	}
	// The last run's messages are read back whole.
	defer func() {
		for k, s := range p {
			for i := range n {
				body := reqs[i][len(diffPublishHead(diffBodyLimit)):]
				topic := fmt.Sprintf("c%d", i)
				if err := diffStoredOne(t.Context(), s, topic, uint64(runs), diffPublishData(topic, body)); err != nil && !t.Failed() {
					t.Errorf("%s: %v", diffTransports[k], err)
				}
			}
		}
	}()
	lost := 0
	for run := range runs {
		res := diffEach(p, func(_ int, s *server) [n]diffResult {
			var out [n]diffResult
			var wg sync.WaitGroup
			for i := range out {
				wg.Go(func() {
					out[i] = diffPlay(diffAddr(s), diffScript{parts: [][]byte{reqs[i]}, want: 1, wait: 60 * time.Second})
				})
			}
			wg.Wait()
			return out
		})
		for k, side := range res {
			for i, r := range side {
				if len(r.resps) != 1 || r.resps[0].Status != 200 {
					lost++
					t.Errorf("run %d: %s: publish %d: %s", run+1, diffTransports[k], i, r.summary())
				}
			}
			for i := range n {
				st, _, b, err := diffDo(t.Context(), "GET", fmt.Sprintf("%s/v1/topics/c%d", p[k].url, i), "")
				var info struct{ Head uint64 }
				if err != nil || st != 200 || json.Unmarshal(b, &info) != nil || info.Head != uint64(run+1) {
					t.Errorf("run %d: %s: topic c%d: %d %s %v; want head %d", run+1, diffTransports[k], i, st, b, err, run+1)
				}
			}
		}
		if t.Failed() && run >= 2 {
			break
		}
	}
	t.Logf("%d runs, %d replies missing", runs, lost)
}
