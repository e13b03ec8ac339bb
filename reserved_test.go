package longpoll_test

import (
	"strings"
	"testing"
	"time"
)

// TestReservedTopicsRefusedInAnyCase: a client may not publish to a
// reserved topic spelled in another case, nor read one without admin.
func TestReservedTopicsRefusedInAnyCase(t *testing.T) {
	e := newEnv(t, nil)
	for _, topic := range []string{"_LONGPOLL.stats", "_LongPoll.x"} {
		status, _, b := e.do(t.Context(), "POST", "/v1/publish", "application/json", `{"topic":"`+topic+`","data":1}`)
		if status != 403 || !strings.Contains(string(b), "reserved_topic") {
			t.Errorf("publish to %s: %d %s, want 403 reserved_topic", topic, status, b)
		}
	}
	a := newAuthEnv(t)
	user := a.token("u", time.Hour, []string{">"}, []string{">"}, false)
	admin := a.token("ops", time.Hour, nil, nil, true)
	for _, topic := range []string{"_LONGPOLL.stats", "_longPoll.stats"} {
		if status, _, er, b := a.req("GET", "/v1/poll?timeout=0&topic="+topic, bearer(user), ""); status != 403 || er.Error.Code != "forbidden" {
			t.Errorf("poll of %s granted by '>' alone: %d %s", topic, status, b)
		}
		if status, _, _, b := a.req("GET", "/v1/poll?timeout=0&topic="+topic, bearer(admin), ""); status != 200 {
			t.Errorf("admin poll of %s: %d %s", topic, status, b)
		}
		if status, _, er, b := a.req("POST", "/v1/publish", bearer(user), `{"topic":"`+topic+`","data":1}`); status != 403 || er.Error.Code != "reserved_topic" {
			t.Errorf("publish to %s granted by '>': %d %s", topic, status, b)
		}
	}
}
