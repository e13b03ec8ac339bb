package park

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestResponseHead(t *testing.T) {
	for _, close := range []bool{false, true} {
		var w Response
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("Vary", "Origin")
		w.Header().Add("Vary", "Cookie")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"a":`))
		w.Write([]byte(`1}`))
		w.WriteHeader(http.StatusOK) // too late: ignored
		raw := append(w.AppendHead(nil, close), w.Body...)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 429 || string(body) != `{"a":1}` || resp.ContentLength != 7 || resp.Close != close ||
			len(resp.Header["Vary"]) != 2 || resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("close=%v: %d %q %v", close, resp.StatusCode, body, resp.Header)
		}
	}
}

func TestAppendHeadExtraAndLength(t *testing.T) {
	hdr := http.Header{"Content-Length": {"2"}}
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	raw := AppendHead(nil, 200, hdr, []byte("X-Request-Id: r\r\n"), 99, false, now)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(append(raw, "ok"...))), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "ok" || resp.Header.Get("X-Request-Id") != "r" || len(resp.Header["Content-Length"]) != 1 ||
		resp.Header.Get("Date") != "Sat, 28 Nov 2026 18:00:00 GMT" {
		t.Errorf("%q: %q %v", raw, body, resp.Header)
	}
}

func TestSetJSON(t *testing.T) {
	w := Response{RequestID: "r-1"}
	w.SetJSON(http.StatusCreated, []byte(`{"a":1}`))
	raw := append(w.AppendHead(nil, false), w.Body...)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	want := map[string]string{
		"Content-Type": "application/json", "Cache-Control": "no-store", "X-Accel-Buffering": "no",
		"Content-Length": "7", "X-Request-Id": "r-1",
	}
	for k, v := range want {
		if got := resp.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if resp.StatusCode != 201 || string(body) != `{"a":1}` || len(resp.Header) != len(want)+1 || resp.Header.Get("Date") == "" {
		t.Errorf("%d %q %v", resp.StatusCode, body, resp.Header)
	}
	if w.Fields() != nil {
		t.Errorf("SetJSON made a header map: %v", w.Fields())
	}
}
