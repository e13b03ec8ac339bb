package longpoll

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/longpoll/longpoll/internal/transport"
)

// TestWriteJSONWithoutAMap holds writeJSON's header-map-free path for an
// event-loop transport's response to the header net/http's writer gets.
func TestWriteJSONWithoutAMap(t *testing.T) {
	body := []byte(`{"messages":[{"topic":"a","seq":1}]}`)
	rec := httptest.NewRecorder()
	writeJSON(rec, http.StatusOK, body)

	var w transport.Response
	writeJSON(&w, http.StatusOK, body)
	if w.Fields() != nil {
		t.Fatalf("a header map was made: %v", w.Fields())
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(append(w.AppendHead(nil, false), w.Body...))), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Del("Date")
	if resp.StatusCode != rec.Code || !bytes.Equal(w.Body, rec.Body.Bytes()) || len(resp.Header) != len(rec.Header()) {
		t.Fatalf("transport.Response: %d %v %q; net/http's writer: %d %v %q", resp.StatusCode, resp.Header, w.Body, rec.Code, rec.Header(), rec.Body)
	}
	for k, v := range rec.Header() {
		if got := resp.Header[k]; len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s: %q, net/http's writer %q", k, got, v)
		}
	}
}
