package longpoll_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/protocol"
)

// signIssued signs a token of sub issued at iat (none when zero).
func signIssued(t *testing.T, secret, sub string, iat time.Time, admin bool) string {
	t.Helper()
	c := auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Longpoll:         auth.Grants{Subscribe: []string{">"}, Publish: []string{">"}, Admin: admin},
	}
	if !iat.IsZero() {
		c.IssuedAt = jwt.NewNumericDate(iat)
	}
	tok, err := auth.SignHS256(c, secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// answer is a poll's answer.
type answer struct {
	status int
	body   string
}

// pollAsync starts a held poll of topic from cursor with hdr and returns
// where its answer arrives.
func (e *env) pollAsync(hdr map[string]string, topic, cursor string) <-chan answer {
	out := make(chan answer, 1)
	go func() {
		u := e.url + "/v1/poll?timeout=50&topic=" + url.QueryEscape(topic)
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		req, _ := http.NewRequest("GET", u, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := e.hc.Do(req)
		if err != nil {
			out <- answer{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- answer{resp.StatusCode, string(b)}
	}()
	return out
}

// within fails the test unless a result arrives in 10 s (a bound that
// fails a hung test; the answers come at once).
func within(t *testing.T, c <-chan answer) (int, string) {
	t.Helper()
	select {
	case r := <-c:
		return r.status, r.body
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10s")
		return 0, ""
	}
}

// A disconnect ends the subject's held polls at once with 401
// token_revoked, refuses its tokens issued at or before the time and
// those with no iat, and leaves other subjects and later tokens alone.
func TestAdminDisconnect(t *testing.T) {
	a := newAuthEnv(t, longpoll.WithAdminAPI())
	issued := time.Now().Add(-time.Minute)
	alice := signIssued(t, a.secret, "alice", issued, false)
	aliceNoIat := signIssued(t, a.secret, "alice", time.Time{}, false)
	bob := signIssued(t, a.secret, "bob", issued, false)
	admin := signIssued(t, a.secret, "ops", issued, true)

	held := a.pollAsync(bearer(alice), "t", "")
	other := a.pollAsync(bearer(bob), "t", "")
	a.waitWaiting("t", 2)

	status, _, er, body := a.req("POST", "/v1/admin/disconnect", bearer(alice), `{"sub":"alice"}`)
	if status != http.StatusForbidden || er.Error.Code != "forbidden" {
		t.Fatalf("disconnect with a non-admin token: %d %s", status, body)
	}
	status, _, _, body = a.req("POST", "/v1/admin/disconnect", bearer(admin), `{"sub":"alice"}`)
	if status != http.StatusOK {
		t.Fatalf("disconnect: %d %s", status, body)
	}
	var got protocol.AdminDisconnect
	if err := json.Unmarshal(body, &got); err != nil || got.Sub != "alice" || got.Before == nil || got.Before.Before(issued) {
		t.Fatalf("disconnect reply %s: %+v %v", body, got, err)
	}
	if st, b := within(t, held); st != http.StatusUnauthorized || !strings.Contains(b, `"token_revoked"`) {
		t.Fatalf("alice's held poll: %d %s, want 401 token_revoked", st, b)
	}
	if n := a.srv.Waiting("t"); n != 1 {
		t.Fatalf("%d polls held after the disconnect, want bob's alone", n)
	}

	status, hdr, er, _ := a.req("GET", "/v1/topics/t", bearer(alice), "")
	if status != http.StatusUnauthorized || er.Error.Code != "token_revoked" || hdr.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Fatalf("alice after the disconnect: %d %q %q", status, er.Error.Code, hdr.Get("WWW-Authenticate"))
	}
	if status, _, er, _ := a.req("GET", "/v1/topics/t", bearer(aliceNoIat), ""); status != http.StatusUnauthorized || er.Error.Code != "token_revoked" {
		t.Fatalf("alice's token without iat: %d %q", status, er.Error.Code)
	}
	if status, _, _, b := a.req("GET", "/v1/topics/t", bearer(bob), ""); status != http.StatusOK {
		t.Fatalf("bob after alice's disconnect: %d %s", status, b)
	}
	fresh := signIssued(t, a.secret, "alice", got.Before.Add(time.Second), false)
	if status, _, _, b := a.req("GET", "/v1/topics/t", bearer(fresh), ""); status != http.StatusOK {
		t.Fatalf("alice's token issued after the disconnect: %d %s", status, b)
	}
	if status, _, _, b := a.req("POST", "/v1/publish", bearer(bob), `{"topic":"t","data":1}`); status != http.StatusOK {
		t.Fatalf("bob's publish: %d %s", status, b)
	}
	if st, b := within(t, other); st != http.StatusOK || !strings.Contains(b, `"seq":1`) {
		t.Fatalf("bob's held poll: %d %s", st, b)
	}

	// An earlier before does not undo a later one.
	early := got.Before.Add(-time.Hour).Format(time.RFC3339)
	if status, _, _, b := a.req("POST", "/v1/admin/disconnect", bearer(admin), `{"sub":"alice","before":"`+early+`"}`); status != http.StatusOK {
		t.Fatalf("disconnect with before: %d %s", status, b)
	}
	if status, _, er, _ := a.req("GET", "/v1/topics/t", bearer(alice), ""); status != http.StatusUnauthorized || er.Error.Code != "token_revoked" {
		t.Fatalf("alice after an earlier disconnect: %d %q", status, er.Error.Code)
	}
	for _, bad := range []string{`{}`, `{"sub":""}`, `{"sub":"a","x":1}`, `{"sub":"a","before":"yesterday"}`, `[]`} {
		if status, _, er, _ := a.req("POST", "/v1/admin/disconnect", bearer(admin), bad); status != http.StatusBadRequest || er.Error.Code != "invalid_body" {
			t.Errorf("disconnect %s: %d %q, want 400 invalid_body", bad, status, er.Error.Code)
		}
	}
}

// The admin API's access: 401 without a token, 403 without the grant,
// 405 with Allow for a wrong method, 404 for an unknown path, no CORS; and
// nothing at all without WithAdminAPI.
func TestAdminAccess(t *testing.T) {
	a := newAuthEnv(t, longpoll.WithAdminAPI())
	user := signIssued(t, a.secret, "u", time.Now(), false)
	admin := signIssued(t, a.secret, "ops", time.Now(), true)
	for _, c := range []struct {
		method, path string
		hdr          map[string]string
		status       int
		code         string
	}{
		{"GET", "/v1/admin/node", nil, 401, "unauthorized"},
		{"GET", "/v1/admin/node", bearer(user), 403, "forbidden"},
		{"GET", "/v1/admin/node", bearer(admin), 200, ""},
		{"POST", "/v1/admin/node", bearer(admin), 405, "method_not_allowed"},
		{"GET", "/v1/admin/drain", bearer(admin), 405, "method_not_allowed"},
		{"GET", "/v1/admin/nope", bearer(admin), 404, "not_found"},
		{"OPTIONS", "/v1/admin/topics", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}, 405, "method_not_allowed"},
	} {
		status, hdr, er, body := a.req(c.method, c.path, c.hdr, "")
		if status != c.status || er.Error.Code != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, status, body, c.status, c.code)
		}
		if status == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
		if hdr.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s %s: CORS header on an admin path", c.method, c.path)
		}
	}

	// Without authentication: loopback only, the address taken through
	// the trusted proxies.
	e := newEnv(t, nil, longpoll.WithAdminAPI(), longpoll.WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8")))
	if status, _, b := e.do(context.Background(), "GET", "/v1/admin/node", "", ""); status != 200 {
		t.Fatalf("loopback client without auth: %d %s", status, b)
	}
	if status, _, b := e.doHeader("GET", "/v1/admin/node", "X-Forwarded-For", "203.0.113.9"); status != 403 {
		t.Fatalf("a remote client through a trusted proxy without auth: %d %s", status, b)
	}
	if status, _, b := e.do(context.Background(), "POST", "/v1/admin/disconnect", "application/json", `{"sub":"x"}`); status != 400 || !strings.Contains(string(b), "invalid_parameter") {
		t.Fatalf("disconnect without auth: %d %s", status, b)
	}
	plain := newEnv(t, nil)
	if status, _, b := plain.do(context.Background(), "GET", "/v1/admin/node", "", ""); status != 404 {
		t.Fatalf("admin path without WithAdminAPI: %d %s", status, b)
	}
}

