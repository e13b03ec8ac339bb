package bench

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		name, raw     string
		status        int
		body, lm, tag string
		close         bool
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "", "", false},
		{"nchan headers", "HTTP/1.1 200 OK\r\nLast-Modified: Fri, 27 Nov 2026 19:26:19 GMT\r\netag: 3\r\nContent-Length: 2\r\n\r\n{}", 200, "{}", "Fri, 27 Nov 2026 19:26:19 GMT", "3", false},
		{"not modified", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 304, "", "", "", false},
		{"chunked", "HTTP/1.1 408 Request Timeout\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 408, "abcde", "", "", false},
		{"close", "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", 503, "x", "", "", true},
		{"HTTP/1.0 until EOF", "HTTP/1.0 200 OK\r\n\r\nall of it", 200, "all of it", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r reply
			if err := readReply(bufio.NewReader(strings.NewReader(tt.raw)), &r); err != nil {
				t.Fatal(err)
			}
			if r.status != tt.status || string(r.body) != tt.body || r.lastModified != tt.lm || r.etag != tt.tag || r.close != tt.close {
				t.Fatalf("got %d %q lm %q etag %q close %v", r.status, r.body, r.lastModified, r.etag, r.close)
			}
		})
	}
	for _, bad := range []string{"", "HTTP/1.1 2x0 OK\r\n\r\n", "SMTP ready\r\n", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"} {
		var r reply
		if err := readReply(bufio.NewReader(strings.NewReader(bad)), &r); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestScanPollReply(t *testing.T) {
	const body = `{"messages":[{"topic":"a","seq":1,"time":"2026-11-27T18:38:55.305229179Z","data":{"n":1,"t":1700000000000000000}},` +
		`{"topic":"a","seq":2,"time":"2026-11-27T18:38:55.305229180Z","data":{"n":2,"t":1700000000000000001,"p":"xx"}}],` +
		`"cursor":"AQEBYe6LPQ3AaI6wAZ6hJPQ","timeout":false,"gaps":[{"topic":"a","reason":"expired","missed":5}]}`
	ps, cursor, gaps, ok := scanPollReply([]byte(body), nil)
	if !ok || cursor != "AQEBYe6LPQ3AaI6wAZ6hJPQ" || gaps != 1 || len(ps) != 2 {
		t.Fatalf("ok %v cursor %q gaps %d payloads %v", ok, cursor, gaps, ps)
	}
	if ps[0] != (payload{N: 1, T: 1700000000000000000}) || ps[1] != (payload{N: 2, T: 1700000000000000001}) {
		t.Fatalf("payloads %+v", ps)
	}
	ps, cursor, gaps, ok = scanPollReply([]byte(`{"messages":[],"cursor":"C","timeout":true,"gaps":[]}`), nil)
	if !ok || cursor != "C" || gaps != 0 || len(ps) != 0 {
		t.Fatalf("empty reply: ok %v cursor %q gaps %d payloads %v", ok, cursor, gaps, ps)
	}
	// Anything else is left to encoding/json.
	for _, other := range []string{
		`{"messages":[{"topic":"a","seq":1,"data":{"x":1}}],"cursor":"C","gaps":[]}`,
		`{"cursor":"C","messages":[]}`,
		`{"messages":[],"cursor":"","gaps":[]}`,
	} {
		if _, _, _, ok := scanPollReply([]byte(other), nil); ok {
			t.Errorf("%s: scanned", other)
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	at := time.Unix(0, 1764272335305229179)
	for _, pad := range []string{"", "xxxx"} {
		p, ok := scanPayload(encodePayload(42, at, pad))
		if !ok || p.N != 42 || p.T != at.UnixNano() {
			t.Errorf("pad %q: %+v %v", pad, p, ok)
		}
	}
}

func TestParseReply(t *testing.T) {
	lp := &target{protocol: ProtocolLongpoll}
	nc := &target{protocol: ProtocolNchan}
	tests := []struct {
		name   string
		t      *target
		r      reply
		want   []uint64 // payload numbers
		gaps   int
		cursor string
		etag   string
		err    bool
	}{
		{"longpoll, scanned", lp, reply{status: 200, body: []byte(`{"messages":[{"topic":"a","seq":1,"time":"x","data":{"n":7,"t":1}}],"cursor":"C1","timeout":false,"gaps":[]}`)}, []uint64{7}, 0, "C1", "", false},
		// Another shape (keys reordered, spaces): decoded by encoding/json.
		{"longpoll, decoded", lp, reply{status: 200, body: []byte(`{"cursor":"C2", "gaps":[{"topic":"a","reason":"reset"}], "messages":[{"data":{"t":1, "n":8}}]}`)}, []uint64{8}, 1, "C2", "", false},
		{"longpoll, no cursor", lp, reply{status: 200, body: []byte(`{"messages":[],"gaps":[]}`)}, nil, 0, "", "", true},
		{"longpoll, overloaded", lp, reply{status: 503, body: []byte(`{"error":{}}`)}, nil, 0, "", "", true},
		{"nchan, message", nc, reply{status: 200, etag: "4", lastModified: "LM", body: []byte(`{"n":9,"t":1}`)}, []uint64{9}, 0, "", "4", false},
		{"nchan, hold ended", nc, reply{status: 408}, nil, 0, "", "", false},
		{"nchan, not a payload", nc, reply{status: 200, body: []byte(`hello`)}, nil, 0, "", "", true},
		{"nchan, forbidden", nc, reply{status: 403}, nil, 0, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st subState
			ps, gaps, err := tt.t.parseReply(&tt.r, &st, nil)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			var got []uint64
			for _, p := range ps {
				got = append(got, p.N)
			}
			if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) || gaps != tt.gaps || st.cursor != tt.cursor || st.etag != tt.etag {
				t.Fatalf("payloads %v gaps %d cursor %q etag %q", got, gaps, st.cursor, st.etag)
			}
		})
	}
}
