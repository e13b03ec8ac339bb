package jetstream

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longpoll/longpoll/protocol"
)

func TestEncodeTopic(t *testing.T) {
	tests := []struct{ topic, token string }{
		{"a", "a"},
		{"a.b", "a=b"},
		{"room/1:x@y_z-Q", "room/1:x@y_z-Q"},
		{"..", "=="},
		{".a.", "=a="},
	}
	for _, tt := range tests {
		if got := EncodeTopic(tt.topic); got != tt.token {
			t.Errorf("EncodeTopic(%q) = %q, want %q", tt.topic, got, tt.token)
		}
		if got, err := DecodeTopic(tt.token); err != nil || got != tt.topic {
			t.Errorf("DecodeTopic(%q) = %q, %v; want %q", tt.token, got, err, tt.topic)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "a*", ">", "é", strings.Repeat("a", 257)} {
		if got, err := DecodeTopic(bad); err == nil {
			t.Errorf("DecodeTopic(%q) = %q, want an error", bad, got)
		}
	}
}

// FuzzTopicToken holds the encoding to its promise: every valid topic
// makes one valid subject token that decodes back to it, and every token
// that decodes is the encoding of what it decodes to.
func FuzzTopicToken(f *testing.F) {
	for _, s := range []string{"a", "a.b", "=", "a=b", "room/1:x@y_z-Q", "..", "*", ">", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if protocol.ValidateTopic(s) == nil {
			tok := EncodeTopic(s)
			if !validToken(tok) {
				t.Fatalf("EncodeTopic(%q) = %q: not a subject token", s, tok)
			}
			got, err := DecodeTopic(tok)
			if err != nil || got != s {
				t.Fatalf("DecodeTopic(EncodeTopic(%q)) = %q, %v", s, got, err)
			}
		}
		if topic, err := DecodeTopic(s); err == nil {
			if EncodeTopic(topic) != s {
				t.Fatalf("EncodeTopic(DecodeTopic(%q)) = %q", s, EncodeTopic(topic))
			}
			if !validToken(s) {
				t.Fatalf("DecodeTopic accepted %q, not a subject token", s)
			}
		}
	})
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in       string
		hosts    string
		user     string
		pass     string
		tls      bool
		replicas int
		stream   string
		prefix   string
		redacted string
	}{
		{in: "nats://localhost:4222", hosts: "localhost:4222", redacted: "nats://localhost:4222"},
		{in: "nats://localhost", hosts: "localhost:4222", redacted: "nats://localhost:4222"},
		{in: "nats://h1:4222,h2:4223,h3", hosts: "h1:4222,h2:4223,h3:4222", redacted: "nats://h1:4222,h2:4223,h3:4222"},
		{in: "tls://u:p%40ss@h:4443?replicas=3&stream=S_1&prefix=a.b", hosts: "h:4443", user: "u", pass: "p@ss",
			tls: true, replicas: 3, stream: "S_1", prefix: "a.b", redacted: "tls://u:xxxxx@h:4443?prefix=a.b&replicas=3&stream=S_1"},
		{in: "nats://[::1]:4222/", hosts: "[::1]:4222", redacted: "nats://[::1]:4222"},
		{in: "nats://tok@h", hosts: "h:4222", user: "tok", redacted: "nats://tok@h:4222"},
	}
	for _, tt := range tests {
		u, err := parseURL(tt.in)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tt.in, err)
			continue
		}
		if h := strings.Join(u.Hosts, ","); h != tt.hosts || u.User != tt.user || u.Pass != tt.pass || u.TLS != tt.tls ||
			u.Replicas != tt.replicas || u.Stream != tt.stream || u.Prefix != tt.prefix {
			t.Errorf("parseURL(%q) = %+v", tt.in, u)
		}
		if r := u.Redacted(); r != tt.redacted {
			t.Errorf("parseURL(%q).Redacted() = %q, want %q", tt.in, r, tt.redacted)
		}
	}
	for _, bad := range []string{
		"", "redis://h", "nats://", "nats://h:0", "nats://h:99999", "nats://h:x", "nats://h/path",
		"nats://h?replicas=0", "nats://h?replicas=9", "nats://h?stream=a.b", "nats://h?prefix=a..b",
		"nats://h?prefix=a.*", "nats://h?other=1", "nats://h?stream=a&stream=b", "nats://h1,,h2", "nats://[::1",
		"nats://u:p@", "nats://h:1:2",
	} {
		if u, err := parseURL(bad); err == nil {
			t.Errorf("parseURL(%q) = %+v, want an error", bad, u)
		}
	}
}

