package longpoll_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

func FuzzValidateTopic(f *testing.F) {
	for _, s := range []string{"a", "", "chat.room-1/x:y@z_", "a b", "é", strings.Repeat("x", 257), "_longpoll.stats", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := longpoll.ValidateTopic(s)
		valid := len(s) >= 1 && len(s) <= 256
		for _, c := range []byte(s) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:@/-", c) >= 0) {
				valid = false
			}
		}
		if (err == nil) != valid {
			t.Fatalf("ValidateTopic(%q) = %v, want valid=%v", s, err, valid)
		}
	})
}

// fuzzServer is shared by the fuzz targets: a server whose polls never
// hold, so every request answers at once.
func fuzzServer(t testing.TB) *longpoll.Server {
	b := memory.New()
	t.Cleanup(func() { b.Close() })
	srv, err := longpoll.New(b, longpoll.WithMaxHold(1))
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// checkAnswer asserts the invariants of every answer: a known status, a
// JSON body, and for errors a code and message.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, input string) {
	t.Helper()
	switch rec.Code {
	case 200, 400, 403, 413, 415:
	default:
		t.Fatalf("%q: status %d: %s", input, rec.Code, rec.Body)
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%q: reply is not JSON: %s", input, rec.Body)
	}
	if rec.Code != 200 {
		var er errReply
		json.Unmarshal(rec.Body.Bytes(), &er)
		if er.Error.Code == "" || er.Error.Message == "" {
			t.Fatalf("%q: error without code or message: %s", input, rec.Body)
		}
	}
}

func FuzzPublishBody(f *testing.F) {
	for _, s := range []string{
		`{"topic":"a","data":1}`, `{"topic":"a","data":null,"id":"k"}`, `{"messages":[{"topic":"a","data":[1,{"b":"c"}]}]}`,
		`{"topic":"_longpoll.x","data":1}`, `{"topic":"a"}`, `{`, `[]`, `{"messages":[]}`, `{"topic":"a","data":1e999}`,
		`{"topic":"a","data":"\ud800"}`, `{"topic":"a","data":1,"messages":[]}`,
	} {
		f.Add(s)
	}
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/publish", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		srv.ServeHTTP(rec, req)
		checkAnswer(t, rec, body)
		if rec.Code == 200 {
			// Every published data comes back as valid JSON.
			var r struct{ Messages []struct{ Topic string } }
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || len(r.Messages) == 0 {
				t.Fatalf("%q: publish reply %s", body, rec.Body)
			}
			poll := httptest.NewRecorder()
			srv.ServeHTTP(poll, httptest.NewRequest("GET", "/v1/poll?since=earliest&timeout=0&limit=1000&topic="+r.Messages[0].Topic, nil))
			if poll.Code != 200 || !json.Valid(poll.Body.Bytes()) {
				t.Fatalf("%q: poll after publish: %d %s", body, poll.Code, poll.Body)
			}
		}
	})
}

func FuzzPollQuery(f *testing.F) {
	for _, s := range []string{
		"topic=a", "topic=a&topic=b&since=earliest&timeout=1.5&limit=10", "topic=a&timeout=25s", "topic=&limit=0",
		"topic=a&cursor=AQEBYe6LPQ3AaI6wAZ6hJPQ", "topic=a&cursor=%ff", "topic=a&timeout=1e308", "topic=a&limit=-1",
		"topic=a&timeout=1&timeout=2", "topic=%00",
	} {
		f.Add(s)
	}
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, query string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/poll", nil)
		req.URL.RawQuery = query
		srv.ServeHTTP(rec, req)
		checkAnswer(t, rec, query)
	})
}

func FuzzPollBody(f *testing.F) {
	for _, s := range []string{
		`{"topics":["a"]}`, `{"topics":["a","a"],"since":"earliest","timeout":"1s","limit":5}`, `{"topics":["a"],"timeout":1.5}`,
		`{"topics":[]}`, `{"topics":["a"],"limit":"5"}`, `{"topics":["a"],"timeout":-1}`, `null`, `{"topics":null}`,
	} {
		f.Add(s)
	}
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/poll", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		srv.ServeHTTP(rec, req)
		checkAnswer(t, rec, body)
	})
}
