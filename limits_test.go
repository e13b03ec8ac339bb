package longpoll_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

// TestErrors is the table of refused requests: each gets its status and
// code, a message, the request id, and Retry-After where it applies.
func TestErrors(t *testing.T) {
	e := newEnv(t, []memory.Option{memory.WithMaxTotalBytes(2000)},
		longpoll.WithMaxTopicsPerPoll(3), longpoll.WithMaxBodySize(4096), longpoll.WithMaxMessageSize(100), longpoll.WithMaxBatch(3))
	many := func(n int) string {
		var s []string
		for i := range n {
			s = append(s, "topic=t"+strconv.Itoa(i))
		}
		return strings.Join(s, "&")
	}
	const js = "application/json"
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
	}{
		{"empty topic", "GET", "/v1/poll?topic=", "", "", 400, "invalid_topic"},
		{"bad topic char", "GET", "/v1/poll?topic=a%20b", "", "", 400, "invalid_topic"},
		{"topic too long", "GET", "/v1/poll?topic=" + strings.Repeat("a", 257), "", "", 400, "invalid_topic"},
		{"no topic", "GET", "/v1/poll?timeout=0", "", "", 400, "invalid_parameter"},
		{"too many topics", "GET", "/v1/poll?" + many(4), "", "", 400, "too_many_topics"},
		{"duplicates count once", "GET", "/v1/poll?" + many(3) + "&topic=t0&timeout=0", "", "", 200, ""},
		{"bad cursor", "GET", "/v1/poll?topic=a&cursor=bm90IGEgY3Vyc29y", "", "", 400, "invalid_cursor"},
		{"cursor not base64", "GET", "/v1/poll?topic=a&cursor=%2B%2B%2B", "", "", 400, "invalid_cursor"},
		{"bad since", "GET", "/v1/poll?topic=a&since=latest", "", "", 400, "invalid_parameter"},
		{"empty since", "GET", "/v1/poll?topic=a&since=", "", "", 400, "invalid_parameter"},
		{"negative timeout", "GET", "/v1/poll?topic=a&timeout=-1", "", "", 400, "invalid_parameter"},
		{"bad timeout", "GET", "/v1/poll?topic=a&timeout=soon", "", "", 400, "invalid_parameter"},
		{"nan timeout", "GET", "/v1/poll?topic=a&timeout=NaN", "", "", 400, "invalid_parameter"},
		{"zero limit", "GET", "/v1/poll?topic=a&limit=0", "", "", 400, "invalid_parameter"},
		{"negative limit", "GET", "/v1/poll?topic=a&limit=-5", "", "", 400, "invalid_parameter"},
		{"fraction limit", "GET", "/v1/poll?topic=a&limit=1.5", "", "", 400, "invalid_parameter"},
		{"word limit", "GET", "/v1/poll?topic=a&limit=ten", "", "", 400, "invalid_parameter"},
		{"huge limit capped", "GET", "/v1/poll?topic=a&limit=99999999999999999999&timeout=0", "", "", 200, ""},
		{"twice timeout", "GET", "/v1/poll?topic=a&timeout=1&timeout=2", "", "", 400, "invalid_parameter"},
		{"twice cursor", "GET", "/v1/poll?topic=a&cursor=x&cursor=y", "", "", 400, "invalid_parameter"},
		{"post poll no type", "POST", "/v1/poll", "", `{"topics":["a"]}`, 415, "unsupported_media_type"},
		{"post poll text", "POST", "/v1/poll", "text/plain", `{"topics":["a"]}`, 415, "unsupported_media_type"},
		{"post poll bad json", "POST", "/v1/poll", js, `{"topics":`, 400, "invalid_body"},
		{"post poll topics type", "POST", "/v1/poll", js, `{"topics":"a"}`, 400, "invalid_body"},
		{"post poll no topics", "POST", "/v1/poll", js, `{}`, 400, "invalid_parameter"},
		{"post poll bad limit", "POST", "/v1/poll", js, `{"topics":["a"],"limit":0}`, 400, "invalid_parameter"},
		{"post poll bad timeout", "POST", "/v1/poll", js, `{"topics":["a"],"timeout":true}`, 400, "invalid_parameter"},
		{"publish no type", "POST", "/v1/publish", "", `{"topic":"a","data":1}`, 415, "unsupported_media_type"},
		{"publish form", "POST", "/v1/publish", "application/x-www-form-urlencoded", `topic=a`, 415, "unsupported_media_type"},
		{"publish not json", "POST", "/v1/publish", js, `{"topic":"a","data":}`, 400, "invalid_body"},
		{"publish trailing", "POST", "/v1/publish", js, `{"topic":"a","data":1} {}`, 400, "invalid_body"},
		{"publish array", "POST", "/v1/publish", js, `[1]`, 400, "invalid_body"},
		{"publish no data", "POST", "/v1/publish", js, `{"topic":"a"}`, 400, "invalid_body"},
		{"publish no topic", "POST", "/v1/publish", js, `{"data":1}`, 400, "invalid_topic"},
		{"publish bad topic", "POST", "/v1/publish", js, `{"topic":"","data":1}`, 400, "invalid_topic"},
		{"publish reserved", "POST", "/v1/publish", js, `{"topic":"_longpoll.x","data":1}`, 403, "reserved_topic"},
		{"publish both forms", "POST", "/v1/publish", js, `{"topic":"a","data":1,"messages":[]}`, 400, "invalid_body"},
		{"publish empty batch", "POST", "/v1/publish", js, `{"messages":[]}`, 400, "invalid_body"},
		{"publish id too long", "POST", "/v1/publish", js, `{"topic":"a","data":1,"id":"` + strings.Repeat("i", 257) + `"}`, 400, "invalid_body"},
		{"publish invalid utf8", "POST", "/v1/publish", js, "{\"topic\":\"a\",\"data\":\"\xff\"}", 400, "invalid_body"},
		{"publish data too large", "POST", "/v1/publish", js, `{"topic":"a","data":"` + strings.Repeat("x", 100) + `"}`, 413, "too_large"},
		{"publish batch too large", "POST", "/v1/publish", js, `{"messages":[{"topic":"a","data":1},{"topic":"a","data":1},{"topic":"a","data":1},{"topic":"a","data":1}]}`, 413, "too_large"},
		{"publish body too large", "POST", "/v1/publish", js, `{"topic":"a","data":"` + strings.Repeat("x", 5000) + `"}`, 413, "too_large"},
		{"not found", "GET", "/v1/nothing", "", "", 404, "not_found"},
		{"not found root", "GET", "/nothing", "", "", 404, "not_found"},
		{"publish GET", "GET", "/v1/publish", "", "", 405, "method_not_allowed"},
		{"poll DELETE", "DELETE", "/v1/poll?topic=a", "", "", 405, "method_not_allowed"},
		{"topic POST", "POST", "/v1/topics/a", js, `{}`, 405, "method_not_allowed"},
		{"topic invalid", "GET", "/v1/topics/a%20b", "", "", 400, "invalid_topic"},
		{"topic empty", "GET", "/v1/topics/", "", "", 400, "invalid_topic"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, h, b := e.do(t.Context(), c.method, c.path, c.ctype, c.body)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, b)
			}
			checkJSONHeaders(t, h)
			if c.code == "" {
				return
			}
			var er errReply
			if err := json.Unmarshal(b, &er); err != nil || er.Error.Code != c.code || er.Error.Message == "" || er.Error.RequestID != h.Get("X-Request-Id") {
				t.Fatalf("body %s, want code %s with a message and the request id", b, c.code)
			}
			if status == 405 && h.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}

	// The memory store's byte budget: 503 store_full with a spread
	// Retry-After, and nothing dropped silently.
	var full bool
	for i := range 50 {
		status, h, b := e.do(t.Context(), "POST", "/v1/publish", js, `{"topic":"fill","data":"`+strings.Repeat("x", 90)+`"}`)
		if status == 200 {
			continue
		}
		var er errReply
		json.Unmarshal(b, &er)
		if status != 503 || er.Error.Code != "store_full" || h.Get("Retry-After") == "" || er.Error.RetryAfterMS <= 0 {
			t.Fatalf("publish %d: %d %v %s", i, status, h, b)
		}
		full = true
		break
	}
	if !full {
		t.Fatal("the store never filled")
	}
}

