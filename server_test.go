package longpoll_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

func TestPublishThenPollEarliest(t *testing.T) {
	e := newEnv(t, nil)
	datas := []string{`null`, `12345678901234567890123.4500`, `"h\u00e9llo \"w\""`, `{"a":[1,2,{"b":true}]}`, `-0.0e+10`, `[]`}
	for i, d := range datas {
		body := `{"topic":"chat.room-1/x:y@z_", "data": ` + d + `, "id": "k` + fmt.Sprint(i) + `"}`
		status, _, b := e.do(t.Context(), "POST", "/v1/publish", "application/json", body)
		if status != 200 || string(b) != fmt.Sprintf(`{"messages":[{"topic":"chat.room-1/x:y@z_","seq":%d}]}`, i+1) {
			t.Fatalf("publish %s: %d %s", d, status, b)
		}
	}
	r := e.poll(q("topic", "chat.room-1/x:y@z_", "since", "earliest", "timeout", "0"))
	if r.Timeout || len(r.Gaps) != 0 || len(r.Messages) != len(datas) {
		t.Fatalf("reply %+v", r)
	}
	var last time.Time
	for i, m := range r.Messages {
		if m.Seq != uint64(i+1) || string(m.Data) != datas[i] || m.ID == nil || *m.ID != fmt.Sprint("k", i) {
			t.Errorf("message %d: seq %d data %s id %v", i, m.Seq, m.Data, m.ID)
		}
		tm, err := time.Parse(time.RFC3339Nano, m.Time)
		if err != nil || !strings.HasSuffix(m.Time, "Z") || tm.Before(last) {
			t.Errorf("message %d: time %q (%v) must be RFC 3339 UTC, not before %v", i, m.Time, err, last)
		}
		last = tm
	}
	// The cursor continues where the reply ended: nothing more is pending.
	r2 := e.poll(q("topic", "chat.room-1/x:y@z_", "cursor", r.Cursor, "timeout", "0"))
	if len(r2.Messages) != 0 || !r2.Timeout {
		t.Fatalf("after cursor: %+v", r2)
	}
}

func TestPollWakesOnPublish(t *testing.T) {
	e := newEnv(t, nil)
	got := make(chan reply, 1)
	go func() { got <- e.poll(q("topic", "a", "topic", "b", "timeout", "30")) }()
	e.waitWaiting("b", 1)
	start := time.Now()
	e.publish("b", "hi")
	r := <-got
	t.Logf("publish to delivery over loopback: %v", time.Since(start))
	if len(r.Messages) != 1 || r.Messages[0].Topic != "b" || string(r.Messages[0].Data) != `"hi"` || r.Timeout {
		t.Fatalf("reply %+v", r)
	}
	// The poll leaves both topics' wait sets. The reply goes out before it
	// does (a claimed poll is answered, then settled), so the count may
	// trail the reply by a moment.
	e.waitWaiting("b", 0)
	e.waitWaiting("a", 0)
}

func TestNoCursorStartsAtHead(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("a", 1)
	r := e.poll(q("topic", "a", "timeout", "0"))
	if len(r.Messages) != 0 || !r.Timeout {
		t.Fatalf("a poll without cursor got old messages: %+v", r)
	}
	e.publish("a", 2)
	r = e.poll(q("topic", "a", "cursor", r.Cursor, "timeout", "0"))
	if len(r.Messages) != 1 || string(r.Messages[0].Data) != "2" {
		t.Fatalf("after head cursor: %+v", r)
	}
}

func TestCursorBeforeFirstMessageHasNoGap(t *testing.T) {
	e := newEnv(t, nil)
	r := e.poll(q("topic", "fresh", "timeout", "0"))
	for i := range 3 {
		e.publish("fresh", i)
	}
	r = e.poll(q("topic", "fresh", "cursor", r.Cursor, "timeout", "0"))
	if len(r.Gaps) != 0 || len(r.Messages) != 3 || r.Messages[0].Seq != 1 {
		t.Fatalf("reply %+v", r)
	}
}

func TestCursorTopicsAddedAndDropped(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("a", "a1")
	e.publish("b", "b1")
	r := e.poll(q("topic", "a", "since", "earliest", "timeout", "0"))
	if len(r.Messages) != 1 {
		t.Fatalf("%+v", r)
	}
	// b is not in the cursor: since=earliest applies to it alone.
	r = e.poll(q("topic", "a", "topic", "b", "cursor", r.Cursor, "since", "earliest", "timeout", "0"))
	if len(r.Messages) != 1 || r.Messages[0].Topic != "b" {
		t.Fatalf("adding b: %+v", r)
	}
	// Dropping a, then adding it back without since: it restarts at the head.
	r = e.poll(q("topic", "b", "cursor", r.Cursor, "timeout", "0"))
	e.publish("a", "a2")
	r = e.poll(q("topic", "a", "topic", "b", "cursor", r.Cursor, "since", "earliest", "timeout", "0"))
	if len(r.Messages) != 2 || string(r.Messages[0].Data) != `"a1"` {
		t.Fatalf("a dropped from the cursor must restart per since: %+v", r)
	}
}

