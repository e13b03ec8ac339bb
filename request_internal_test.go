package longpoll

import (
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
