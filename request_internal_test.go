package longpoll

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"testing"
)

// FuzzPollParams holds parsePollParams to url.ParseQuery: the same topics
// in the same order, and the same first value and count of each other
// parameter a poll reads.
func FuzzPollParams(f *testing.F) {
	for _, s := range []string{
		"topic=a", "topic=a&topic=b&since=earliest&timeout=1.5&limit=10", "topic=a+b&cursor=%41",
		"topic=a;b&topic=c", "topic=%zz&topic=d", "timeout=1&timeout=2", "=x&topic", "&&topic=&",
		"top%69c=e", "limit=%", "cursor=a=b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		topics, got := parsePollParams(raw, nil)
		want, _ := url.ParseQuery(raw)
		var buf [2]string
		if inBuf, p := parsePollParams(raw, buf[:0]); !slices.Equal(inBuf, topics) || p != got {
			t.Fatalf("%q: %q %+v with an array for the topics, %q %+v without", raw, inBuf, p, topics, got)
		}
		if !slices.Equal(topics, want["topic"]) {
			t.Fatalf("%q: topics %q, url.ParseQuery %q", raw, topics, want["topic"])
		}
		for i, k := range pollParamNames {
			if got.n[i] != len(want[k]) || got.vals[i] != want.Get(k) {
				t.Fatalf("%q: %s %q ×%d, url.ParseQuery %q", raw, k, got.vals[i], got.n[i], want[k])
			}
		}
	})
}

func TestPollParamsTooMany(t *testing.T) {
	raw := "topic=a"
	for range maxQueryParams {
		raw += "&x=1"
	}
	if topics, _ := parsePollParams(raw, nil); topics != nil {
		t.Fatalf("%d pairs gave topics %q; url.ParseQuery gives none", maxQueryParams+1, topics)
	}
	if q, _ := url.ParseQuery(raw); q["topic"] != nil {
		t.Fatalf("url.ParseQuery changed its limit: %q", q["topic"])
	}
}

func FuzzPlainPublish(f *testing.F) {
	for _, s := range []string{
		`{"topic":"a","data":1}`, ` { "topic" : "a" , "data" : {"x":[1,"}",{"y":null}]} , "id" : "k-1" } `,
		`{"data":"s\"}","topic":"b"}`, `{"topic":"a","data":null}`, `{"topic":"a","topic":"b","data":1}`,
		`{"Topic":"a","data":1}`, `{"topic":"\u0061","data":1}`, `{"topic":"é","data":1}`, `{"topic":1,"data":1}`,
		`{"topic":"a","data":1,"messages":[]}`, `{}`, `[1]`, `{"topic":"a","data":tru}`, `{"data":-1.5e3,"topic":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		it, ok := plainPublish(raw)
		if !ok {
			return
		}
		var b publishBody
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatalf("%q: plainPublish took it, json.Unmarshal: %v", raw, err)
		}
		same := func(x, y *string) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
		if b.Messages != nil || !same(it.Topic, b.Topic) || !same(it.ID, b.ID) || !bytes.Equal(it.Data, b.Data) || (it.Data == nil) != (b.Data == nil) {
			t.Fatalf("%q: plainPublish %+v, json.Unmarshal %+v", raw, it, b)
		}
	})
}

// TestPlainPublishTakesTheUsualBodies: the usual bodies do not go to
// json.Unmarshal.
func TestPlainPublishTakesTheUsualBodies(t *testing.T) {
	for _, raw := range []string{
		`{"topic":"a","data":1}`,
		`{"topic":"orders.eu-1","data":{"n":1,"s":"x\"y","l":[1,2,{}]},"id":"k-1"}`,
		"{\n  \"data\": [true, null],\n  \"topic\": \"a\"\n}\n",
		`{"topic":"a","data":null}`,
	} {
		it, ok := plainPublish([]byte(raw))
		if !ok || it.Topic == nil || it.Data == nil {
			t.Errorf("%q: %+v, %v", raw, it, ok)
		}
	}
}

// FuzzTimeout holds parseTimeout's shortcut for whole seconds to its
// general case.
func FuzzTimeout(f *testing.F) {
	for _, s := range []string{"30", "30s", "0", "0s", "s", "1.5", "30ms", "999999", "1000000s", "-1", "+5", "5 s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, gerr := parseTimeout(s)
		if s == "" || len(s) > 32 {
			if gerr == nil {
				t.Fatalf("%q: %v, want an error", s, got)
			}
			return
		}
		want, werr := parseDuration(s)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: %v %v, general case %v %v", s, got, gerr, want, werr)
		}
		if d, ok := wholeSeconds(s); ok && (d != want || werr != nil) {
			t.Fatalf("%q: shortcut %v, general case %v %v", s, d, want, werr)
		}
	})
}

func TestTimeoutShortcut(t *testing.T) {
	for _, s := range []string{"30", "30s", "0s", "600"} {
		if _, ok := wholeSeconds(s); !ok {
			t.Errorf("wholeSeconds(%q) does not take it", s)
		}
	}
}
