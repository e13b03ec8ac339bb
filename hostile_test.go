package longpoll_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestHostileInput is the table of hostile requests: each gets a clear
// JSON error, the server stays up, and nothing is appended.
func TestHostileInput(t *testing.T) {
	e := newEnv(t, nil)
	const js = "application/json"
	deep := strings.Repeat("[", 200000) + strings.Repeat("]", 200000)
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
	}{
		{"deeply nested data", "POST", "/v1/publish", js, `{"topic":"h","data":` + deep + `}`, 400, "invalid_body"},
		{"deeply nested poll", "POST", "/v1/poll", js, `{"topics":["h"],"x":` + deep + `}`, 400, "invalid_body"},
		{"invalid utf-8 in data", "POST", "/v1/publish", js, "{\"topic\":\"h\",\"data\":\"\xc3\x28\"}", 400, "invalid_body"},
		{"invalid utf-8 in id", "POST", "/v1/publish", js, "{\"topic\":\"h\",\"data\":1,\"id\":\"\xff\"}", 400, "invalid_body"},
		{"control char in id", "POST", "/v1/publish", js, `{"topic":"h","data":1,"id":"a\u0000b"}`, 400, "invalid_body"},
		{"invalid utf-8 topic", "GET", "/v1/poll?topic=%ff%fe", "", "", 400, "invalid_topic"},
		{"NUL topic", "GET", "/v1/poll?topic=a%00b", "", "", 400, "invalid_topic"},
		{"absurd timeout", "GET", "/v1/poll?topic=h&timeout=1e400", "", "", 400, "invalid_parameter"},
		{"absurd duration", "GET", "/v1/poll?topic=h&timeout=99999999999h", "", "", 400, "invalid_parameter"},
		{"huge timeout string", "GET", "/v1/poll?topic=h&timeout=" + strings.Repeat("9", 1000), "", "", 400, "invalid_parameter"},
		{"huge cursor", "GET", "/v1/poll?topic=h&cursor=" + strings.Repeat("A", 100000), "", "", 400, "invalid_cursor"},
		{"many topics", "POST", "/v1/poll", js, `{"topics":` + manyTopics(5000) + `}`, 400, "too_many_topics"},
		{"huge data number", "POST", "/v1/publish", js, `{"topic":"h","data":` + strings.Repeat("9", 70000) + `}`, 413, "too_large"},
		{"body over limit", "POST", "/v1/publish", js, `{"topic":"h","data":"` + strings.Repeat("x", 9<<20) + `"}`, 413, "too_large"},
		{"wrong field types", "POST", "/v1/publish", js, `{"topic":7,"data":1}`, 400, "invalid_body"},
		{"duplicate keys", "GET", "/v1/poll?topic=h&limit=1&limit=2", "", "", 400, "invalid_parameter"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, h, b := e.do(t.Context(), c.method, c.path, c.ctype, c.body)
			var er errReply
			if status != c.status || json.Unmarshal(b, &er) != nil || er.Error.Code != c.code {
				t.Fatalf("%d %.200s, want %d %s", status, b, c.status, c.code)
			}
			checkJSONHeaders(t, h)
		})
	}
	if _, _, b := e.do(t.Context(), "GET", "/v1/topics/h", "", ""); string(b) != `{"topic":"h","head":0,"oldest":0,"waiting":0}` {
		t.Fatalf("hostile input appended: %s", b)
	}
}

func manyTopics(n int) string {
	ts := make([]string, n)
	for i := range ts {
		ts[i] = fmt.Sprintf("t%d", i)
	}
	b, _ := json.Marshal(ts)
	return string(b)
}
