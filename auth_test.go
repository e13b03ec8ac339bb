package longpoll_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/broker/memory"
)

// authEnv is a server with JWT authentication over loopback.
type authEnv struct {
	*env
	secret string
}

func newAuthEnv(t *testing.T, sopts ...longpoll.Option) *authEnv {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte(strings.Repeat("test-secret-", 4)), 0o600)
	a, err := auth.New(auth.Config{SecretFile: secret, Cookie: "longpoll_token"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, nil, append([]longpoll.Option{longpoll.WithAuthenticator(a), longpoll.WithCORS("https://app.example")}, sopts...)...)
	return &authEnv{env: e, secret: secret}
}

func (a *authEnv) token(sub string, ttl time.Duration, subscribe, publish []string, admin bool) string {
	a.t.Helper()
	return signToken(a.t, a.secret, sub, ttl, subscribe, publish, admin)
}

func signToken(t *testing.T, secret, sub string, ttl time.Duration, subscribe, publish []string, admin bool) string {
	t.Helper()
	tok, err := auth.SignHS256(auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))},
		Longpoll:         auth.Grants{Subscribe: subscribe, Publish: publish, Admin: admin},
	}, secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// req sends a request with the given headers.
func (a *authEnv) req(method, path string, hdr map[string]string, body string) (int, http.Header, errReply, []byte) {
	a.t.Helper()
	r, _ := http.NewRequest(method, a.url+path, strings.NewReader(body))
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	if body != "" && r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(r)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	var er errReply
	json.Unmarshal(b, &er)
	return resp.StatusCode, resp.Header, er, b
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestAuthRefusals(t *testing.T) {
	a := newAuthEnv(t)
	good := a.token("alice", time.Hour, []string{"chat.*"}, []string{"chat.room1"}, false)
	otherSecret := filepath.Join(t.TempDir(), "other")
	os.WriteFile(otherSecret, []byte(strings.Repeat("other-secret", 4)), 0o600)
	forged := signToken(t, otherSecret, "alice", time.Hour, []string{">"}, []string{">"}, true)
	expired := a.token("alice", -time.Minute, []string{"chat.*"}, nil, false)
	admin := a.token("ops", time.Hour, nil, nil, true)
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		status             int
		code               string
	}{
		{"no token", "GET", "/v1/poll?topic=chat.a&timeout=0", nil, "", 401, "unauthorized"},
		{"malformed", "GET", "/v1/poll?topic=chat.a&timeout=0", bearer("abc"), "", 401, "unauthorized"},
		{"wrong signature", "GET", "/v1/poll?topic=chat.a&timeout=0", bearer(forged), "", 401, "unauthorized"},
		{"expired", "GET", "/v1/poll?topic=chat.a&timeout=0", bearer(expired), "", 401, "token_expired"},
		{"token in query ignored", "GET", "/v1/poll?topic=chat.a&timeout=0&access_token=" + good, nil, "", 401, "unauthorized"},
		{"allowed", "GET", "/v1/poll?topic=chat.a&timeout=0", bearer(good), "", 200, ""},
		{"one topic outside", "GET", "/v1/poll?topic=chat.a&topic=secret&timeout=0", bearer(good), "", 403, "forbidden"},
		{"earliest outside", "GET", "/v1/poll?topic=secret&since=earliest&timeout=0", bearer(good), "", 403, "forbidden"},
		{"post poll outside", "POST", "/v1/poll", bearer(good), `{"topics":["chat.a","x.y"]}`, 403, "forbidden"},
		{"topic info outside", "GET", "/v1/topics/secret", bearer(good), "", 403, "forbidden"},
		{"topic info allowed", "GET", "/v1/topics/chat.a", bearer(good), "", 200, ""},
		{"reserved needs admin", "GET", "/v1/poll?topic=_longpoll.stats&timeout=0", bearer(good), "", 403, "forbidden"},
		{"reserved with admin", "GET", "/v1/poll?topic=_longpoll.stats&timeout=0", bearer(admin), "", 200, ""},
		{"admin is not every topic", "GET", "/v1/poll?topic=chat.a&timeout=0", bearer(admin), "", 403, "forbidden"},
		{"publish outside", "POST", "/v1/publish", bearer(good), `{"topic":"chat.room2","data":1}`, 403, "forbidden"},
		{"publish batch outside", "POST", "/v1/publish", bearer(good), `{"messages":[{"topic":"chat.room1","data":1},{"topic":"chat.x","data":1}]}`, 403, "forbidden"},
		{"publish allowed", "POST", "/v1/publish", bearer(good), `{"topic":"chat.room1","data":1}`, 200, ""},
		{"publish wrong type", "POST", "/v1/publish", map[string]string{"Authorization": "Bearer " + good, "Content-Type": "text/plain"}, `{"topic":"chat.room1","data":1}`, 415, "unsupported_media_type"},
		{"health needs nothing", "GET", "/healthz", nil, "", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, h, er, b := a.req(c.method, c.path, c.hdr, c.body)
			if status != c.status || er.Error.Code != c.code {
				t.Fatalf("%d %s, want %d %s", status, b, c.status, c.code)
			}
			if status == 401 && h.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if strings.Contains(string(b), good) || strings.Contains(string(b), forged) {
				t.Error("the reply echoes a token")
			}
		})
	}
	// Nothing reached the topic from the refused publishes.
	_, _, _, b := a.req("GET", "/v1/topics/chat.room2", bearer(good), "")
	if !strings.Contains(string(b), `"head":0`) {
		t.Fatalf("refused publish appended: %s", b)
	}
}

