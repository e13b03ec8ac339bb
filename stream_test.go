package longpoll_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

// sseEvent is one server-sent event; a comment is an event named ":".
type sseEvent struct {
	name, id, data string
	retry          string
}

// sseStream is an open GET /v1/stream.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
}

// openStream opens /v1/stream?query with the headers hdr and reads its
// events in the background.
func (e *env) openStream(query string, hdr map[string]string) *sseStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/stream?"+query, nil)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	s := &sseStream{t: e.t, resp: resp, cancel: cancel, events: make(chan sseEvent, 1000)}
	e.t.Cleanup(s.close)
	if resp.StatusCode != 200 {
		return s
	}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				s.events <- sseEvent{name: ":", data: strings.TrimSpace(line[1:])}
			default:
				k, v, _ := strings.Cut(line, ": ")
				switch k {
				case "event":
					ev.name = v
				case "id":
					ev.id = v
				case "data":
					ev.data = v
				case "retry":
					ev.retry = v
				}
			}
		}
	}()
	return s
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event that is not a comment or a retry, failing
// the test after 10 s (a bound on a hung test, not a timing check).
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatal("the stream ended")
			}
			if ev.name == ":" || ev.retry != "" && ev.name == "" {
				continue
			}
			return ev
		case <-time.After(10 * time.Second):
			s.t.Fatal("no event within 10s")
		}
	}
}

// message decodes a message event's data.
func message(t *testing.T, ev sseEvent) (topic string, seq uint64, data string) {
	t.Helper()
	var m struct {
		Topic string
		Seq   uint64
		Data  json.RawMessage
	}
	if ev.name != "message" || ev.id == "" || json.Unmarshal([]byte(ev.data), &m) != nil {
		t.Fatalf("not a message event: %+v", ev)
	}
	return m.Topic, m.Seq, string(m.Data)
}

// A stream carries each message as an event whose id is the cursor after
// it; a stream opened with Last-Event-ID, or a poll with that cursor,
// goes on from there, once and in order.
func TestStreamResume(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("a", 1)
	s := e.openStream("topic=a&topic=b&since=earliest", nil)
	h := s.resp.Header
	if s.resp.StatusCode != 200 || h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-store" || h.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("stream: %d %v", s.resp.StatusCode, h)
	}
	if topic, seq, _ := message(t, s.next()); topic != "a" || seq != 1 {
		t.Fatalf("first event: %s %d", topic, seq)
	}
	e.publish("b", 2)
	e.publish("a", 3)
	_, _, d := message(t, s.next())
	ev := s.next()
	if _, _, d2 := message(t, ev); d != "2" || d2 != "3" {
		t.Fatalf("events %s %s, want 2 3", d, d2)
	}
	after := ev.id
	s.close()

	e.publish("a", 4)
	e.publish("b", 5)
	s2 := e.openStream("topic=a&topic=b", map[string]string{"Last-Event-ID": after})
	if _, _, d := message(t, s2.next()); d != "4" {
		t.Fatalf("resumed from Last-Event-ID: first data %s, want 4", d)
	}
	ev = s2.next()
	if _, _, d := message(t, ev); d != "5" {
		t.Fatalf("resumed: second data %s, want 5", d)
	}
	// The stream's id is a poll's cursor, and a poll's cursor a stream's.
	e.publish("a", 6)
	r := e.poll(q("topic", "a", "topic", "b", "cursor", ev.id, "timeout", "0"))
	if len(r.Messages) != 1 || string(r.Messages[0].Data) != "6" {
		t.Fatalf("poll from a stream's id: %+v", r)
	}
	e.publish("b", 7)
	s3 := e.openStream("topic=a&topic=b&cursor="+url.QueryEscape(r.Cursor), nil)
	if _, _, d := message(t, s3.next()); d != "7" {
		t.Fatalf("stream from a poll's cursor: first data %s, want 7", d)
	}
}

