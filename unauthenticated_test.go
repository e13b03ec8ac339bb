package longpoll_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

// TestUnauthenticatedRateLimited: requests refused for their credential
// spend their address's poll-start bucket, on every route that
// authenticates; past it they get 429 rate_limited with Retry-After
// instead of 401, while a valid token, limited by its subject, still
// gets through.
func TestUnauthenticatedRateLimited(t *testing.T) {
	const burst = 4
	a := newAuthEnv(t, longpoll.WithClientLimits(longpoll.ClientLimits{PollsPerSecond: 0.001, PollBurst: burst}))
	good := a.token("alice", time.Hour, []string{"a"}, []string{"a"}, false)
	expired := a.token("alice", -time.Minute, []string{"a"}, nil, false)
	refused := []struct{ method, path, body string }{
		{"GET", "/v1/poll?topic=a&timeout=0", ""},
		{"POST", "/v1/publish", `{"topic":"a","data":1}`},
		{"GET", "/v1/topics/a", ""},
		{"POST", "/v1/poll", `{"topics":["a"],"timeout":0}`},
	}
	for i := range burst {
		c := refused[i%len(refused)]
		hdr := bearer("not-a-token")
		if i == 1 {
			hdr = bearer(expired)
		}
		if status, _, er, b := a.req(c.method, c.path, hdr, c.body); status != 401 {
			t.Fatalf("refusal %d (%s %s): %d %s %+v, want 401", i+1, c.method, c.path, status, b, er)
		}
	}
	for _, c := range refused {
		status, h, er, b := a.req(c.method, c.path, nil, c.body)
		if status != 429 || er.Error.Code != "rate_limited" || er.Error.RetryAfterMS <= 0 {
			t.Fatalf("%s %s past the bucket: %d %s, want 429 rate_limited", c.method, c.path, status, b)
		}
		if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s < 1 {
			t.Fatalf("%s %s: Retry-After %q", c.method, c.path, h.Get("Retry-After"))
		}
	}
	if status, _, _, b := a.req("GET", "/v1/poll?topic=a&timeout=0", bearer(good), ""); status != 200 {
		t.Fatalf("a valid token from the same address: %d %s", status, b)
	}
	// /healthz authenticates nothing and counts nothing.
	if status, _, _, _ := a.req("GET", "/healthz", nil, ""); status != 200 {
		t.Fatalf("/healthz: %d", status)
	}
}

// TestUnauthenticatedRequireAdmin: the pages behind RequireAdmin count
// their refusals against the same bucket.
func TestUnauthenticatedRequireAdmin(t *testing.T) {
	a := newAuthEnv(t, longpoll.WithClientLimits(longpoll.ClientLimits{PollsPerSecond: 0.001, PollBurst: 2}))
	page := httptest.NewServer(a.srv.RequireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer page.Close()
	want := []int{401, 401, 429, 429}
	for i, w := range want {
		resp, err := http.Get(page.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != w {
			t.Fatalf("request %d: %d, want %d", i+1, resp.StatusCode, w)
		}
	}
	// The API shares the address's bucket.
	if status, _, er, _ := a.req("GET", "/v1/topics/a", nil, ""); status != 429 || er.Error.Code != "rate_limited" {
		t.Fatalf("API after the pages' refusals: %d %+v", status, er)
	}
}

// TestUnauthenticatedPerAddress: behind a trusted proxy each forwarded
// address has its own bucket; without limits nothing is counted.
func TestUnauthenticatedPerAddress(t *testing.T) {
	a := newAuthEnv(t, longpoll.WithClientLimits(longpoll.ClientLimits{PollsPerSecond: 0.001, PollBurst: 1}),
		longpoll.WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8")))
	from := func(addr string) int {
		status, _, _, _ := a.req("GET", "/v1/topics/a", map[string]string{"X-Forwarded-For": addr}, "")
		return status
	}
	if got := []int{from("203.0.113.1"), from("203.0.113.2"), from("203.0.113.1"), from("203.0.113.2")}; got[0] != 401 || got[1] != 401 || got[2] != 429 || got[3] != 429 {
		t.Fatalf("statuses %v, want 401 401 429 429", got)
	}
	open := newAuthEnv(t)
	for i := range 50 {
		if status, _, _, _ := open.req("GET", "/v1/topics/a", nil, ""); status != 401 {
			t.Fatalf("request %d without limits: %d, want 401", i+1, status)
		}
	}
}
