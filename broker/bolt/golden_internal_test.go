package bolt

import (
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// Golden vectors of the stored forms, checked both ways: encoding gives
// exactly these bytes, and these bytes decode to exactly these fields. A
// layout change made to an encoder and its decoder together passes the
// round trips (FuzzMessageCodec); it fails here, and must come with a new
// formatVersion. The hex was computed apart from this package (a bitwise
// CRC-32C, hand-laid fields); spaces separate the fields. The vectors
// marked "in golden" are byte for byte what testdata/golden/format2.db
// (or format1.db) holds for that record.

// unhex decodes hex written with spaces between fields.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex in a vector: %v", err)
	}
	return b
}

const (
	t1ns = 1735787045123456789 // 2025-01-02T03:04:05.123456789Z
	t2ns = 1735787046987654321 // 2025-01-02T03:04:06.987654321Z
	// dueNs is t1 plus the default MaxAge and a nanosecond: when a message
	// stamped t1 expires.
	dueNs = t1ns + 24*3600*1e9 + 1
)

// A message value, format 2: time (8 bytes, big-endian Unix ns), uvarint
// ID length, ID, data, CRC-32C (big-endian) of all of it. Format 1 is the
// same without the checksum.
var goldenValues = []struct {
	name string
	ns   int64
	id   string
	data string
	hex  string
}{
	{"in golden: orders o-3", t1ns, "o-3", `{"n":3}`,
		"1816c11ef64eff15 03 6f2d33 7b226e223a337d 2d3e3b99"},
	{"no id", t1ns, "", `"x"`,
		"1816c11ef64eff15 00 227822 10888106"},
	{"time zero", 0, "", `null`,
		"0000000000000000 00 6e756c6c e04274ef"},
	{"time before 1970", -1, "k", `[]`,
		"ffffffffffffffff 01 6b 5b5d 221f57ed"},
	{"latest time, no data", math.MaxInt64, "only-id", ``,
		"7fffffffffffffff 07 6f6e6c792d6964 0b622ea7"},
	{"128-byte id: a two-byte length", t2ns, strings.Repeat("i", 128), `1`,
		"1816c11f656c64b1 8001 " + strings.Repeat("69", 128) + " 31 19ccb1c6"},
}

func TestGoldenMessageValues(t *testing.T) {
	for _, g := range goldenValues {
		t.Run(g.name, func(t *testing.T) {
			want := unhex(t, g.hex)
			if got := encodeMessage(g.ns, g.id, []byte(g.data)); hex.EncodeToString(got) != hex.EncodeToString(want) {
				t.Errorf("encodeMessage =\n  %x\nwant\n  %x", got, want)
			}
			ns, id, data, err := decodeMessage(want, true)
			if err != nil || ns != g.ns || string(id) != g.id || string(data) != g.data {
				t.Errorf("decodeMessage(summed) = %d, %q, %q, %v; want %d, %q, %q", ns, id, data, err, g.ns, g.id, g.data)
			}
			if ns, err := messageTime(want, true); err != nil || ns != g.ns {
				t.Errorf("messageTime(summed) = %d, %v; want %d", ns, err, g.ns)
			}
			// Format 1: the same bytes without the checksum.
			v1 := want[:len(want)-sumLen]
			if body, err := checkSum(want); err != nil || string(body) != string(v1) {
				t.Errorf("checkSum = %x, %v; want %x", body, err, v1)
			}
			ns, id, data, err = decodeMessage(v1, false)
			if err != nil || ns != g.ns || string(id) != g.id || string(data) != g.data {
				t.Errorf("decodeMessage(format 1) = %d, %q, %q, %v; want %d, %q, %q", ns, id, data, err, g.ns, g.id, g.data)
			}
			if ns, err := messageTime(v1, false); err != nil || ns != g.ns {
				t.Errorf("messageTime(format 1) = %d, %v; want %d", ns, err, g.ns)
			}
		})
	}
}