// Errors before a stream starts are JSON error replies.
func TestStreamErrors(t *testing.T) {
	e := newEnv(t, nil, longpoll.WithMaxHeldPolls(1))
	for _, c := range []struct {
		query  string
		hdr    map[string]string
		status int
		code   string
	}{
		{"topic=bad%20name", nil, 400, "invalid_topic"},
		{"", nil, 400, "invalid_parameter"},
		{"topic=a&cursor=nope", nil, 400, "invalid_cursor"},
		{"topic=a", map[string]string{"Last-Event-ID": "nope"}, 400, "invalid_cursor"},
		{"topic=a&since=yesterday", nil, 400, "invalid_parameter"},
	} {
		s := e.openStream(c.query, c.hdr)
		var er errReply
		_ = json.NewDecoder(s.resp.Body).Decode(&er)
		if s.resp.StatusCode != c.status || er.Error.Code != c.code || s.resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("stream ?%s: %d %q, want %d %s", c.query, s.resp.StatusCode, er.Error.Code, c.status, c.code)
		}
	}
	if status, hdr, _ := e.do(context.Background(), "POST", "/v1/stream?topic=a", "", ""); status != 405 || hdr.Get("Allow") != "GET" {
		t.Errorf("POST /v1/stream: %d Allow %q", status, hdr.Get("Allow"))
	}
	// A stream counts as a held poll.
	s := e.openStream("topic=a", nil)
	if s.resp.StatusCode != 200 {
		t.Fatalf("stream: %d", s.resp.StatusCode)
	}
	e.waitWaiting("a", 1)
	if status, _, b := e.do(context.Background(), "GET", "/v1/poll?topic=a&timeout=0", "", ""); status != 503 || !strings.Contains(string(b), "overloaded") {
		t.Fatalf("poll beside a stream under max-held-polls 1: %d %s", status, b)
	}
}

