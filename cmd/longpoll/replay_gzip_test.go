package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestReplayAndGzip, through the binary on the disk store: since=<time>
// starts at the first message at or after the time, and a large reply
// comes gzip-compressed to a client that asks for it, and plain to one
// that does not.
func TestReplayAndGzip(t *testing.T) {
	s := startServer(t, nil, "--store", "disk", "--data-dir", t.TempDir(), "--gzip-min-size", "512")
	for i := 1; i <= 20; i++ {
		mustPublish(t, s.url, fmt.Sprintf(`{"topic":"r","data":{"i":%d,"pad":%q}}`, i, strings.Repeat("p", 40)))
	}
	get := func(q, ae string) (http.Header, []byte) {
		t.Helper()
		tr := &http.Transport{DisableCompression: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", s.url+"/v1/poll?"+q, nil)
		if ae != "" {
			req.Header.Set("Accept-Encoding", ae)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("poll ?%s: %d %s", q, resp.StatusCode, b)
		}
		return resp.Header, b
	}
	type reply struct {
		Messages []struct {
			Seq  uint64
			Time string
		}
	}
	h, b := get("topic=r&since=earliest&timeout=0&limit=100", "")
	var all reply
	if err := json.Unmarshal(b, &all); err != nil || len(all.Messages) != 20 || h.Get("Content-Encoding") != "" {
		t.Fatalf("plain poll: %v %v %d messages", h, err, len(all.Messages))
	}
	h, z := get("topic=r&since=earliest&timeout=0&limit=100", "gzip")
	if h.Get("Content-Encoding") != "gzip" || h.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("poll with gzip: %v", h)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	unz, _ := io.ReadAll(zr)
	if !bytes.Equal(unz, b) {
		t.Fatalf("the compressed reply is not the plain one:\n%s\n%s", unz, b)
	}
	t.Logf("20 messages: %d bytes plain, %d gzip-compressed", len(b), len(z))

	k := 12
	at := all.Messages[k].Time
	if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
		t.Fatal(err)
	}
	for k > 0 && all.Messages[k-1].Time == at { // the first of equal times
		k--
	}
	_, b = get("topic=r&timeout=0&limit=1&since="+url.QueryEscape(at), "")
	var from reply
	if err := json.Unmarshal(b, &from); err != nil || len(from.Messages) != 1 || from.Messages[0].Seq != all.Messages[k].Seq {
		t.Fatalf("since=%s: %s, want seq %d first", at, b, all.Messages[k].Seq)
	}
}