func TestCookieAndCrossSite(t *testing.T) {
	a := newAuthEnv(t)
	tok := a.token("carol", time.Hour, []string{"c.*"}, []string{"c.*"}, false)
	cookie := map[string]string{"Cookie": "longpoll_token=" + tok}
	if status, _, _, b := a.req("GET", "/v1/poll?topic=c.x&timeout=0", cookie, ""); status != 200 {
		t.Fatalf("poll with cookie: %d %s", status, b)
	}
	if status, _, er, _ := a.req("POST", "/v1/publish", cookie, `{"topic":"c.x","data":1}`); status != 403 || er.Error.Code != "forbidden" {
		t.Fatalf("publish with cookie alone: %d %+v", status, er)
	}
	evil := map[string]string{"Cookie": "longpoll_token=" + tok, "Origin": "https://evil.example"}
	if status, _, _, _ := a.req("POST", "/v1/publish", evil, `{"topic":"c.x","data":1}`); status != 403 {
		t.Fatalf("publish with cookie from another origin: %d", status)
	}
	ok := map[string]string{"Cookie": "longpoll_token=" + tok, "Origin": "https://app.example"}
	status, h, _, b := a.req("POST", "/v1/publish", ok, `{"topic":"c.x","data":1}`)
	if status != 200 || h.Get("Access-Control-Allow-Origin") != "https://app.example" || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("publish with cookie from the allowed origin: %d %v %s", status, h, b)
	}
}

func TestCORSPreflight(t *testing.T) {
	a := newAuthEnv(t)
	pre := map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}
	status, h, _, _ := a.req("OPTIONS", "/v1/poll", pre, "")
	if status != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example" || h.Get("Access-Control-Max-Age") == "" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight: %d %v", status, h)
	}
	pre["Origin"] = "https://evil.example"
	status, h, _, _ = a.req("OPTIONS", "/v1/poll", pre, "")
	if h.Get("Access-Control-Allow-Origin") != "" || status == 204 {
		t.Fatalf("preflight from an unlisted origin: %d %v", status, h)
	}
}

func TestIDsScopedToSubject(t *testing.T) {
	a := newAuthEnv(t)
	t1 := a.token("one", time.Hour, []string{"s"}, []string{"s"}, false)
	t2 := a.token("two", time.Hour, []string{"s"}, []string{"s"}, false)
	body := `{"topic":"s","data":1,"id":"same"}`
	for i, tok := range []string{t1, t2, t1} {
		_, _, _, b := a.req("POST", "/v1/publish", bearer(tok), body)
		want := []string{`{"messages":[{"topic":"s","seq":1}]}`, `{"messages":[{"topic":"s","seq":2}]}`, `{"messages":[{"topic":"s","seq":1,"duplicate":true}]}`}[i]
		if string(b) != want {
			t.Fatalf("publish %d: %s, want %s", i, b, want)
		}
	}
	_, _, _, b := a.req("GET", "/v1/poll?topic=s&since=earliest&timeout=0", bearer(t1), "")
	r := decodeReply(t, b)
	if len(r.Messages) != 2 || *r.Messages[0].ID != "same" || *r.Messages[1].ID != "same" {
		t.Fatalf("ids in the reply must be as published: %s", b)
	}
}

