package longpoll_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/longpoll/longpoll"
)

// rawGet sends a request with Accept-Encoding ae (none when "") through a
// client that leaves bodies as sent, and returns the status, the header
// and the body as it came.
func (e *env) rawDo(method, path, ae, body string) (int, http.Header, []byte) {
	e.t.Helper()
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if ae != "" {
		req.Header.Set("Accept-Encoding", ae)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// gunzip returns b decompressed, failing the test if it is not gzip.
func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// Replies of at least 1 KiB go out gzip-compressed to clients that take
// gzip; smaller ones, and those to other clients, as before; every JSON
// reply says Vary: Accept-Encoding.
func TestGzipReplies(t *testing.T) {
	e := newEnv(t, nil)
	big := strings.Repeat("abcdefgh", 200) // 1600 bytes of data
	e.publish("t", big)
	e.publish("small", 1)

	status, h, b := e.rawDo("GET", "/v1/poll?topic=t&since=earliest&timeout=0", "gzip, deflate, br", "")
	if status != 200 || h.Get("Content-Encoding") != "gzip" || h.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("large poll reply with gzip accepted: %d %v", status, h)
	}
	plain := gunzip(t, b)
	var r reply
	if err := json.Unmarshal(plain, &r); err != nil || len(r.Messages) != 1 || !strings.Contains(string(r.Messages[0].Data), big) {
		t.Fatalf("decompressed reply: %v %.80s", err, plain)
	}
	if len(b) >= len(plain)/4 {
		t.Fatalf("compressed %d bytes to %d", len(plain), len(b))
	}
	for _, ae := range []string{"", "identity", "gzip;q=0", "br", "*;q=0", "gzip;q=0, *"} {
		_, h, b := e.rawDo("GET", "/v1/poll?topic=t&since=earliest&timeout=0", ae, "")
		if h.Get("Content-Encoding") != "" || h.Get("Vary") != "Accept-Encoding" || !json.Valid(b) {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q Vary %q", ae, h.Get("Content-Encoding"), h.Get("Vary"))
		}
	}
	if _, h, _ := e.rawDo("GET", "/v1/poll?topic=t&since=earliest&timeout=0", "*", ""); h.Get("Content-Encoding") != "gzip" {
		t.Errorf("Accept-Encoding *: not compressed")
	}
	_, h, b = e.rawDo("GET", "/v1/poll?topic=small&since=earliest&timeout=0", "gzip", "")
	if h.Get("Content-Encoding") != "" || h.Get("Vary") != "Accept-Encoding" || !json.Valid(b) {
		t.Fatalf("small poll reply: %v %s", h, b)
	}
	_, h, _ = e.rawDo("GET", "/v1/topics/t", "gzip", "")
	if h.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("topic info without Vary: %v", h)
	}

	// A publish's receipts, when a large batch makes them 1 KiB or more.
	var batch strings.Builder
	batch.WriteString(`{"messages":[`)
	for i := range 40 {
		if i > 0 {
			batch.WriteByte(',')
		}
		batch.WriteString(`{"topic":"batch","data":1}`)
	}
	batch.WriteString(`]}`)
	status, h, b = e.rawDo("POST", "/v1/publish", "gzip", batch.String())
	if status != 200 || h.Get("Content-Encoding") != "gzip" || !strings.Contains(string(gunzip(t, b)), `"seq":40`) {
		t.Fatalf("large batch's receipts: %d %v", status, h)
	}
	status, h, b = e.rawDo("POST", "/v1/publish", "gzip", `{"topic":"one","data":1}`)
	if status != 200 || h.Get("Content-Encoding") != "" || !json.Valid(b) {
		t.Fatalf("one message's receipt: %d %v %s", status, h, b)
	}
}

// Held polls woken by a publish get compressed replies when they take
// gzip, and plain ones when not, from one fan-out.
func TestGzipHeldPolls(t *testing.T) {
	e := newEnv(t, nil, longpoll.WithGzipMinSize(100))
	cur := e.poll(q("topic", "t", "timeout", "0")).Cursor
	type got struct {
		enc  string
		body []byte
	}
	results := make(chan got, 2)
	for _, ae := range []string{"gzip", ""} {
		go func() {
			tr := &http.Transport{DisableCompression: true}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequestWithContext(context.Background(), "GET", e.url+"/v1/poll?topic=t&timeout=30&cursor="+cur, nil)
			if ae != "" {
				req.Header.Set("Accept-Encoding", ae)
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				results <- got{enc: "error " + err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			results <- got{resp.Header.Get("Content-Encoding"), b}
		}()
	}
	e.waitWaiting("t", 2)
	e.publish("t", strings.Repeat("x", 300))
	var zipped, plain int
	for range 2 {
		g := <-results
		body := g.body
		switch g.enc {
		case "gzip":
			zipped++
			body = gunzip(t, body)
		case "":
			plain++
		default:
			t.Fatalf("held poll: %s", g.enc)
		}
		var r reply
		if err := json.Unmarshal(body, &r); err != nil || len(r.Messages) != 1 || r.Messages[0].Seq != 1 {
			t.Fatalf("held poll's reply (%q): %v %s", g.enc, err, body)
		}
	}
	if zipped != 1 || plain != 1 {
		t.Fatalf("%d compressed and %d plain replies, want one of each", zipped, plain)
	}
}

// A CORS reply keeps its Vary: Origin beside Vary: Accept-Encoding.
func TestVaryKeepsOrigin(t *testing.T) {
	e := newEnv(t, nil, longpoll.WithCORS("https://app.example"))
	_, h, _ := e.doHeader("GET", "/v1/topics/t", "Origin", "https://app.example")
	if v := h.Values("Vary"); !slices.Contains(v, "Origin") || !slices.Contains(v, "Accept-Encoding") {
		t.Fatalf("Vary %q, want Origin and Accept-Encoding", v)
	}
}