// A drain answers held polls as at shutdown, refuses new polls with 503
// draining and turns readiness 503, while publishes go on; undrained, the
// node takes polls again.
func TestAdminDrain(t *testing.T) {
	e := newEnv(t, nil, longpoll.WithAdminAPI())
	e.publish("t", 1)
	cur := e.poll(q("topic", "t", "since", "earliest")).Cursor
	held := e.pollAsync(nil, "t", cur)
	e.waitWaiting("t", 1)
	status, _, b := e.do(context.Background(), "POST", "/v1/admin/drain", "", "")
	if status != 200 || string(b) != `{"draining":true}` {
		t.Fatalf("drain: %d %s", status, b)
	}
	st, body := within(t, held)
	var r reply
	if err := json.Unmarshal([]byte(body), &r); st != 200 || err != nil || r.Timeout || r.Cursor != cur || !strings.Contains(body, `"retry_after_ms"`) {
		t.Fatalf("held poll at the drain: %d %s, want 200 with its cursor and retry_after_ms", st, body)
	}
	status, hdr, b := e.do(context.Background(), "GET", "/v1/poll?timeout=0&topic=t", "", "")
	if status != 503 || !strings.Contains(string(b), `"draining"`) || hdr.Get("Retry-After") == "" {
		t.Fatalf("poll while draining: %d %s Retry-After %q", status, b, hdr.Get("Retry-After"))
	}
	if status, _, b := e.do(context.Background(), "GET", "/readyz", "", ""); status != 503 || !strings.Contains(string(b), "draining") {
		t.Fatalf("readyz while draining: %d %s", status, b)
	}
	if seq := e.publish("t", 2); seq != 2 {
		t.Fatalf("publish while draining: seq %d", seq)
	}
	if !e.srv.Draining() {
		t.Fatal("Draining() false while drained")
	}
	if status, _, b := e.do(context.Background(), "DELETE", "/v1/admin/drain", "", ""); status != 200 || string(b) != `{"draining":false}` {
		t.Fatalf("undrain: %d %s", status, b)
	}
	if r := e.poll(q("topic", "t", "cursor", cur)); len(r.Messages) != 1 || r.Messages[0].Seq != 2 {
		t.Fatalf("poll after the drain ended: %+v", r)
	}
	if status, _, _ := e.do(context.Background(), "GET", "/readyz", "", ""); status != 200 {
		t.Fatalf("readyz after the drain ended: %d", status)
	}
}