// TestTokenExpiresDuringHold: a held poll is answered 401 token_expired at
// the token's expiry, and polling on with a new token and the same cursor
// loses nothing.
func TestTokenExpiresDuringHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		secret := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(secret, []byte(strings.Repeat("x", 32)), 0o600)
		a, err := auth.New(auth.Config{SecretFile: secret})
		if err != nil {
			t.Fatal(err)
		}
		b := memory.New()
		defer b.Close()
		srv, _ := longpoll.New(b, longpoll.WithAuthenticator(a))
		do := func(tok, query string) *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/v1/poll?"+query, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			srv.ServeHTTP(rec, req)
			return rec
		}
		short := signToken(t, secret, "d", 10*time.Second, []string{"e"}, nil, false)
		first := decodeReply(t, do(short, "topic=e&timeout=0").Body.Bytes())
		start := time.Now()
		rec := do(short, "topic=e&timeout=50&cursor="+first.Cursor)
		var er errReply
		json.Unmarshal(rec.Body.Bytes(), &er)
		if rec.Code != 401 || er.Error.Code != "token_expired" || time.Since(start) != 10*time.Second {
			t.Fatalf("held poll: %d %s after %v, want 401 token_expired at 10s", rec.Code, rec.Body, time.Since(start))
		}
		srv.Publish(t.Context(), longpoll.Publication{Topic: "e", Data: json.RawMessage(`"after"`)})
		fresh := signToken(t, secret, "d", time.Hour, []string{"e"}, nil, false)
		r := decodeReply(t, do(fresh, "topic=e&timeout=0&cursor="+first.Cursor).Body.Bytes())
		if len(r.Messages) != 1 || string(r.Messages[0].Data) != `"after"` {
			t.Fatalf("after renewing: %+v", r)
		}
	})
}

func TestRateLimits(t *testing.T) {
	a := newAuthEnv(t, longpoll.WithClientLimits(longpoll.ClientLimits{PublishesPerSecond: 1, PublishBurst: 3, PollsPerSecond: 1, PollBurst: 2, MaxHeldPolls: 2}))
	tok := a.token("r", time.Hour, []string{"r.>"}, []string{"r.>"}, false)
	other := a.token("other", time.Hour, []string{"r.>"}, []string{"r.>"}, false)
	var codes []int
	for range 5 {
		status, h, er, _ := a.req("POST", "/v1/publish", bearer(tok), `{"topic":"r.x","data":1}`)
		codes = append(codes, status)
		if status == 429 && (er.Error.Code != "rate_limited" || h.Get("Retry-After") == "") {
			t.Fatalf("429 without code or Retry-After: %+v %v", er, h)
		}
	}
	if codes[0] != 200 || codes[2] != 200 || codes[3] != 429 || codes[4] != 429 {
		t.Fatalf("publish statuses %v: want a burst of 3 then 429", codes)
	}
	if status, _, _, _ := a.req("POST", "/v1/publish", bearer(other), `{"topic":"r.x","data":1}`); status != 200 {
		t.Fatalf("another subject is limited too: %d", status)
	}
	// Held polls per client: two held, the third refused.
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := http.NewRequestWithContext(ctx, "GET", a.url+"/v1/poll?timeout=50&topic=r.h"+string(rune('0'+i)), nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			if resp, err := a.hc.Do(r); err == nil {
				resp.Body.Close()
			}
		}()
	}
	a.waitWaiting("r.h0", 1)
	a.waitWaiting("r.h1", 1)
	status, _, er, _ := a.req("GET", "/v1/poll?topic=r.h2&timeout=0", bearer(tok), "")
	if status != 429 || er.Error.Code != "rate_limited" {
		t.Fatalf("third held poll: %d %+v", status, er)
	}
	cancel()
	wg.Wait()
}

