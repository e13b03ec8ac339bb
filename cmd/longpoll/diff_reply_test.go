package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDiffReplyBound: with --max-reply-bytes 100000 and messages of about
// 30 KB, a poll stops before the message that would take its reply past
// 100000 bytes, but always holds one (a message of 150 KB comes alone),
// and the next poll from its cursor returns the next messages at once;
// every message arrives once, in order, on both transports alike.
func TestDiffReplyBound(t *testing.T) {
	diffGate(t)
	t.Parallel()
	const limit = 100000
	p := diffStart(t, "--max-reply-bytes", fmt.Sprint(limit), "--max-message-size", "200000")
	// Messages 0-9 and 11-12 hold about 30 KB, message 10 150 KB.
	size := func(i int) int {
		if i == 10 {
			return 150000
		}
		return 30000
	}
	const count = 13
	for _, s := range p {
		for i := range count {
			body := fmt.Sprintf(`{"topic":"rb","data":{"i":%d,"p":%q}}`, i, strings.Repeat("x", size(i)))
			if st, _, b, err := diffDo(t.Context(), "POST", s.url+"/v1/publish", body); st != 200 {
				t.Fatalf("publish: %d %s %v", st, b, err)
			}
		}
	}
	var next [2]int      // the message each side expects next
	var cursor [2]string // where each side's next poll starts
	for step := 0; next[0] < count || next[1] < count; step++ {
		if step == count {
			t.Fatalf("still not every message after %d polls: %v", step, next)
		}
		res := diffEach(p, func(i int, s *server) diffResult {
			q := "/v1/poll?topic=rb&since=earliest&limit=100"
			if cursor[i] != "" {
				q = "/v1/poll?topic=rb&cursor=" + cursor[i] + "&limit=100&timeout=20"
			}
			return diffPlay(diffAddr(s), diffScript{parts: [][]byte{[]byte(diffGET(q))}, want: 1, wait: 25 * time.Second})
		})
		diffCompare(t, res, true, false)
		for i, r := range res {
			tr := diffTransports[i]
			if len(r.resps) != 1 || r.resps[0].Status != 200 {
				t.Fatalf("%s: poll %d: %s", tr, step+1, r.summary())
			}
			x := r.resps[0]
			if x.At > 2*time.Second {
				t.Errorf("%s: poll %d answered after %v, not at once", tr, step+1, x.At)
			}
			var rep struct {
				Messages []struct {
					Seq  uint64
					Data struct{ I int }
				}
				Cursor string
			}
			if err := json.Unmarshal(x.Body, &rep); err != nil {
				t.Fatalf("%s: %v", tr, err)
			}
			n := len(rep.Messages)
			t.Logf("%s: poll %d: %d messages, %d bytes", tr, step+1, n, len(x.Body))
			switch {
			case n == 0:
				t.Fatalf("%s: poll %d returned nothing with messages pending", tr, step+1)
			case n > 4:
				t.Errorf("%s: poll %d returned %d messages of about 30 KB, above 100000 bytes", tr, step+1, n)
			case n > 1 && len(x.Body) > limit:
				t.Errorf("%s: poll %d: a reply of %d messages and %d bytes, above --max-reply-bytes", tr, step+1, n, len(x.Body))
			}
			for _, m := range rep.Messages {
				if m.Seq != uint64(next[i]+1) || m.Data.I != next[i] {
					t.Fatalf("%s: seq %d (message %d) where message %d was due", tr, m.Seq, m.Data.I, next[i])
				}
				next[i]++
			}
			// It stopped before the message that would take it past.
			if next[i] < count && len(x.Body)+size(next[i]) <= limit {
				t.Errorf("%s: poll %d stopped at %d bytes although message %d (%d bytes) would fit", tr, step+1, len(x.Body), next[i], size(next[i]))
			}
			cursor[i] = rep.Cursor
		}
		if next[0] != next[1] {
			t.Fatalf("after poll %d dense is at message %d, std at %d", step+1, next[0], next[1])
		}
	}
}
