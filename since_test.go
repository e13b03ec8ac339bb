package longpoll_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/broker/memory"
)

// since=<time> starts each topic the cursor does not cover at its first
// retained message at or after the time: the oldest retained for a time
// before it, the head for a time after every message.
func TestSinceTime(t *testing.T) {
	e := newEnv(t, []memory.Option{memory.WithMaxMessages(20)})
	var times []time.Time // times[i] is seq i+1's
	for i := range 30 {
		e.publish("t", i)
	}
	r := e.poll(q("topic", "t", "since", "earliest", "timeout", "0", "limit", "100"))
	for _, m := range r.Messages {
		tm, err := time.Parse(time.RFC3339Nano, m.Time)
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, tm)
	}
	if len(times) != 20 || r.Messages[0].Seq != 11 {
		t.Fatalf("retained %d messages from seq %d, want 20 from 11", len(times), r.Messages[0].Seq)
	}
	first := func(since string) uint64 {
		t.Helper()
		r := e.poll(q("topic", "t", "since", since, "timeout", "0", "limit", "1"))
		if len(r.Messages) == 0 {
			return 0
		}
		return r.Messages[0].Seq
	}
	for k := range times {
		at := times[k].Format(time.RFC3339Nano)
		want := uint64(11 + k)
		// Equal times: the first of them.
		for k > 0 && times[k-1].Equal(times[k]) {
			k--
			want--
		}
		if got := first(at); got != want {
			t.Fatalf("since=%s (seq %d's time): first seq %d, want %d", at, 11+k, got, want)
		}
		if k > 0 && !times[k-1].Equal(times[k]) {
			just := times[k-1].Add(time.Nanosecond).Format(time.RFC3339Nano)
			if got := first(just); got != want {
				t.Fatalf("since=%s (just after seq %d): first seq %d, want %d", just, 10+k, got, want)
			}
		}
	}
	if got := first(times[0].Add(-time.Hour).Format(time.RFC3339)); got != 11 {
		t.Fatalf("since an hour before the oldest retained: first seq %d, want the oldest, 11", got)
	}
	if got := first(times[19].Add(time.Hour).Format(time.RFC3339)); got != 0 {
		t.Fatalf("since a time after every message: got seq %d, want nothing", got)
	}
	// In the POST form, and on a topic with no messages (the head).
	status, _, b := e.do(context.Background(), "POST", "/v1/poll", "application/json",
		`{"topics":["t","empty"],"since":"`+times[5].Format(time.RFC3339Nano)+`","timeout":0,"limit":1}`)
	var pr reply
	if status != 200 || json.Unmarshal(b, &pr) != nil || len(pr.Messages) != 1 || pr.Messages[0].Seq != 16 {
		t.Fatalf("POST poll with since: %d %s", status, b)
	}
	for _, bad := range []string{"yesterday", "2026-12-05", "2026-12-05T10:00:00", "12345"} {
		status, _, b := e.do(context.Background(), "GET", "/v1/poll?topic=t&timeout=0&since="+bad, "", "")
		if status != 400 || !strings.Contains(string(b), "invalid_parameter") {
			t.Errorf("since=%s: %d %s, want 400 invalid_parameter", bad, status, b)
		}
	}
}