func TestLimitAndCrossTopicOrder(t *testing.T) {
	e := newEnv(t, nil)
	// Interleave publishes over three topics; times increase with each.
	var order []string
	for i := range 30 {
		topic := []string{"x", "y", "z"}[i%3]
		e.publish(topic, i)
		order = append(order, fmt.Sprint(i))
	}
	var got []string
	cur := ""
	for len(got) < 30 {
		v := q("topic", "z", "topic", "x", "topic", "y", "topic", "x", "since", "earliest", "timeout", "0", "limit", "7")
		if cur != "" {
			v.Set("cursor", cur)
		}
		r := e.poll(v)
		if len(r.Messages) == 0 || len(r.Messages) > 7 {
			t.Fatalf("got %d messages with limit 7", len(r.Messages))
		}
		for _, m := range r.Messages {
			got = append(got, string(m.Data))
		}
		cur = r.Cursor
	}
	if strings.Join(got, ",") != strings.Join(order, ",") {
		t.Fatalf("cross-topic order:\n got %v\nwant %v", got, order)
	}
}

func TestRetentionGapExactMissed(t *testing.T) {
	e := newEnv(t, []memory.Option{memory.WithMaxMessages(5)})
	r := e.poll(q("topic", "r", "timeout", "0"))
	for i := range 12 {
		e.publish("r", i)
	}
	// 12 appended, 5 retained (8..12): the cursor at 0 missed 7.
	r = e.poll(q("topic", "r", "cursor", r.Cursor, "timeout", "0", "limit", "2"))
	if len(r.Gaps) != 1 || r.Gaps[0].Reason != "expired" || r.Gaps[0].Missed != 7 || r.Gaps[0].Topic != "r" {
		t.Fatalf("gaps %+v", r.Gaps)
	}
	if len(r.Messages) != 2 || r.Messages[0].Seq != 8 {
		t.Fatalf("messages after the gap: %+v", r.Messages)
	}
	// The gap is reported once.
	r = e.poll(q("topic", "r", "cursor", r.Cursor, "timeout", "0"))
	if len(r.Gaps) != 0 || len(r.Messages) != 3 || r.Messages[0].Seq != 10 {
		t.Fatalf("next reply %+v", r)
	}
}

func TestGapReportedEvenWhenLimitLeavesNoMessage(t *testing.T) {
	e := newEnv(t, []memory.Option{memory.WithMaxMessages(2)})
	r0 := e.poll(q("topic", "a", "topic", "b", "timeout", "0"))
	e.publish("a", 1)
	for i := range 5 {
		e.publish("b", i)
	}
	// limit 1 takes a's message (older); b's expired gap must still be
	// reported, once.
	r := e.poll(q("topic", "a", "topic", "b", "cursor", r0.Cursor, "timeout", "0", "limit", "1"))
	if len(r.Messages) != 1 || r.Messages[0].Topic != "a" || len(r.Gaps) != 1 || r.Gaps[0].Missed != 3 {
		t.Fatalf("reply %+v", r)
	}
	r = e.poll(q("topic", "a", "topic", "b", "cursor", r.Cursor, "timeout", "0"))
	if len(r.Gaps) != 0 || len(r.Messages) != 2 || r.Messages[0].Seq != 4 {
		t.Fatalf("reply %+v", r)
	}
}

func TestResetGapAfterBrokerRestart(t *testing.T) {
	e1 := newEnv(t, nil)
	e1.publish("t", "old")
	r := e1.poll(q("topic", "t", "since", "earliest", "timeout", "0"))
	e2 := newEnv(t, nil) // a restarted memory broker: new epochs
	e2.publish("t", "new1")
	e2.publish("t", "new2")
	r = e2.poll(q("topic", "t", "cursor", r.Cursor, "timeout", "0"))
	if len(r.Gaps) != 1 || r.Gaps[0].Reason != "reset" || len(r.Messages) != 2 || string(r.Messages[0].Data) != `"new1"` {
		t.Fatalf("reply %+v", r)
	}
}