// Topics are listed in name order page by page; a deleted topic answers
// its held polls with a reset gap and starts again at seq 1 in a new
// epoch.
func TestAdminTopics(t *testing.T) {
	e := newEnv(t, nil, longpoll.WithAdminAPI())
	names := []string{"b", "a.2", "a.1", "a/x", "c"}
	for i, n := range names {
		for range i + 1 {
			e.publish(n, "xy")
		}
	}
	var all []protocol.AdminTopic
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("listing does not end")
		}
		status, _, b := e.do(context.Background(), "GET", "/v1/admin/topics?limit=2&after="+url.QueryEscape(after), "", "")
		var page protocol.AdminTopics
		if status != 200 || json.Unmarshal(b, &page) != nil {
			t.Fatalf("topics: %d %s", status, b)
		}
		all = append(all, page.Topics...)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	var got []string
	for _, at := range all {
		got = append(got, at.Topic)
	}
	if want := "a.1 a.2 a/x b c"; strings.Join(got, " ") != want {
		t.Fatalf("listed %v, want %s", got, want)
	}
	if c := all[4]; c.Head != 5 || c.Oldest != 1 || c.Retained != 5 || c.Bytes != 5*4 || c.LastPublish == nil {
		t.Fatalf("topic c: %+v", c)
	}
	status, _, b := e.do(context.Background(), "GET", "/v1/admin/topics?prefix=a.", "", "")
	if status != 200 || !strings.Contains(string(b), `"a.1"`) || strings.Contains(string(b), `"a/x"`) || strings.Contains(string(b), `"next"`) {
		t.Fatalf("topics with prefix a.: %d %s", status, b)
	}
	for _, bad := range []string{"0", "-1", "x"} {
		if status, _, _ := e.do(context.Background(), "GET", "/v1/admin/topics?limit="+bad, "", ""); status != 400 {
			t.Errorf("limit=%s: %d, want 400", bad, status)
		}
	}

	cur := e.poll(q("topic", "c", "since", "earliest", "timeout", "0")).Cursor
	held := e.pollAsync(nil, "c", cur)
	e.waitWaiting("c", 1)
	status, _, b = e.do(context.Background(), "DELETE", "/v1/admin/topics/c", "", "")
	if status != 200 || string(b) != `{"topic":"c","deleted":true}` {
		t.Fatalf("delete: %d %s", status, b)
	}
	st, body := within(t, held)
	if st != 200 || !strings.Contains(body, `"reason":"reset"`) {
		t.Fatalf("held poll on a deleted topic: %d %s, want a reset gap", st, body)
	}
	var r reply
	_ = json.Unmarshal([]byte(body), &r)
	if seq := e.publish("c", 1); seq != 1 {
		t.Fatalf("first publish after the delete: seq %d, want 1", seq)
	}
	if r2 := e.poll(q("topic", "c", "cursor", r.Cursor)); len(r2.Messages) != 1 || r2.Messages[0].Seq != 1 || len(r2.Gaps) != 0 {
		t.Fatalf("poll after the delete from the reset's cursor: %+v", r2)
	}
	if status, _, b := e.do(context.Background(), "DELETE", "/v1/admin/topics/nope", "", ""); status != 200 || string(b) != `{"topic":"nope","deleted":false}` {
		t.Fatalf("delete of a topic with no log: %d %s", status, b)
	}
	if status, _, b := e.do(context.Background(), "DELETE", "/v1/admin/topics/a%2Fx", "", ""); status != 200 || !strings.Contains(string(b), `"topic":"a/x","deleted":true`) {
		t.Fatalf("delete of a/x: %d %s", status, b)
	}
	if status, _, _ := e.do(context.Background(), "DELETE", "/v1/admin/topics/bad%20name", "", ""); status != 400 {
		t.Fatalf("delete of an invalid name: %d", status)
	}
}

// bareBroker hides every capability of the broker it wraps.
type bareBroker struct{ longpoll.Broker }

// A store without the capabilities answers 501 not_implemented.
func TestAdminNotImplemented(t *testing.T) {
	e := newEnv(t, nil)
	srv, err := longpoll.New(bareBroker{e.broker})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.OpenAdminHandler()
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/admin/topics", ""},
		{"DELETE", "/v1/admin/topics/t", ""},
	} {
		rec := httptest.NewRecorder()
		req, _ := http.NewRequest(c.method, c.path, strings.NewReader(c.body))
		h.ServeHTTP(rec, req)
		if rec.Code != 501 || !strings.Contains(rec.Body.String(), "not_implemented") {
			t.Errorf("%s %s on a bare broker: %d %s", c.method, c.path, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	req, _ := http.NewRequest("GET", "/v1/admin/node", nil)
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || strings.Contains(rec.Body.String(), `"nodes"`) {
		t.Errorf("node on a bare broker: %d %s (want no nodes list)", rec.Code, rec.Body)
	}
}