// FuzzParseURL: the parser never panics, never leaks a password into the
// redacted form, and what it accepts reparses to the same from the
// redacted form (the password aside).
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"nats://localhost:4222", "tls://u:p@h1:1,h2:2?replicas=3&stream=S&prefix=a.b",
		"nats://[::1]:4222", "nats://h?prefix=*", "nats://a@b@c", "nats://h:4222/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseURL(s)
		if err != nil {
			return
		}
		r := u.Redacted()
		if u.Pass != "" && len(u.Pass) > 5 && strings.Contains(r, u.Pass) {
			t.Fatalf("Redacted() = %q holds the password %q", r, u.Pass)
		}
		v, err := parseURL(r)
		if err != nil {
			t.Fatalf("parseURL(%q) accepted, its redacted form %q not: %v", s, r, err)
		}
		if u.Pass != "" {
			v.Pass = u.Pass
		}
		if v.Redacted() != r || strings.Join(v.Hosts, ",") != strings.Join(u.Hosts, ",") || v.User != u.User ||
			v.Stream != u.Stream || v.Prefix != u.Prefix || v.Replicas != u.Replicas || v.TLS != u.TLS {
			t.Fatalf("parseURL(%q) = %+v, its redacted form %q reparses to %+v", s, u, r, v)
		}
	})
}

// The golden record: a format change must fail here, not only in round
// trips, since records outlive the nodes that wrote them.
func TestRecordGolden(t *testing.T) {
	r := record{
		epoch: 12345678901234567890, first: 7, time: time.UnixMicro(1735787045123456).UTC(),
		costBefore: 300, dataBefore: 12, prev: 41, token: "0123456789abcdef01234567/2",
		msgs: []entry{{id: "", data: []byte(`{"a":1}`)}, {id: "x-é", data: []byte(`"s"`)}},
	}
	h, body := r.encode()
	wantHeader := map[string]string{
		"Lp-Epoch": "12345678901234567890", "Lp-Seq": "7", "Lp-Count": "2", "Lp-Time": "1735787045123456",
		"Lp-Cost": "300", "Lp-Data": "12", "Lp-Prev": "41", "Lp-Token": "0123456789abcdef01234567/2",
	}
	for k, v := range wantHeader {
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	if len(h) != len(wantHeader) {
		t.Errorf("headers %v, want exactly %v", h, wantHeader)
	}
	const wantBody = "01" + "00" + "07" + "7b2261223a317d" + "04" + "782dc3a9" + "03" + "227322"
	if got := hex.EncodeToString(body); got != wantBody {
		t.Errorf("body %s, want %s", got, wantBody)
	}

	hdr := nats.Header{}
	for k, v := range wantHeader {
		hdr.Set(k, v)
	}
	raw, _ := hex.DecodeString(wantBody)
	got, err := decodeRecord(hdr, raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.epoch != r.epoch || got.first != r.first || !got.time.Equal(r.time) || got.costBefore != r.costBefore ||
		got.dataBefore != r.dataBefore || got.prev != r.prev || got.token != r.token || len(got.msgs) != 2 ||
		got.msgs[1].id != "x-é" || !bytes.Equal(got.msgs[0].data, []byte(`{"a":1}`)) {
		t.Fatalf("decoded %+v, want %+v", got, r)
	}
	if got.last() != 8 || got.costEnd("t") != 300+(7+0+1+96)+(3+4+1+96) || got.dataEnd() != 12+7+3 {
		t.Fatalf("last %d, costEnd %d, dataEnd %d", got.last(), got.costEnd("t"), got.dataEnd())
	}
}

// FuzzDecodeRecord: damaged records are errors, never panics, and what
// decodes encodes back to the same body.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(uint64(1), uint64(1), uint64(1), []byte{1, 0, 1, '1'})
	f.Add(uint64(5), uint64(3), uint64(2), []byte{1, 1, 'x', 1, '1', 0, 2, '[', ']'})
	f.Add(uint64(5), uint64(3), uint64(9), []byte{1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, epoch, seq, count uint64, body []byte) {
		h := nats.Header{}
		for k, v := range map[string]uint64{hEpoch: epoch, hSeq: seq, hCount: count, hCost: 0, hData: 0, hPrev: 0, hTime: 0} {
			h.Set(k, strconvU(v))
		}
		r, err := decodeRecord(h, body)
		if err != nil {
			return
		}
		h2, again := r.encode()
		r2, err := decodeRecord(h2, again)
		if err != nil || len(r2.msgs) != len(r.msgs) {
			t.Fatalf("body %x decodes, encodes to %x, which does not decode: %v", body, again, err)
		}
		for k := range r.msgs {
			if r.msgs[k].id != r2.msgs[k].id || !bytes.Equal(r.msgs[k].data, r2.msgs[k].data) {
				t.Fatalf("body %x: message %d changes through encode", body, k)
			}
		}
	})
}

func TestVersionAtLeast(t *testing.T) {
	for _, tt := range []struct {
		have string
		ok   bool
	}{{"2.9.0", true}, {"2.9.10", true}, {"2.10.0", true}, {"v2.11.0-RC.1", true}, {"3.0.0", true},
		{"2.8.4", false}, {"1.99.99", false}, {"", false}} {
		if got := versionAtLeast(tt.have, MinServerVersion); got != tt.ok {
			t.Errorf("versionAtLeast(%q, %q) = %v", tt.have, MinServerVersion, got)
		}
	}
}

func strconvU(v uint64) string { return strconv.FormatUint(v, 10) }
