package bolt

import (
	"bytes"
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
		gotNs, gotID, gotData, err := decodeMessage(v)
		if err != nil || gotNs != ns || string(gotID) != id || !bytes.Equal(gotData, data) {
			t.Fatalf("round trip of (%d, %q, %q) = (%d, %q, %q, %v)", ns, id, data, gotNs, gotID, gotData, err)
		}
		// Arbitrary bytes: an error or a split that fits in them.
		if ns2, id2, data2, err := decodeMessage(data); err == nil {
			if len(id2)+len(data2) > len(data) || (len(data) >= 8 && ns2 != mustTime(t, data)) {
				t.Fatalf("decodeMessage(%q) = %d, %q, %q", data, ns2, id2, data2)
			}
		}
		_, _ = decodeTopicState(data)
		_, _, _ = splitDueKey(data)
	})
}

func mustTime(t *testing.T, v []byte) int64 {
	ns, err := messageTime(v)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestTopicStateCodec(t *testing.T) {
	st := topicState{epoch: 7, head: 10, first: 4, bytes: 123, lastTime: 1893558245000000000, due: 1893558245000000001}
	got, err := decodeTopicState(st.encode())
	if err != nil || got != st {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, st)
	}
	for _, bad := range []topicState{{epoch: 0, first: 1}, {epoch: 1, first: 0}, {epoch: 1, head: 3, first: 5}} {
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