// A gap is an event too, with the cursor after it; pings keep an idle
// stream alive; a stream ends at its maximum with a close event.
func TestStreamGapPingEnd(t *testing.T) {
	e := newEnv(t, []memory.Option{memory.WithMaxMessages(3)},
		longpoll.WithStreamPing(20*time.Millisecond), longpoll.WithMaxStream(2*time.Second))
	e.publish("a", 1)
	cur := e.poll(q("topic", "a", "since", "earliest", "timeout", "0")).Cursor
	for i := 2; i <= 6; i++ {
		e.publish("a", i)
	}
	s := e.openStream("topic=a&cursor="+url.QueryEscape(cur), nil)
	ev := s.next()
	if ev.name != "gap" || ev.data != `{"topic":"a","reason":"expired","missed":2}` || ev.id == "" {
		t.Fatalf("first event: %+v, want an expired gap of 2", ev)
	}
	// The gap's id resumes at the first message after it.
	r := e.poll(q("topic", "a", "cursor", ev.id, "timeout", "0", "limit", "1"))
	if len(r.Messages) != 1 || r.Messages[0].Seq != 4 {
		t.Fatalf("poll from the gap's id: %+v, want seq 4", r)
	}
	for want := uint64(4); want <= 6; want++ {
		if _, seq, _ := message(t, s.next()); seq != want {
			t.Fatalf("seq %d, want %d", seq, want)
		}
	}
	pinged := false
	for ev := range s.events {
		switch {
		case ev.name == ":" && ev.data == "ping":
			pinged = true
		case ev.name == "close":
			if ev.data != `{"reason":"max_stream"}` || !pinged {
				t.Fatalf("end of the stream: %+v, pinged %v", ev, pinged)
			}
			if _, ok := <-s.events; ok {
				t.Fatal("events after the close event")
			}
			return
		case ev.retry != "":
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	t.Fatal("the stream ended with no close event")
}

// A drain, and a disconnect of the subject, end a stream at once: the
// first with a close event telling the client to go elsewhere, the second
// with an error event carrying token_revoked.
func TestStreamDrainAndRevoke(t *testing.T) {
	a := newAuthEnv(t, longpoll.WithAdminAPI())
	alice := signIssued(t, a.secret, "alice", time.Now().Add(-time.Minute), false)
	bob := signIssued(t, a.secret, "bob", time.Now().Add(-time.Minute), false)
	admin := signIssued(t, a.secret, "ops", time.Now().Add(-time.Minute), true)
	sa := a.openStream("topic=t", bearer(alice))
	sb := a.openStream("topic=t", bearer(bob))
	a.waitWaiting("t", 2)
	if status, _, _, b := a.req("POST", "/v1/admin/disconnect", bearer(admin), `{"sub":"alice"}`); status != 200 {
		t.Fatalf("disconnect: %d %s", status, b)
	}
	ev := sa.next()
	if ev.name != "error" || !strings.Contains(ev.data, `"code":"token_revoked"`) {
		t.Fatalf("alice's stream at the disconnect: %+v", ev)
	}
	a.srv.SetDraining(true)
	ev = sb.next()
	if ev.name != "close" || !strings.Contains(ev.data, `"reason":"drain"`) || !strings.Contains(ev.data, `"retry_after_ms"`) {
		t.Fatalf("bob's stream at the drain: %+v", ev)
	}
	s := a.openStream("topic=t", bearer(bob))
	if s.resp.StatusCode != 503 {
		t.Fatalf("a stream while draining: %d", s.resp.StatusCode)
	}
}

// A stream whose client stops reading is cut once a write waits longer
// than the write margin, and lets go of what it held; the client resumes
// from its last id and misses nothing.
func TestStreamSlowReaderCut(t *testing.T) {
	e := newEnv(t, []memory.Option{memory.WithMaxBytes(64 << 20)}, longpoll.WithWriteMargin(300*time.Millisecond))
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/stream?topic=s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("stream: %q %v", line, err)
	}
	e.waitWaiting("s", 1)
	// Then it reads nothing more, while 400 messages of 32 KiB (12.5 MiB,
	// more than the sockets between hold) are published.
	big := strings.Repeat("x", 32<<10)
	for range 400 {
		e.publish("s", big)
	}
	deadline := time.Now().Add(20 * time.Second) // a bound that fails a stream never cut
	for e.srv.Waiting("s") != 0 || e.srv.ReplyBytesPending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stream was not cut: %d waiting, %d reply bytes held", e.srv.Waiting("s"), e.srv.ReplyBytesPending())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A new stream from the start gets all 400.
	s := e.openStream("topic=s&since=earliest", nil)
	for want := uint64(1); want <= 400; want++ {
		if _, seq, _ := message(t, s.next()); seq != want {
			t.Fatalf("resumed stream: seq %d, want %d", seq, want)
		}
	}
}

// Streams at the same place get a publish's events together (on the
// event loop, read and encoded once for the group), streams elsewhere and
// polls beside them get theirs, and each stream goes on from its own
// last id.
func TestStreamFanOut(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("f", 0)
	var same []*sseStream
	for range 5 {
		same = append(same, e.openStream("topic=f", nil))
	}
	behind := e.openStream("topic=f&since=earliest", nil) // at seq 0, so in a group of its own
	if _, seq, _ := message(t, behind.next()); seq != 1 {
		t.Fatalf("the stream from the start: seq %d, want 1", seq)
	}
	polls := make(chan reply, 2)
	for range 2 {
		go func() { polls <- e.poll(q("topic", "f", "timeout", "20")) }()
	}
	e.waitWaiting("f", 8)
	for i := 1; i <= 3; i++ {
		e.publish("f", i)
	}
	for k, s := range append(same, behind) {
		var last string
		for want := uint64(2); want <= 4; want++ {
			ev := s.next()
			if _, seq, data := message(t, ev); seq != want || data != fmt.Sprint(want-1) {
				t.Fatalf("stream %d: seq %d data %s, want seq %d", k, seq, data, want)
			}
			last = ev.id
		}
		// Its last id is where a poll goes on from: the head.
		if r := e.poll(q("topic", "f", "cursor", last, "timeout", "0")); len(r.Messages) != 0 || !r.Timeout {
			t.Fatalf("stream %d: a poll from its last id got %+v", k, r)
		}
	}
	for range 2 {
		if r := <-polls; len(r.Messages) == 0 || r.Messages[0].Seq != 2 {
			t.Fatalf("a poll beside the streams got %+v", r)
		}
	}
	e.waitWaiting("f", 6) // the streams wait again
}

// A stream ends when its credential expires, with an error event that
// carries token_expired, as a poll is answered 401.
func TestStreamTokenExpires(t *testing.T) {
	a := newAuthEnv(t)
	s := a.openStream("topic=t", bearer(a.token("alice", 1500*time.Millisecond, []string{"t"}, nil, false)))
	if s.resp.StatusCode != 200 {
		t.Fatalf("stream: %d", s.resp.StatusCode)
	}
	ev := s.next()
	if ev.name != "error" || !strings.Contains(ev.data, `"code":"token_expired"`) {
		t.Fatalf("at the expiry: %+v", ev)
	}
	if _, ok := <-s.events; ok {
		t.Fatal("events after the error event")
	}
}