func TestGoldenMessageValuesRefused(t *testing.T) {
	cases := []struct {
		name   string
		hex    string
		summed bool
		want   error
	}{
		{"checksum's last byte changed", "1816c11ef64eff15 03 6f2d33 7b226e223a337d 2d3e3b98", true, errChecksum},
		{"a data byte changed", "1816c11ef64eff15 03 6f2d33 7b226e223a347d 2d3e3b99", true, errChecksum},
		{"shorter than a checksum", "3b99", true, errCorrupt},
		{"a checksum alone", "00000000", true, errCorrupt},
		{"format 1, shorter than a time and a length", "1816c11ef64eff15", false, errCorrupt},
		{"format 1, id longer than the value", "0000000000000000 05 6162", false, errCorrupt},
		{"format 1, length never ends", "0000000000000000 80", false, errCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := unhex(t, c.hex)
			if _, _, _, err := decodeMessage(v, c.summed); !errors.Is(err, c.want) {
				t.Errorf("decodeMessage(%x, %v) error %v, want %v", v, c.summed, err, c.want)
			}
		})
	}
}

// A topic record, format 2: epoch, head, first, bytes, lastTime, due,
// sumFrom (7 x 8 bytes, big-endian), then a CRC-32C of those 56 bytes.
// Format 1: the first six fields alone (48 bytes).
var goldenRecords = []struct {
	name string
	st   topicState
	hex  string
}{
	{"in golden: orders", topicState{epoch: 0x78c825d38a80c4f3, head: 6, first: 3, bytes: 448,
		lastTime: t2ns, due: dueNs, sumFrom: 1},
		"78c825d38a80c4f3 0000000000000006 0000000000000003 00000000000001c0 " +
			"1816c11f656c64b1 18170fb3879dff16 0000000000000001 15c616c4"},
	{"extremes: nothing stored, time before 1970", topicState{epoch: math.MaxUint64, head: 1 << 63, first: 1<<63 + 1,
		bytes: 0, lastTime: -1, due: 0, sumFrom: 1<<63 + 1},
		"ffffffffffffffff 8000000000000000 8000000000000001 0000000000000000 " +
			"ffffffffffffffff 0000000000000000 8000000000000001 f8f00d43"},
}

func TestGoldenTopicRecords(t *testing.T) {
	for _, g := range goldenRecords {
		t.Run(g.name, func(t *testing.T) {
			want := unhex(t, g.hex)
			if got := g.st.encode(); hex.EncodeToString(got) != hex.EncodeToString(want) {
				t.Errorf("encode =\n  %x\nwant\n  %x", got, want)
			}
			if got, err := decodeTopicState(want); err != nil || got != g.st {
				t.Errorf("decodeTopicState = %+v, %v; want %+v", got, err, g.st)
			}
		})
	}

	// Format 1 (in golden: orders of format1.db): no sumFrom, so no value
	// of the topic has a checksum (sumFrom = head+1); written back, it is
	// a format-2 record that says so.
	v1 := unhex(t, "ef8d589f81b06577 0000000000000006 0000000000000003 00000000000001c0 "+
		"1816c11f656c64b1 18170fb3879dff16")
	want1 := topicState{epoch: 0xef8d589f81b06577, head: 6, first: 3, bytes: 448, lastTime: t2ns, due: dueNs, sumFrom: 7}
	got, err := decodeTopicState(v1)
	if err != nil || got != want1 {
		t.Fatalf("decodeTopicState(format 1) = %+v, %v; want %+v", got, err, want1)
	}
	const rewritten = "ef8d589f81b06577 0000000000000006 0000000000000003 00000000000001c0 " +
		"1816c11f656c64b1 18170fb3879dff16 0000000000000007 e11127f3"
	if b := got.encode(); hex.EncodeToString(b) != hex.EncodeToString(unhex(t, rewritten)) {
		t.Errorf("a format-1 record written back =\n  %x\nwant\n  %s", b, rewritten)
	}
}

