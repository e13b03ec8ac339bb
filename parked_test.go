package longpoll_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/internal/transport"
)

// sink records the replies of parked polls.
type sink struct {
	got chan *http.Response
	raw chan []byte
}

func newSink() *sink { return &sink{got: make(chan *http.Response, 16), raw: make(chan []byte, 16)} }

func (s *sink) Finish(head, body []byte, _ time.Time) {
	b := append(append([]byte(nil), head...), body...)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		panic("unparsable reply: " + err.Error() + ": " + string(b))
	}
	s.raw <- append([]byte(nil), body...)
	s.got <- resp
}

// next returns the next reply, failing if none is ready.
func (s *sink) next(t *testing.T) (*http.Response, []byte) {
	t.Helper()
	select {
	case resp := <-s.got:
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		<-s.raw
		return resp, body
	default:
		t.Fatal("no reply")
		return nil, nil
	}
}

func (s *sink) none(t *testing.T) {
	t.Helper()
	select {
	case resp := <-s.got:
		t.Fatalf("unexpected reply: %d", resp.StatusCode)
	default:
	}
}

// parkPoll serves a poll through the parked path; the returned poll is
// nil when it was answered at once (into rec).
func parkPoll(srv *longpoll.Server, query string, hdr http.Header, s *sink) (transport.Poll, *httptest.ResponseRecorder) {
	req := httptest.NewRequest("GET", "/v1/poll?"+query, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	return srv.Transport().ServePoll(rec, req, s), rec
}

func TestParkedPollTimesOutOnTheWheel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New()
		defer b.Close()
		srv, _ := longpoll.New(b)
		s := newSink()
		start := time.Now()
		p, rec := parkPoll(srv, "topic=w&timeout=16", http.Header{"X-Request-Id": {"rid-1"}}, s)
		if p == nil {
			t.Fatalf("answered at once: %d %s", rec.Code, rec.Body)
		}
		if srv.Waiting("w") != 1 {
			t.Fatalf("waiting = %d, want 1", srv.Waiting("w"))
		}
		// The hold ends between 15 s (16 s less the 1/16 jitter) and one
		// wheel tick after 16 s.
		time.Sleep(15*time.Second - time.Millisecond)
		synctest.Wait()
		s.none(t)
		time.Sleep(time.Second + 100*time.Millisecond)
		synctest.Wait()
		resp, body := s.next(t)
		r := decodeReply(t, body)
		if resp.StatusCode != 200 || !r.Timeout || len(r.Messages) != 0 || r.Cursor == "" {
			t.Fatalf("reply %d %s", resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Request-Id"); got != "rid-1" {
			t.Fatalf("X-Request-Id %q", got)
		}
		if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Date") == "" {
			t.Fatalf("headers %v", resp.Header)
		}
		if d := time.Since(start); d < 15*time.Second || d > 16*time.Second+100*time.Millisecond {
			t.Fatalf("held %v", d)
		}
		if srv.Waiting("w") != 0 {
			t.Fatalf("still waiting: %d", srv.Waiting("w"))
		}
	})
}

func TestParkedPollsShareOneReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New()
		defer b.Close()
		srv, _ := longpoll.New(b)
		ctx := t.Context()
		srv.Publish(ctx, longpoll.Publication{Topic: "g", Data: json.RawMessage(`0`)})
		same, other := newSink(), newSink()
		for range 3 {
			if p, rec := parkPoll(srv, "topic=g&timeout=30", nil, same); p == nil {
				t.Fatalf("answered at once: %s", rec.Body)
			}
		}
		// One poll from the start of the log: a different reply.
		if p, rec := parkPoll(srv, "topic=g&topic=h&timeout=30", nil, other); p == nil {
			t.Fatalf("answered at once: %s", rec.Body)
		}
		srv.Publish(ctx, longpoll.Publication{Topic: "g", Data: json.RawMessage(`{"n":1}`)})
		synctest.Wait()
		var first []byte
		for i := range 3 {
			resp, body := same.next(t)
			r := decodeReply(t, body)
			if resp.StatusCode != 200 || len(r.Messages) != 1 || string(r.Messages[0].Data) != `{"n":1}` || r.Messages[0].Seq != 2 {
				t.Fatalf("reply %d: %s", i, body)
			}
			if i == 0 {
				first = body
			} else if !bytes.Equal(body, first) {
				t.Fatalf("replies differ:\n%s\n%s", first, body)
			}
		}
		same.none(t)
		_, body := other.next(t)
		if r := decodeReply(t, body); len(r.Messages) != 1 || bytes.Equal(body, first) {
			t.Fatalf("two-topic reply %s", body)
		}
		if srv.Waiting("g") != 0 || srv.Waiting("h") != 0 {
			t.Fatal("polls still registered")
		}
	})
}

func TestParkedPollCancelReleaseShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New()
		defer b.Close()
		srv, _ := longpoll.New(b, longpoll.WithRetryAfter(2*time.Second))
		s := newSink()

		gone, _ := parkPoll(srv, "topic=c&timeout=30", nil, s)
		gone.Cancel()
		synctest.Wait()
		s.none(t)
		if srv.Waiting("c") != 0 {
			t.Fatal("a cancelled poll still waits")
		}

		released, _ := parkPoll(srv, "topic=c&timeout=30", nil, s)
		released.Release()
		resp, body := s.next(t)
		if r := decodeReply(t, body); resp.StatusCode != 200 || !r.Timeout {
			t.Fatalf("released: %d %s", resp.StatusCode, body)
		}

		held, _ := parkPoll(srv, "topic=c&timeout=30", nil, s)
		if held == nil {
			t.Fatal("not parked")
		}
		if err := srv.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		resp, body = s.next(t)
		var r struct {
			Cursor       string `json:"cursor"`
			RetryAfterMS int64  `json:"retry_after_ms"`
		}
		json.Unmarshal(body, &r)
		if resp.StatusCode != 200 || r.Cursor == "" || r.RetryAfterMS < 1000 || r.RetryAfterMS >= 3000 {
			t.Fatalf("at shutdown: %d %s", resp.StatusCode, body)
		}
		if p, rec := parkPoll(srv, "topic=c&timeout=30", nil, s); p != nil || rec.Code != 503 {
			t.Fatalf("after shutdown: parked=%v %d", p != nil, rec.Code)
		}
	})
}

func TestParkedPollTokenExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		secret := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(secret, []byte(strings.Repeat("x", 32)), 0o600)
		a, err := auth.New(auth.Config{SecretFile: secret})
		if err != nil {
			t.Fatal(err)
		}
		b := memory.New()
		defer b.Close()
		srv, _ := longpoll.New(b, longpoll.WithAuthenticator(a))
		tok := signToken(t, secret, "d", 10*time.Second, []string{"e"}, nil, false)
		s := newSink()
		start := time.Now()
		p, rec := parkPoll(srv, "topic=e&timeout=50", http.Header{"Authorization": {"Bearer " + tok}}, s)
		if p == nil {
			t.Fatalf("answered at once: %d %s", rec.Code, rec.Body)
		}
		time.Sleep(10*time.Second + 100*time.Millisecond)
		synctest.Wait()
		resp, body := s.next(t)
		var er errReply
		json.Unmarshal(body, &er)
		if resp.StatusCode != 401 || er.Error.Code != "token_expired" || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%d %s %v", resp.StatusCode, body, resp.Header)
		}
		if d := time.Since(start); d < 10*time.Second {
			t.Fatalf("answered after %v, before the token expired", d)
		}
	})
}

// runnerSink is a sink whose transport runs work for the server.
type runnerSink struct {
	*sink
	runs chan func()
}

func (s runnerSink) Run(f func()) { s.runs <- f }

func TestWokenPollsAreAnsweredOnTheSinksRunner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New()
		defer b.Close()
		srv, _ := longpoll.New(b)
		plain := newSink()
		s := runnerSink{sink: newSink(), runs: make(chan func(), 4)}
		if p, rec := parkPoll(srv, "topic=a&timeout=30", nil, plain); p == nil {
			t.Fatalf("answered at once: %s", rec.Body)
		}
		req := httptest.NewRequest("GET", "/v1/poll?topic=b&timeout=30", nil)
		if p := srv.Transport().ServePoll(httptest.NewRecorder(), req, s); p == nil {
			t.Fatal("answered at once")
		}
		// A sink that runs nothing gets its reply from a goroutine of the
		// server's.
		srv.Publish(t.Context(), longpoll.Publication{Topic: "a", Data: json.RawMessage(`1`)})
		synctest.Wait()
		if resp, _ := plain.next(t); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		// A Runner's gets it through Run.
		srv.Publish(t.Context(), longpoll.Publication{Topic: "b", Data: json.RawMessage(`2`)})
		synctest.Wait()
		var f func()
		select {
		case f = <-s.runs:
		default:
			t.Fatal("the delivery did not go through the sink's Run")
		}
		s.none(t)
		f()
		if resp, body := s.next(t); resp.StatusCode != 200 || len(decodeReply(t, body).Messages) != 1 {
			t.Fatalf("reply through Run: %d %s", resp.StatusCode, body)
		}
	})
}

// countingSink records, at each reply, how many polls of its topic are
// still registered.
type countingSink struct {
	srv   *longpoll.Server
	topic string
	seen  chan int
}

func (s *countingSink) Finish(head, body []byte, _ time.Time) { s.seen <- s.srv.Waiting(s.topic) }

func TestAGroupsRepliesGoOutBeforeItsBookkeeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New()
		defer b.Close()
		srv, _ := longpoll.New(b)
		s := &countingSink{srv: srv, topic: "o", seen: make(chan int, 8)}
		for range 3 {
			req := httptest.NewRequest("GET", "/v1/poll?topic=o&timeout=30", nil)
			if p := srv.Transport().ServePoll(httptest.NewRecorder(), req, s); p == nil {
				t.Fatal("answered at once")
			}
		}
		srv.Publish(t.Context(), longpoll.Publication{Topic: "o", Data: json.RawMessage(`1`)})
		synctest.Wait()
		for i := range 3 {
			select {
			case n := <-s.seen:
				if n != 3 {
					t.Fatalf("reply %d was written with %d of the group's 3 polls still registered: the bookkeeping came first", i, n)
				}
			default:
				t.Fatalf("%d replies, want 3", i)
			}
		}
		if n := srv.Waiting("o"); n != 0 {
			t.Fatalf("%d polls still registered after the fan-out", n)
		}
	})
}