func TestIdempotentPublish(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"topic":"i","data":1,"id":"once"}`
	for range 3 {
		status, _, b := e.do(t.Context(), "POST", "/v1/publish", "application/json", body)
		if status != 200 || !strings.Contains(string(b), `"seq":1`) {
			t.Fatalf("%d %s", status, b)
		}
	}
	_, _, b := e.do(t.Context(), "POST", "/v1/publish", "application/json", `{"messages":[{"topic":"i","data":2,"id":"once"},{"topic":"j","data":3,"id":"once"}]}`)
	if string(b) != `{"messages":[{"topic":"i","seq":1,"duplicate":true},{"topic":"j","seq":1}]}` {
		t.Fatalf("batch reply %s", b)
	}
	r := e.poll(q("topic", "i", "since", "earliest", "timeout", "0"))
	if len(r.Messages) != 1 || *r.Messages[0].ID != "once" {
		t.Fatalf("%+v", r)
	}
}

func TestBatchIsAllOrNothing(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		body   string
		status int
		code   string
	}{
		{`{"messages":[{"topic":"ok","data":1},{"topic":"bad topic","data":2}]}`, 400, "invalid_topic"},
		{`{"messages":[{"topic":"ok","data":1},{"topic":"_longpoll.stats","data":2}]}`, 403, "reserved_topic"},
		{`{"messages":[{"topic":"ok","data":1},{"topic":"ok"}]}`, 400, "invalid_body"},
		{`{"messages":[{"topic":"ok","data":1},{"topic":"ok","data":"` + strings.Repeat("x", 70000) + `"}]}`, 413, "too_large"},
	}
	for _, c := range cases {
		status, _, b := e.do(t.Context(), "POST", "/v1/publish", "application/json", c.body)
		var er errReply
		json.Unmarshal(b, &er)
		if status != c.status || er.Error.Code != c.code {
			t.Errorf("%.60s: %d %s, want %d %s", c.body, status, b, c.status, c.code)
		}
	}
	_, _, b := e.do(t.Context(), "GET", "/v1/topics/ok", "", "")
	if string(b) != `{"topic":"ok","head":0,"oldest":0,"waiting":0}` {
		t.Fatalf("a refused batch appended something: %s", b)
	}
	status, _, b := e.do(t.Context(), "POST", "/v1/publish", "application/json", `{"messages":[{"topic":"ok","data":1},{"topic":"o2","data":2},{"topic":"ok","data":3}]}`)
	if status != 200 || string(b) != `{"messages":[{"topic":"ok","seq":1},{"topic":"o2","seq":1},{"topic":"ok","seq":2}]}` {
		t.Fatalf("batch: %d %s", status, b)
	}
}

func TestPostPoll(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("p1", "x")
	topics := []string{"p1"}
	for i := range 99 {
		topics = append(topics, fmt.Sprintf("topic.with.a.long.name.%03d.%s", i, strings.Repeat("z", 100)))
	}
	body, _ := json.Marshal(map[string]any{"topics": topics, "since": "earliest", "timeout": 0, "limit": 10})
	status, h, b := e.do(t.Context(), "POST", "/v1/poll", "application/json; charset=utf-8", string(body))
	if status != 200 {
		t.Fatalf("%d %s", status, b)
	}
	checkJSONHeaders(t, h)
	r := decodeReply(t, b)
	if len(r.Messages) != 1 {
		t.Fatalf("%+v", r)
	}
	// timeout as a duration string
	status, _, b = e.do(t.Context(), "POST", "/v1/poll", "application/json", `{"topics":["p1"],"cursor":"`+r.Cursor+`","timeout":"10ms"}`)
	if status != 200 || !decodeReply(t, b).Timeout {
		t.Fatalf("%d %s", status, b)
	}
}

func TestTopicInfo(t *testing.T) {
	e := newEnv(t, []memory.Option{memory.WithMaxMessages(3)})
	for i := range 5 {
		e.publish("a/b", i)
	}
	done := make(chan struct{})
	go func() { defer close(done); e.poll(q("topic", "a/b", "timeout", "30")) }()
	e.waitWaiting("a/b", 1)
	status, h, b := e.do(t.Context(), "GET", "/v1/topics/a%2Fb", "", "")
	if status != 200 || string(b) != `{"topic":"a/b","head":5,"oldest":3,"waiting":1}` {
		t.Fatalf("%d %s", status, b)
	}
	checkJSONHeaders(t, h)
	e.publish("a/b", "wake")
	<-done
	status, _, b = e.do(t.Context(), "GET", "/v1/topics/"+url.PathEscape("never.used"), "", "")
	if status != 200 || string(b) != `{"topic":"never.used","head":0,"oldest":0,"waiting":0}` {
		t.Fatalf("%d %s", status, b)
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, nil)
	req := "abc-123.req"
	status, h, b := e.doHeader("GET", "/v1/poll?topic=bad%20name", "X-Request-Id", req)
	var er errReply
	json.Unmarshal(b, &er)
	if status != 400 || h.Get("X-Request-Id") != req || er.Error.RequestID != req {
		t.Fatalf("%d %v %s", status, h, b)
	}
	_, h1, _ := e.do(t.Context(), "GET", "/healthz", "", "")
	_, h2, _ := e.do(t.Context(), "GET", "/healthz", "", "")
	if h1.Get("X-Request-Id") == "" || h1.Get("X-Request-Id") == h2.Get("X-Request-Id") {
		t.Fatalf("generated request ids %q %q", h1.Get("X-Request-Id"), h2.Get("X-Request-Id"))
	}
}

func TestClientGoneIsForgotten(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := newGet(ctx, e.url+"/v1/poll?topic=gone&timeout=50")
		resp, err := e.hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	e.waitWaiting("gone", 1)
	cancel()
	<-done
	e.waitWaiting("gone", 0)
}

func TestPublishRacingPoll(t *testing.T) {
	e := newEnv(t, nil)
	const n = 2000
	r := e.poll(q("topic", "race", "timeout", "0"))
	cur := r.Cursor
	for i := range n {
		got := make(chan reply, 1)
		go func() { got <- e.poll(q("topic", "race", "cursor", cur, "timeout", "20")) }()
		e.publish("race", i)
		r := <-got
		if len(r.Messages) != 1 || r.Messages[0].Seq != uint64(i+1) {
			t.Fatalf("iteration %d: %+v", i, r)
		}
		cur = r.Cursor
	}
}

func TestBurstManySubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("burst test skipped in -short mode")
	}
	e := newEnv(t, []memory.Option{memory.WithMaxMessages(20000)})
	const subs, msgs = 100, 10000
	start := e.poll(q("topic", "burst", "timeout", "0")).Cursor
	var wg sync.WaitGroup
	errs := make(chan error, subs)
	for s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur, next := start, uint64(1)
			for next <= msgs {
				r := e.poll(q("topic", "burst", "cursor", cur, "timeout", "20", "limit", "1000"))
				if len(r.Gaps) > 0 {
					errs <- fmt.Errorf("subscriber %d: gap %+v", s, r.Gaps)
					return
				}
				for _, m := range r.Messages {
					if m.Seq != next || string(m.Data) != fmt.Sprint(next) {
						errs <- fmt.Errorf("subscriber %d: got seq %d data %s, want %d (loss, duplicate or reorder)", s, m.Seq, m.Data, next)
						return
					}
					next++
				}
				cur = r.Cursor
			}
		}()
	}
	for i := 1; i <= msgs; i += 100 {
		var items []string
		for j := i; j < i+100; j++ {
			items = append(items, fmt.Sprintf(`{"topic":"burst","data":%d}`, j))
		}
		status, _, b := e.do(t.Context(), "POST", "/v1/publish", "application/json", `{"messages":[`+strings.Join(items, ",")+`]}`)
		if status != 200 {
			t.Fatalf("publish: %d %s", status, b)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestServerPublishFromGo(t *testing.T) {
	e := newEnv(t, nil)
	got := make(chan reply, 1)
	go func() { got <- e.poll(q("topic", "_longpoll.stats", "timeout", "30")) }()
	e.waitWaiting("_longpoll.stats", 1)
	rc, err := e.srv.Publish(t.Context(), longpoll.Publication{Topic: "_longpoll.stats", Data: []byte(` { "held" : 1 } `)})
	if err != nil || len(rc) != 1 || rc[0].Seq != 1 {
		t.Fatalf("%v %v", rc, err)
	}
	if r := <-got; len(r.Messages) != 1 || string(r.Messages[0].Data) != `{"held":1}` {
		t.Fatalf("%+v", r)
	}
	if _, err := e.srv.Publish(t.Context(), longpoll.Publication{Topic: "x", Data: []byte(`{bad`)}); err == nil {
		t.Fatal("Publish accepted invalid JSON")
	}
}

// TestHeadPollSeesPublishOnceWaiting: a poll without cursor that the
// server counts as waiting receives any message published from then on.
func TestHeadPollSeesPublishOnceWaiting(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 300 {
		topic := fmt.Sprint("head.", i)
		got := make(chan reply, 1)
		go func() { got <- e.poll(q("topic", topic, "timeout", "20")) }()
		e.waitWaiting(topic, 1)
		e.publish(topic, i)
		if r := <-got; len(r.Messages) != 1 || r.Messages[0].Seq != 1 {
			t.Fatalf("iteration %d: %+v", i, r)
		}
	}
}
