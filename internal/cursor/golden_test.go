package cursor

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
)

// Golden cursors: clients hold these strings across server upgrades, so
// the text for a set of positions must never change without a new version
// byte. A change made to Append and Decode together passes the round-trip
// tests; it fails these.
//
// The bytes, before unpadded base64url (RFC 4648 §5, no '='):
//
//	offset 0   version   1 byte, 0x01
//	offset 1   count     uvarint (LEB128: 7 bits a byte, low first, 0x80 = more)
//	then count entries, each:
//	           topic len uvarint
//	           topic     the name's UTF-8 bytes
//	           epoch     8 bytes, big-endian
//	           seq       uvarint
//	last 4     CRC-32C (Castagnoli), big-endian, of every byte before it
//
// For example "news" at epoch 1, seq 0 is
//
//	01 01 04 6e657773 0000000000000001 00 9155b5ff
//
// The vectors were computed apart from this package (a bitwise CRC-32C,
// a hand-written uvarint, Python's base64), not by Encode.
var goldenCursors = []struct {
	name    string
	entries []Entry
	raw     string // hex of the bytes before base64
	text    string
}{
	{"no topic", []Entry{},
		"0100" + "e2c3efa5",
		"AQDiw--l"},
	{"one topic", []Entry{{"news", 1, 0}},
		"0101" + "046e657773" + "0000000000000001" + "00" + "9155b5ff",
		"AQEEbmV3cwAAAAAAAAABAJFVtf8"},
	{"seq 127 is one byte, 128 two", []Entry{{"a", 2, 127}, {"b", 3, 128}},
		"0102" + "0161" + "0000000000000002" + "7f" + "0162" + "0000000000000003" + "8001" + "0bbc084a",
		"AQIBYQAAAAAAAAACfwFiAAAAAAAAAAOAAQu8CEo"},
	{"several topics", []Entry{{"a", 7, 42}, {"b.c/d", 0x0123456789abcdef, 300}, {"chat/room.1", 2, 16384}},
		"0103" + "0161" + "0000000000000007" + "2a" +
			"05622e632f64" + "0123456789abcdef" + "ac02" +
			"0b636861742f726f6f6d2e31" + "0000000000000002" + "808001" + "69da1973",
		"AQMBYQAAAAAAAAAHKgViLmMvZAEjRWeJq83vrAILY2hhdC9yb29tLjEAAAAAAAAAAoCAAWnaGXM"},
	{"large epochs and seqs", []Entry{{"x", 1 << 63, 1<<63 + 1}, {"y", 0xfedcba9876543210, 1 << 56}},
		"0102" + "0178" + "8000000000000000" + "81808080808080808001" +
			"0179" + "fedcba9876543210" + "8080808080808080" + "01" + "cfc5409d",
		"AQIBeIAAAAAAAAAAgYCAgICAgICAAQF5_ty6mHZUMhCAgICAgICAgAHPxUCd"},
	{"max values", []Entry{{"m", 1<<64 - 1, 1<<64 - 1}},
		"0101" + "016d" + "ffffffffffffffff" + "ffffffffffffffffff01" + "23e84e88",
		"AQEBbf______________________ASPoTog"},
	{"UTF-8 topic", []Entry{{"café/ü", 5, 9}},
		"0101" + "08636166c3a92fc3bc" + "0000000000000005" + "09" + "6b80cefd",
		"AQEIY2Fmw6kvw7wAAAAAAAAABQlrgM79"},
	{"130-byte topic: a two-byte length", []Entry{{strings.Repeat("t", 130), 1, 1}},
		"0101" + "8201" + strings.Repeat("74", 130) + "0000000000000001" + "01" + "b90a612c",
		"AQGCAXR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0" +
			"dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHQAAAAAAAAAAQG5CmEs"},
}

func anyTopic(s string) bool { return s != "" }

func TestGoldenEncode(t *testing.T) {
	for _, g := range goldenCursors {
		t.Run(g.name, func(t *testing.T) {
			if got := Encode(g.entries); got != g.text {
				t.Errorf("Encode(%v) =\n  %s\nwant\n  %s", g.entries, got, g.text)
			}
			if got := string(Append([]byte("prefix:"), g.entries)); got != "prefix:"+g.text {
				t.Errorf("Append after a prefix = %s, want prefix:%s", got, g.text)
			}
			// The table's own hex is the text's bytes: the layout comment
			// above is checked, not only the string.
			raw, err := base64.RawURLEncoding.Strict().DecodeString(g.text)
			if err != nil || hex.EncodeToString(raw) != g.raw {
				t.Errorf("the table is inconsistent: %s decodes to %x (%v), its hex says %s", g.text, raw, err, g.raw)
			}
		})
	}
}

func TestGoldenDecode(t *testing.T) {
	for _, g := range goldenCursors {
		t.Run(g.name, func(t *testing.T) {
			got, err := Decode(g.text, anyTopic)
			if err != nil {
				t.Fatalf("Decode(%s): %v", g.text, err)
			}
			if !slices.Equal(got, g.entries) {
				t.Errorf("Decode(%s) = %v, want %v", g.text, got, g.entries)
			}
		})
	}
}

// Cursors that must be refused, with the error each gets. The hex is of
// the bytes before base64; "(sum ok)" marks a body given a valid checksum,
// so that the check behind the checksum is what refuses it.
func TestGoldenInvalid(t *testing.T) {
	cases := []struct {
		name string
		text string
		want error
	}{
		// 0101 0161 0000000000000001 02 30ce420f: the last checksum byte of
		// {a 1 2} (…420e) changed.
		{"bad checksum", "AQEBYQAAAAAAAAABAjDOQg8", errCorrupt},
		// The valid {a 1 2}, AQEBYQAAAAAAAAABAjDOQg4, cut short.
		{"truncated by one char", "AQEBYQAAAAAAAAABAjDOQg", errCorrupt},
		{"truncated to its body", "AQEBYQAAAAAAAAABAg", errCorrupt},
		{"truncated to three bytes", "AQEB", errCorrupt},
		// 00 01 0161 0000000000000001 02 001c7a6b (sum ok)
		{"version 0", "AAEBYQAAAAAAAAABAgAcems", errVersion},
		// 02 01 0161 0000000000000001 02 61b80aa1 (sum ok)
		{"version 2", "AgEBYQAAAAAAAAABAmG4CqE", errVersion},
		// 01 02 0161 0000000000000001 02 635c3e5e (sum ok): two entries
		// counted, one present.
		{"count lies", "AQIBYQAAAAAAAAABAmNcPl4", errCorrupt},
		// 01 01 0161 0000000000000001 02 00 fe352234 (sum ok)
		{"trailing byte", "AQEBYQAAAAAAAAABAgD-NSI0", errCorrupt},
		// 01 01 0161 0000000000000001 80 53030981 (sum ok): the seq's
		// uvarint never ends.
		{"seq cut", "AQEBYQAAAAAAAAABgFMDCYE", errCorrupt},
		{"padded", "AQEBYQAAAAAAAAABAjDOQg4=", errEncoding},
		{"standard base64 alphabet", "AQEBbf//////////////////////ASPoTog", errEncoding},
		{"empty", "", errCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(c.text, anyTopic)
			if !errors.Is(err, c.want) {
				t.Errorf("Decode(%q) = %v, %v; want error %q", c.text, got, err, c.want)
			}
		})
	}
}
