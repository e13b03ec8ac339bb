package bolt

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/longpoll/longpoll"
)

// FuzzMessageCodec checks that any stored value decodes without panic and
// that encoded messages decode to what was encoded.
func FuzzMessageCodec(f *testing.F) {
	f.Add(int64(0), "", []byte(`null`))
	f.Add(int64(1893558245000000000), "id-1", []byte(`{"a":[1,2]}`))
	f.Add(int64(-1), strings.Repeat("x", 300), []byte{})
	f.Fuzz(func(t *testing.T, ns int64, id string, data []byte) {
		v := encodeMessage(ns, id, data)
		gotNs, gotID, gotData, err := decodeMessage(v, true)
		if err != nil || gotNs != ns || string(gotID) != id || !bytes.Equal(gotData, data) {
			t.Fatalf("round trip of (%d, %q, %q) = (%d, %q, %q, %v)", ns, id, data, gotNs, gotID, gotData, err)
		}
		if got, err := messageTime(v, true); err != nil || got != ns {
			t.Fatalf("messageTime = %d, %v; want %d", got, err, ns)
		}
		// Any one flipped bit is caught by the checksum.
		bit := len(id) * 8 % (len(v) * 8)
		v[bit/8] ^= 1 << (bit % 8)
		if _, _, _, err := decodeMessage(v, true); err == nil {
			t.Fatalf("bit %d of %x flipped, and it still decodes", bit, v)
		}
		// Arbitrary bytes: an error or a split that fits in them, with a
		// checksum or without (format 1).
		for _, summed := range []bool{false, true} {
			if ns2, id2, data2, err := decodeMessage(data, summed); err == nil {
				if len(id2)+len(data2) > len(data) || ns2 != mustTime(t, data, summed) {
					t.Fatalf("decodeMessage(%q, %v) = %d, %q, %q", data, summed, ns2, id2, data2)
				}
			}
		}
		_, _ = decodeTopicState(data)
		_, _, _ = splitDueKey(data)
	})
}

func mustTime(t *testing.T, v []byte, summed bool) int64 {
	ns, err := messageTime(v, summed)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// The stored forms, byte for byte (the checksums computed apart, by a
// bitwise CRC-32C): a change to them must be a new format
// version (see formatVersion).
func TestCodecGolden(t *testing.T) {
	msg := encodeMessage(1893558245000000000, "id-1", []byte(`{"a":1}`))
	const wantMsg = "1a474530fabcb200" + "04" + "69642d31" + "7b2261223a317d" + "8ace3894"
	if got := hex.EncodeToString(msg); got != wantMsg {
		t.Errorf("message value = %s, want %s", got, wantMsg)
	}
	st := topicState{epoch: 7, head: 10, first: 4, bytes: 123, lastTime: 1893558245000000000, due: 1893558245000000001, sumFrom: 2}
	const wantState = "0000000000000007" + "000000000000000a" + "0000000000000004" + "000000000000007b" +
		"1a474530fabcb200" + "1a474530fabcb201" + "0000000000000002" + "a7729934"
	if got := hex.EncodeToString(st.encode()); got != wantState {
		t.Errorf("topic record = %s, want %s", got, wantState)
	}
	// Format 1: the six fields alone, no checksum; none of its values has one.
	v1, _ := hex.DecodeString(wantState[:96])
	got, err := decodeTopicState(v1)
	if want := (topicState{epoch: 7, head: 10, first: 4, bytes: 123, lastTime: 1893558245000000000, due: 1893558245000000001, sumFrom: 11}); err != nil || got != want {
		t.Errorf("format-1 record = %+v, %v; want %+v", got, err, want)
	}
	old := []byte("\x1a\x47\x45\x30\xfa\xbc\xb2\x00\x04id-1{\"a\":1}")
	if ns, id, data, err := decodeMessage(old, false); err != nil || ns != 1893558245000000000 || string(id) != "id-1" || string(data) != `{"a":1}` {
		t.Errorf("format-1 value = %d, %q, %q, %v", ns, id, data, err)
	}
}

func TestTopicStateCodec(t *testing.T) {
	st := topicState{epoch: 7, head: 10, first: 4, bytes: 123, lastTime: 1893558245000000000, due: 1893558245000000001, sumFrom: 1}
	got, err := decodeTopicState(st.encode())
	if err != nil || got != st {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, st)
	}
	flipped := st.encode()
	flipped[20] ^= 0x10
	if _, err := decodeTopicState(flipped); err == nil {
		t.Error("decodeTopicState accepted a record with a flipped bit")
	}
	for _, bad := range []topicState{{epoch: 0, first: 1, sumFrom: 1}, {epoch: 1, first: 0, sumFrom: 1},
		{epoch: 1, head: 3, first: 5, sumFrom: 1}, {epoch: 1, head: 3, first: 1}, {epoch: 1, head: 3, first: 1, sumFrom: 5}} {
		if _, err := decodeTopicState(bad.encode()); err == nil {
			t.Errorf("decodeTopicState accepted %+v", bad)
		}
	}
	if _, err := decodeTopicState([]byte("short")); err == nil {
		t.Error("decodeTopicState accepted 5 bytes")
	}
}

func TestIDKey(t *testing.T) {
	short, long := strings.Repeat("a", 1024), strings.Repeat("a", 1025)
	if k := idKey(short); k[0] != 0 || string(k[1:]) != short {
		t.Errorf("idKey of a 1 KiB ID is not the ID")
	}
	if k := idKey(long); k[0] != 1 || len(k) != 33 {
		t.Errorf("idKey of a long ID is %d bytes", len(k))
	}
	if bytes.Equal(idKey(long), idKey(long+"b")) {
		t.Error("two long IDs share a key")
	}
}

// IDs longer than a bbolt key may be work like any other.
func TestLongIDs(t *testing.T) {
	b := openTest(t, WithMaxMessages(2))
	id := strings.Repeat("i", 40000)
	first := mustAppend(t, b, pubID("long", id, "1"))[0]
	if r := mustAppend(t, b, pubID("long", id, "2"))[0]; !r.Duplicate || r.Seq != first.Seq {
		t.Fatalf("long ID again: %+v, want duplicate of %d", r, first.Seq)
	}
	if m := mustRead(t, b, "long", longpoll.Position{}, 1).Messages; len(m) != 1 || m[0].ID != id {
		t.Fatalf("read back %d messages, want the one with the long ID", len(m))
	}
	appendN(t, b, "long", 2, 2) // drops seq 1
	if raw := inspect(t, b, "long"); raw.ids != 0 {
		t.Fatalf("%d ids stored after the message went", raw.ids)
	}
	if r := mustAppend(t, b, pubID("long", id, "4"))[0]; r.Duplicate {
		t.Fatalf("long ID of a dropped message: %+v, want a new message", r)
	}
}
