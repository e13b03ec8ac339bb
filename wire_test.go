package longpoll_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/longpoll/longpoll/protocol"
)

// strict decodes b into v, refusing a field v does not have.
func strict(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

// TestRepliesMatchProtocolShapes: what the server writes (poll replies by
// hand, the rest with encoding/json) decodes into package protocol's
// shapes with no field left over, and the values come through.
func TestRepliesMatchProtocolShapes(t *testing.T) {
	e := newEnv(t, nil)
	status, _, b := e.do(t.Context(), "POST", "/v1/publish", "application/json",
		`{"messages":[{"topic":"w","data":{"x":1},"id":"k1"},{"topic":"w","data":2},{"topic":"w","data":3,"id":"k1"}]}`)
	if status != 200 {
		t.Fatalf("publish: %d %s", status, b)
	}
	var pub protocol.PublishReply
	strict(t, b, &pub)
	want := []protocol.PublishReceipt{{Topic: "w", Seq: 1}, {Topic: "w", Seq: 2}, {Topic: "w", Seq: 1, Duplicate: true}}
	if len(pub.Messages) != len(want) {
		t.Fatalf("receipts %+v, want %+v", pub.Messages, want)
	}
	for i := range want {
		if pub.Messages[i] != want[i] {
			t.Errorf("receipt %d: %+v, want %+v", i, pub.Messages[i], want[i])
		}
	}

	status, _, b = e.do(t.Context(), "GET", "/v1/poll?"+url.Values{"topic": {"w"}, "since": {"earliest"}, "timeout": {"0"}}.Encode(), "", "")
	if status != 200 {
		t.Fatalf("poll: %d %s", status, b)
	}
	var poll protocol.PollReply
	strict(t, b, &poll)
	if len(poll.Messages) != 2 || poll.Cursor == "" || poll.Timeout {
		t.Fatalf("poll reply %+v", poll)
	}
	m := poll.Messages[0]
	if m.Topic != "w" || m.Seq != 1 || m.ID != "k1" || string(m.Data) != `{"x":1}` || m.Time.IsZero() {
		t.Errorf("first message %+v", m)
	}
	if m := poll.Messages[1]; m.Seq != 2 || m.ID != "" || string(m.Data) != "2" {
		t.Errorf("second message %+v", m)
	}

	status, _, b = e.do(t.Context(), "GET", "/v1/poll?topic=a%20b", "", "")
	var er protocol.ErrorReply
	strict(t, b, &er)
	if status != 400 || er.Error.Code != protocol.CodeInvalidTopic || er.Error.Message == "" || er.Error.RequestID == "" {
		t.Errorf("error reply %d %+v", status, er)
	}
}
