package longpoll_test

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

// Reconfigure changes the limits and CORS origins of a serving server for
// the requests that follow, and changes nothing when a field is wrong.
func TestReconfigure(t *testing.T) {
	e := newEnv(t, nil, longpoll.WithMaxMessageSize(100), longpoll.WithCORS("https://a.example"))
	publish := func(data string) int {
		status, _, _ := e.do(context.Background(), "POST", "/v1/publish", "application/json", `{"topic":"t","data":"`+data+`"}`)
		return status
	}
	origin := func(o string) string {
		_, h, _ := e.doHeader("GET", "/v1/topics/t", "Origin", o)
		return h.Get("Access-Control-Allow-Origin")
	}
	big := strings.Repeat("x", 200)
	if got := publish(big); got != http.StatusRequestEntityTooLarge {
		t.Fatalf("200 bytes under max-message-size 100: %d, want 413", got)
	}
	if got := origin("https://b.example"); got != "" {
		t.Fatalf("origin b before reconfigure: allowed %q", got)
	}

	l := e.srv.Live()
	if l.MaxMessageSize != 100 || !reflect.DeepEqual(l.CORSOrigins, []string{"https://a.example"}) || l.PollTimeout != longpoll.DefaultPollTimeout {
		t.Fatalf("Live() = %+v", l)
	}
	bad := l
	bad.MaxMessageSize, bad.RetryAfter = 1000, 0
	if err := e.srv.Reconfigure(bad); err == nil || !strings.Contains(err.Error(), "retry after") {
		t.Fatalf("Reconfigure with RetryAfter 0: %v, want an error naming it", err)
	}
	if got := publish(big); got != http.StatusRequestEntityTooLarge {
		t.Fatalf("a refused Reconfigure changed max-message-size: %d", got)
	}

	l.MaxMessageSize = 1000
	l.CORSOrigins = []string{"https://b.example/"}
	l.PollTimeout = time.Second
	if err := e.srv.Reconfigure(l); err != nil {
		t.Fatal(err)
	}
	if got := publish(big); got != http.StatusOK {
		t.Fatalf("200 bytes under max-message-size 1000: %d, want 200", got)
	}
	if got := origin("https://b.example"); got != "https://b.example" {
		t.Fatalf("origin b after reconfigure: %q", got)
	}
	if got := origin("https://a.example"); got != "" {
		t.Fatalf("origin a after reconfigure: still allowed %q", got)
	}
	// The new default hold: a poll naming no timeout ends within it (10s
	// bounds the wait only so that a wrong hold fails the test, not hangs it).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := e.pollCtx(ctx, q("topic", "t", "cursor", e.poll(q("topic", "t", "timeout", "0")).Cursor)); !r.Timeout {
		t.Fatalf("poll with the new 1s default: %+v", r)
	}
}