func TestGoldenTopicRecordsRefused(t *testing.T) {
	const tail = "00000000000001c0 1816c11f656c64b1 18170fb3879dff16 "
	cases := []struct {
		name string
		hex  string
		want error
	}{
		{"checksum changed", "78c825d38a80c4f3 0000000000000006 0000000000000003 " + tail + "0000000000000001 15c616c5", errChecksum},
		{"head changed", "78c825d38a80c4f3 0000000000000007 0000000000000003 " + tail + "0000000000000001 15c616c4", errChecksum},
		{"one byte short", "78c825d38a80c4f3 0000000000000006 0000000000000003 " + tail + "0000000000000001 15c616", errCorrupt},
		{"format 1, one byte short", "78c825d38a80c4f3 0000000000000006 0000000000000003 00000000000001c0 1816c11f656c64b1 18170fb3879dff", errCorrupt},
		// The rest have valid checksums.
		{"epoch 0", "0000000000000000 0000000000000006 0000000000000003 " + tail + "0000000000000001 a6a98fd8", errCorrupt},
		{"first past head+1", "0000000000000005 0000000000000006 0000000000000008 " + tail + "0000000000000001 455b9b2a", errCorrupt},
		{"sumFrom 0", "0000000000000005 0000000000000006 0000000000000003 " + tail + "0000000000000000 836ad1c2", errCorrupt},
		{"sumFrom past head+1", "0000000000000005 0000000000000006 0000000000000003 " + tail + "0000000000000008 09b3890d", errCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if st, err := decodeTopicState(unhex(t, c.hex)); !errors.Is(err, c.want) {
				t.Errorf("decodeTopicState = %+v, %v; want error %v", st, err, c.want)
			}
		})
	}
}

// The keys and names of the layout in doc.go: renaming a bucket or
// changing how a key sorts is a format change too.
func TestGoldenKeys(t *testing.T) {
	names := map[string][]byte{
		"meta": bucketMeta, "topics": bucketTopics, "msgs": bucketMsgs, "ids": bucketIDs, "due": bucketDue,
		"revoked": bucketRevoked, "format": keyFormat, "clean": keyClean,
	}
	for want, got := range names {
		if string(got) != want {
			t.Errorf("name %q is now %q", want, got)
		}
	}
	if string(keyTopicCount) != "topics" {
		t.Errorf("the topic count's key is %q, want \"topics\"", keyTopicCount)
	}
	if formatVersion != 2 {
		t.Errorf("formatVersion = %d: a new format needs its own golden file in testdata/golden", formatVersion)
	}

	hexOf := func(b []byte) string { return hex.EncodeToString(b) }
	strip := func(s string) string { return strings.ReplaceAll(s, " ", "") }
	keys := []struct {
		name string
		got  []byte
		want string
	}{
		{"seqKey(6)", seqKey(6), "0000000000000006"},
		{"seqKey(max)", seqKey(math.MaxUint64), "ffffffffffffffff"},
		{"format record", putUint64(formatVersion), "0000000000000002"},
		{"idKey in golden: o-3", idKey("o-3"), "00 6f2d33"},
		{"idKey in golden: ü-2", idKey("ü-2"), "00 c3bc2d32"},
		{"idKey, 1024 bytes: kept as is", idKey(strings.Repeat("L", 1024)), "00" + strings.Repeat("4c", 1024)},
		{"idKey in golden, 1025 bytes: its SHA-256", idKey(strings.Repeat("L", 1025)),
			"01 679af7b02060ef3e0a02d654a8214e0240c6d8b5429fafcff28a613fdc0fbf6f"},
		{"dueKey in golden: orders", dueKey(dueNs, "orders"), "18170fb3879dff16 6f7264657273"},
		{"dueKey before 1970: clamped to 0", dueKey(-5, "x"), "0000000000000000 78"},
	}
	for _, k := range keys {
		if hexOf(k.got) != strip(k.want) {
			t.Errorf("%s = %x, want %s", k.name, k.got, strip(k.want))
		}
	}
	if v, err := getUint64(unhex(t, "0000000000000002")); err != nil || v != 2 {
		t.Errorf("getUint64 = %d, %v; want 2", v, err)
	}
	due, topic, err := splitDueKey(unhex(t, "18170fb3879dff16 6f7264657273"))
	if err != nil || due != dueNs || topic != "orders" {
		t.Errorf("splitDueKey = %d, %q, %v; want %d, \"orders\"", due, topic, err, int64(dueNs))
	}
}