func TestOverloaded(t *testing.T) {
	e := newEnv(t, nil, longpoll.WithMaxHeldPolls(2))
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := newGet(ctx, e.url+"/v1/poll?topic=o&timeout=50")
			if resp, err := e.hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	e.waitWaiting("o", 2)
	status, h, b := e.do(t.Context(), "GET", "/v1/poll?topic=o&timeout=0", "", "")
	var er errReply
	json.Unmarshal(b, &er)
	ra, _ := strconv.Atoi(h.Get("Retry-After"))
	if status != 503 || er.Error.Code != "overloaded" || ra < 1 || er.Error.RetryAfterMS < 1000 || er.Error.RetryAfterMS >= 3000 {
		t.Fatalf("%d %v %s", status, h, b)
	}
	cancel()
	wg.Wait()
}

// TestRetryAfterIsSpread: refused clients are told different delays.
func TestRetryAfterIsSpread(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for range 20 {
		status, h, b := e.do(t.Context(), "GET", "/v1/poll?topic=a", "", "")
		var er errReply
		json.Unmarshal(b, &er)
		if status != 503 || er.Error.Code != "shutting_down" || h.Get("Retry-After") == "" {
			t.Fatalf("poll during shutdown: %d %s", status, b)
		}
		if er.Error.RetryAfterMS < 1000 || er.Error.RetryAfterMS >= 3000 {
			t.Fatalf("retry_after_ms %d outside [1000, 3000)", er.Error.RetryAfterMS)
		}
		seen[er.Error.RetryAfterMS] = true
	}
	if len(seen) < 5 {
		t.Fatalf("retry_after_ms values %v: not spread", seen)
	}
}

func TestTopicLimit(t *testing.T) {
	e := newEnv(t, []memory.Option{memory.WithMaxTopics(2)})
	e.publish("t1", 1)
	e.publish("t2", 1)
	e.publish("t1", 2) // existing topics still take messages
	status, h, b := e.do(t.Context(), "POST", "/v1/publish", "application/json", `{"topic":"t3","data":1}`)
	var er errReply
	json.Unmarshal(b, &er)
	if status != 503 || er.Error.Code != "store_full" || h.Get("Retry-After") == "" {
		t.Fatalf("third topic: %d %s", status, b)
	}
}
