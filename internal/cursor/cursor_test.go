package cursor

import (
	"encoding/base64"
	"hash/crc32"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func validTopic(s string) bool { return s != "" && !strings.ContainsAny(s, " \x00") }

func TestRoundTrip(t *testing.T) {
	cases := [][]Entry{
		{},
		{{Topic: "a", Epoch: 1, Seq: 0}},
		{{Topic: "a", Epoch: 0xffffffffffffffff, Seq: 1 << 63}, {Topic: "b.c/d", Epoch: 7, Seq: 42}},
		{{Topic: strings.Repeat("x", 256), Epoch: 3, Seq: 9}},
	}
	for _, want := range cases {
		s := Encode(want)
		for _, c := range s {
			if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", c) {
				t.Fatalf("cursor %q holds %q, outside unpadded base64url", s, c)
			}
		}
		got, err := Decode(s, validTopic)
		if err != nil {
			t.Fatalf("Decode(Encode(%v)): %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip: got %v, want %v", got, want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Encode([]Entry{{Topic: "a", Epoch: 1, Seq: 2}})
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flipped := append([]byte(nil), raw...)
	flipped[3] ^= 0x40
	cases := map[string]string{
		"empty":       "",
		"not base64":  "!!!!",
		"padded":      good + "=",
		"truncated":   good[:len(good)-2],
		"bit flipped": base64.RawURLEncoding.EncodeToString(flipped),
		"bad version": reencode(func(b []byte) []byte { b[0] = 9; return b }),
		"bad topic":   Encode([]Entry{{Topic: "has space", Epoch: 1}}),
		"dup topic":   Encode([]Entry{{Topic: "a", Epoch: 1}, {Topic: "a", Epoch: 1}}),
		"trailing":    reencode(func(b []byte) []byte { return append(b, 0) }),
		"huge":        strings.Repeat("A", 400000),
		"count lies":  reencode(func(b []byte) []byte { b[1] = 5; return b }),
	}
	for name, s := range cases {
		if _, err := Decode(s, validTopic); err == nil {
			t.Errorf("%s: Decode(%.40q) succeeded, want an error", name, s)
		}
	}
}

// reencode builds a cursor whose body was changed by f, with a valid
// checksum, so the structural checks behind the checksum are exercised.
func reencode(f func([]byte) []byte) string {
	raw, _ := base64.RawURLEncoding.DecodeString(Encode([]Entry{{Topic: "a", Epoch: 1, Seq: 2}}))
	body := f(append([]byte(nil), raw[:len(raw)-4]...))
	return base64.RawURLEncoding.EncodeToString(appendSum(body))
}

func appendSum(body []byte) []byte {
	out := append([]byte(nil), body...)
	sum := crc32.Checksum(body, table)
	return append(out, byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum))
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode([]Entry{{Topic: "a", Epoch: 1, Seq: 2}}))
	f.Add(Encode(nil))
	f.Add("AQA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := Decode(s, validTopic)
		if err != nil {
			return
		}
		again, err := Decode(Encode(entries), validTopic)
		if err != nil || !reflect.DeepEqual(again, entries) {
			t.Fatalf("re-encoding %v does not round-trip: %v %v", entries, again, err)
		}
	})
}

func TestDecodeKnownAndDuplicates(t *testing.T) {
	topic := strings.Clone("news")
	s := Encode([]Entry{{Topic: "news", Epoch: 1, Seq: 5}, {Topic: "other", Epoch: 1, Seq: 6}})
	got, err := Decode(s, validTopic, "x", topic)
	if err != nil || got[0].Topic != "news" || got[1].Topic != "other" {
		t.Fatalf("Decode = %v, %v", got, err)
	}
	if unsafe.StringData(got[0].Topic) != unsafe.StringData(topic) {
		t.Error("a known topic's name was copied")
	}
	if n := testing.AllocsPerRun(100, func() { Decode(s, validTopic, "news", "other") }); n != 1 {
		t.Errorf("Decode of a short cursor with known topics: %v allocations, want 1 (its entries)", n)
	}
	// Duplicates among few entries (a scan) and many (a map).
	for _, n := range []int{2, 8, 9, 40} {
		var es []Entry
		for i := range n - 1 {
			es = append(es, Entry{Topic: "t" + strconv.Itoa(i), Epoch: 1})
		}
		es = append(es, Entry{Topic: "t0", Epoch: 2})
		if _, err := Decode(Encode(es), validTopic); err != errDupTopic {
			t.Errorf("%d entries, one twice: %v, want %v", n, err, errDupTopic)
		}
		es[n-1].Topic = "last"
		if got, err := Decode(Encode(es), validTopic); err != nil || !reflect.DeepEqual(got, es) {
			t.Errorf("%d distinct entries: %v, %v", n, got, err)
		}
	}
}