// A revocation's value in the revoked bucket: Before then Expires, each as
// Unix seconds (8 bytes, big-endian, two's complement) and nanoseconds (4
// bytes), then a CRC-32C of those 24 bytes.
var goldenRevocations = []struct {
	name            string
	before, expires time.Time
	hex             string
}{
	{"whole-second before, expires an hour later with nanoseconds",
		time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2025, 1, 2, 4, 4, 5, 123456789, time.UTC),
		"0000000067760225 00000000 0000000067761035 075bcd15 27747201"},
	{"before 1970, after 2262 (past Unix nanoseconds)",
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		"ffffffffffffffff 3b9ac9ff 0000003afff4417f 00000000 f6ee3594"},
}

func TestGoldenRevocations(t *testing.T) {
	for _, g := range goldenRevocations {
		t.Run(g.name, func(t *testing.T) {
			want := unhex(t, g.hex)
			if got := encodeRevocation(g.before, g.expires); hex.EncodeToString(got) != hex.EncodeToString(want) {
				t.Errorf("encodeRevocation =\n  %x\nwant\n  %x", got, want)
			}
			before, expires, err := decodeRevocation(want)
			if err != nil || !before.Equal(g.before) || !expires.Equal(g.expires) {
				t.Errorf("decodeRevocation = %v, %v, %v; want %v, %v", before, expires, err, g.before, g.expires)
			}
			if before.Location() != time.UTC || expires.Location() != time.UTC {
				t.Errorf("decodeRevocation gives times in %v and %v, want UTC", before.Location(), expires.Location())
			}
		})
	}
	// Another zone encodes the same instant the same way.
	paris := time.FixedZone("CET", 3600)
	g := goldenRevocations[0]
	if got := encodeRevocation(g.before.In(paris), g.expires.In(paris)); hex.EncodeToString(got) != strings.ReplaceAll(g.hex, " ", "") {
		t.Errorf("encodeRevocation in another zone = %x, want %s", got, g.hex)
	}

	refused := []struct {
		name string
		hex  string
		want error
	}{
		{"checksum changed", "0000000067760225 00000000 0000000067761035 075bcd15 27747202", errChecksum},
		{"expires changed", "0000000067760225 00000000 0000000067761036 075bcd15 27747201", errChecksum},
		{"one byte short", "0000000067760225 00000000 0000000067761035 075bcd15 277472", errCorrupt},
		{"nanoseconds of a whole second (checksum valid)", "0000000000000000 3b9aca00 0000000000000000 00000000 436b46c6", errCorrupt},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			if b, e, err := decodeRevocation(unhex(t, c.hex)); !errors.Is(err, c.want) {
				t.Errorf("decodeRevocation = %v, %v, %v; want error %v", b, e, err, c.want)
			}
		})
	}
}

// dataLen reads a stored message's data length without decoding it.
func TestDataLen(t *testing.T) {
	for _, g := range goldenValues {
		v := unhex(t, g.hex)
		if n, err := dataLen(v, true); err != nil || n != len(g.data) {
			t.Errorf("%s: dataLen(summed) = %d, %v; want %d", g.name, n, err, len(g.data))
		}
		if n, err := dataLen(v[:len(v)-sumLen], false); err != nil || n != len(g.data) {
			t.Errorf("%s: dataLen(format 1) = %d, %v; want %d", g.name, n, err, len(g.data))
		}
	}
	for _, h := range []string{"3b99", "1816c11ef64eff15", "0000000000000000 05 6162", "0000000000000000 80"} {
		if n, err := dataLen(unhex(t, h), false); !errors.Is(err, errCorrupt) {
			t.Errorf("dataLen(%s) = %d, %v; want errCorrupt", h, n, err)
		}
	}
}