func TestTrustedProxies(t *testing.T) {
	e := newEnv(t, nil,
		longpoll.WithClientLimits(longpoll.ClientLimits{PublishesPerSecond: 0.001, PublishBurst: 1}),
		longpoll.WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8")))
	pub := func(xff string) int {
		status, _, _ := e.doXFF(xff)
		return status
	}
	// Behind a trusted proxy, each forwarded client has its own bucket.
	if pub("203.0.113.1") != 200 || pub("203.0.113.2") != 200 || pub("203.0.113.1") != 429 {
		t.Fatal("X-Forwarded-For from a trusted proxy not used as the client")
	}
	// A spoofed entry left of a real client is not believed.
	if pub("198.51.100.7, 203.0.113.2") != 429 {
		t.Fatal("a client's own X-Forwarded-For entry was believed")
	}
	e2 := newEnv(t, nil, longpoll.WithClientLimits(longpoll.ClientLimits{PublishesPerSecond: 0.001, PublishBurst: 1}))
	if s, _, _ := e2.doXFF("203.0.113.1"); s != 200 {
		t.Fatal(s)
	}
	if s, _, _ := e2.doXFF("203.0.113.2"); s != 429 {
		t.Fatal("X-Forwarded-For believed from an untrusted peer")
	}
}

func (e *env) doXFF(xff string) (int, http.Header, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/v1/publish", strings.NewReader(`{"topic":"x","data":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", xff)
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// TestAbusiveClient: one client opens polls far beyond its cap in a tight
// loop while a well-behaved client keeps receiving every message, in
// order and promptly.
func TestAbusiveClient(t *testing.T) {
	a := newAuthEnv(t, longpoll.WithClientLimits(longpoll.ClientLimits{PollsPerSecond: 50, PollBurst: 20, MaxHeldPolls: 5}))
	bad := a.token("mallory", time.Hour, []string{">"}, nil, false)
	good := a.token("alice", time.Hour, []string{"feed"}, []string{"feed"}, false)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused, held := 0, 0
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20 && ctx.Err() == nil; i++ {
				r, _ := http.NewRequestWithContext(ctx, "GET", a.url+"/v1/poll?topic=spam&timeout=30", nil)
				r.Header.Set("Authorization", "Bearer "+bad)
				resp, err := a.hc.Do(r)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				if resp.StatusCode == 429 {
					refused++
				} else {
					held++
				}
				mu.Unlock()
			}
		}()
	}

	const n = 200
	got := make(chan error, 1)
	var lat []time.Duration
	go func() {
		cur := ""
		next := 1
		for next <= n {
			path := "/v1/poll?topic=feed&timeout=20"
			if cur != "" {
				path += "&cursor=" + cur
			} else {
				path += "&since=earliest"
			}
			status, _, er, b := a.req("GET", path, bearer(good), "")
			if status == 429 {
				// A well-behaved client waits as advised.
				time.Sleep(time.Duration(er.Error.RetryAfterMS) * time.Millisecond)
				continue
			}
			if status != 200 {
				got <- fmt.Errorf("good client refused: %d %s", status, b)
				return
			}
			r := decodeReply(t, b)
			for _, m := range r.Messages {
				var sent time.Time
				json.Unmarshal(m.Data, &sent)
				if m.Seq != uint64(next) {
					got <- fmt.Errorf("good client got seq %d, want %d", m.Seq, next)
					return
				}
				lat = append(lat, time.Since(sent))
				next++
			}
			cur = r.Cursor
		}
		got <- nil
	}()
	for range n {
		body, _ := json.Marshal(map[string]any{"topic": "feed", "data": time.Now()})
		if status, _, _, b := a.req("POST", "/v1/publish", bearer(good), string(body)); status != 200 {
			t.Fatalf("publish: %d %s", status, b)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	slices.Sort(lat)
	t.Logf("abusive client: %d polls refused, %d answered; good client latency p50 %v p99 %v max %v",
		refused, held, lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	if refused == 0 {
		t.Fatal("the abusive client was never refused")
	}
	if lat[len(lat)-1] > 5*time.Second {
		t.Fatalf("the good client waited %v for a message", lat[len(lat)-1])
	}
}
