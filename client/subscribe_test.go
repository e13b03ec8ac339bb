package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/client"
)

func TestSubscribeDeliversMessages(t *testing.T) {
	s := startServer(t, serverConfig{})
	c := newClient(t, s.URL, fast()...)
	before := time.Now().UTC()
	if _, err := c.Publish(t.Context(), "a", json.RawMessage(`{ "x" : [1, 2.50, "<&>"] }`), client.WithID("k1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(t.Context(), "a", nil); err != nil {
		t.Fatal(err)
	}
	r, err := c.Publish(t.Context(), "b", "text")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID == "" || r.Seq != 1 || r.Topic != "b" || r.Duplicate {
		t.Fatalf("receipt %+v", r)
	}
	got := collect(t, c.Subscribe(t.Context(), []string{"a", "b"}, client.WithSince(client.Earliest)), 3)
	var lines []string
	for _, ev := range got {
		lines = append(lines, describe(ev))
		if m := ev.Message; m != nil && (m.Time.Before(before) || m.Time.Location() != time.UTC) {
			t.Errorf("message %s/%d: time %v", m.Topic, m.Seq, m.Time)
		}
	}
	want := []string{`msg a 1 {"x":[1,2.50,"<&>"]}`, `msg a 2 null`, `msg b 1 "text"`}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if got[0].Message.ID != "k1" || got[1].Message.ID == "" || got[1].Message.ID == "k1" {
		t.Errorf("ids %q %q: want the given one, then a random one", got[0].Message.ID, got[1].Message.ID)
	}
}

// firstReply returns a save hook that signals once the subscription's
// first reply was taken: its starting position is then registered.
func firstReply() (func(context.Context) (string, error), func(context.Context, string) error, <-chan struct{}) {
	ready := make(chan struct{})
	var once sync.Once
	load := func(context.Context) (string, error) { return "", nil }
	save := func(context.Context, string) error {
		once.Do(func() { close(ready) })
		return nil
	}
	return load, save, ready
}

func TestSubscribeFromHead(t *testing.T) {
	s := startServer(t, serverConfig{})
	c := newClient(t, s.URL, client.WithPollTimeout(100*time.Millisecond))
	if _, err := c.Publish(t.Context(), "t", "old"); err != nil {
		t.Fatal(err)
	}
	load, save, ready := firstReply()
	got := make(chan client.Event, 1)
	errc := make(chan error, 1)
	go func() {
		for ev, err := range c.Subscribe(t.Context(), []string{"t"}, client.WithCursorFuncs(load, save)) {
			if err != nil {
				errc <- err
				return
			}
			got <- ev
			return
		}
	}()
	<-ready // the first (empty) reply fixed the position at the head
	if _, err := c.Publish(t.Context(), "t", "new"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if d := describe(ev); d != `msg t 2 "new"` {
			t.Fatalf("got %s, want the message published after the subscription started", d)
		}
	case err := <-errc:
		t.Fatal(err)
	}
}

func TestSubscribeLongTopicListUsesPOST(t *testing.T) {
	var gets, posts atomic.Int64
	s := startServer(t, serverConfig{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/poll" {
				if r.Method == http.MethodPost {
					posts.Add(1)
				} else {
					gets.Add(1)
				}
			}
			h.ServeHTTP(w, r)
		})
	}})
	c := newClient(t, s.URL, fast()...)
	var topics []string
	for i := range 100 {
		topics = append(topics, fmt.Sprintf("room.%02d.%s", i, strings.Repeat("x", 60)))
	}
	publishN(t, c, topics[99], 1, 3)
	got := collect(t, c.Subscribe(t.Context(), topics, client.WithSince(client.Earliest)), 3)
	if n(t, got[2].Message) != 3 {
		t.Fatalf("got %s", describe(got[2]))
	}
	if posts.Load() == 0 || gets.Load() != 0 {
		t.Fatalf("polls: %d GET, %d POST; want POST only for %d topics", gets.Load(), posts.Load(), len(topics))
	}
	// A short list stays a GET.
	collect(t, c.Subscribe(t.Context(), topics[99:], client.WithSince(client.Earliest)), 1)
	if gets.Load() == 0 {
		t.Fatal("a one-topic poll was not a GET")
	}
}

func TestExpiredGapComesBeforeMessages(t *testing.T) {
	s := startServer(t, serverConfig{broker: []memory.Option{memory.WithMaxMessages(5)}})
	c := newClient(t, s.URL, fast()...)
	publishN(t, c, "t", 1, 1)
	var cursor string
	save := func(_ context.Context, cur string) error { cursor = cur; return nil }
	load := func(context.Context) (string, error) { return cursor, nil }
	got := collect(t, c.Subscribe(t.Context(), []string{"t"}, client.WithSince(client.Earliest), client.WithCursorFuncs(load, save)), 1)
	if n(t, got[0].Message) != 1 || cursor == "" {
		t.Fatalf("got %s, cursor %q", describe(got[0]), cursor)
	}
	publishN(t, c, "t", 2, 11) // retention keeps 7..11
	got = collect(t, c.Subscribe(t.Context(), []string{"t"}, client.WithCursorFuncs(load, save)), 6)
	var lines []string
	for _, ev := range got {
		lines = append(lines, describe(ev))
	}
	want := `gap t expired 5|msg t 7 {"n":7}|msg t 8 {"n":8}|msg t 9 {"n":9}|msg t 10 {"n":10}|msg t 11 {"n":11}`
	if strings.Join(lines, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(lines, "|"), want)
	}
}

func TestInvalidCursorResets(t *testing.T) {
	s := startServer(t, serverConfig{})
	c := newClient(t, s.URL, fast()...)
	publishN(t, c, "a", 1, 2)
	var saved []string
	load := func(context.Context) (string, error) { return "AQEBAAAA", nil } // base64url, but not a cursor
	save := func(_ context.Context, cur string) error { saved = append(saved, cur); return nil }
	got := collect(t, c.Subscribe(t.Context(), []string{"a", "b"}, client.WithSince(client.Earliest), client.WithCursorFuncs(load, save)), 4)
	var lines []string
	for _, ev := range got {
		lines = append(lines, describe(ev))
	}
	want := `gap a reset 0|gap b reset 0|msg a 1 {"n":1}|msg a 2 {"n":2}`
	if strings.Join(lines, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(lines, "|"), want)
	}
	if len(saved) != 2 || saved[0] != "" || saved[1] == "" {
		t.Fatalf("saved %q: want the refused cursor cleared, then the new one", saved)
	}
}

// answer returns a handler that answers every request with status and a
// protocol error of code, counting the requests.
func answer(status int, code string, header map[string]string, count *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"test answer","request_id":"r1"}}`, code)
	})
}

func TestFatalAnswersStopTheSubscription(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{
		{400, "invalid_topic"},
		{400, "too_many_topics"},
		{401, "unauthorized"},
		{401, "token_expired"}, // without WithToken nothing can refresh it
		{403, "forbidden"},
		{404, "not_found"},
		{405, "method_not_allowed"},
		{404, ""}, // not even a protocol error: a wrong URL
	} {
		t.Run(fmt.Sprintf("%d_%s", tc.status, tc.code), func(t *testing.T) {
			var count atomic.Int64
			hs := newHTTPServer(t, answer(tc.status, tc.code, nil, &count))
			c := newClient(t, hs, fast()...)
			var last error
			for _, err := range c.Subscribe(t.Context(), []string{"t"}) {
				if err == nil {
					t.Fatal("got an event")
				}
				last = err
			}
			var e *client.Error
			if !errors.As(last, &e) || e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("error %v: want an *Error %d %s", last, tc.status, tc.code)
			}
			if count.Load() != 1 {
				t.Fatalf("%d requests: want 1, no retry", count.Load())
			}
			if _, err := c.Publish(t.Context(), "t", 1); !errors.As(err, &e) || e.Status != tc.status {
				t.Fatalf("publish: %v", err)
			}
			if count.Load() != 2 {
				t.Fatalf("%d requests after the publish: want 2, no retry", count.Load())
			}
		})
	}
}

// notePolls wraps a handler to signal each poll's arrival on arrived
// (without blocking) and, when left is not nil, each poll that ended
// because its client left.
func notePolls(arrived, left chan<- struct{}) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/poll" {
				h.ServeHTTP(w, r)
				return
			}
			select {
			case arrived <- struct{}{}:
			default:
			}
			h.ServeHTTP(w, r)
			if left != nil && r.Context().Err() != nil {
				left <- struct{}{}
			}
		})
	}
}

func TestCancelEndsThePollAtOnce(t *testing.T) {
	arrived, left := make(chan struct{}, 1), make(chan struct{}, 1)
	s := startServer(t, serverConfig{wrap: notePolls(arrived, left)})
	c := newClient(t, s.URL, client.WithPollTimeout(time.Minute))
	ctx, cancel := context.WithCancel(t.Context())
	start := time.Now()
	go func() {
		<-arrived
		cancel()
	}()
	var last error
	for _, err := range c.Subscribe(ctx, []string{"t"}) {
		if err == nil {
			t.Fatal("got an event")
		}
		last = err
	}
	if !errors.Is(last, context.Canceled) {
		t.Fatalf("ended with %v, want context.Canceled", last)
	}
	<-left // the server saw the poll leave
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v to stop a poll held for a minute", d)
	}
}

func TestCloseEndsSubscriptionsAndPublishes(t *testing.T) {
	arrived := make(chan struct{}, 1)
	s := startServer(t, serverConfig{wrap: notePolls(arrived, nil)})
	c := newClient(t, s.URL, client.WithPollTimeout(time.Minute))
	errc := make(chan error, 1)
	go func() {
		for _, err := range c.Subscribe(context.Background(), []string{"t"}) {
			errc <- err
			return
		}
	}()
	<-arrived
	c.Close()
	if err := <-errc; !errors.Is(err, client.ErrClosed) {
		t.Fatalf("subscription ended with %v, want ErrClosed", err)
	}
	if _, err := c.Publish(t.Context(), "t", 1); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("publish after Close: %v", err)
	}
	for _, err := range c.Subscribe(t.Context(), []string{"t"}) {
		if !errors.Is(err, client.ErrClosed) {
			t.Fatalf("subscribe after Close: %v", err)
		}
	}
	c.Close() // harmless
}

func TestSubscribeValidates(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:1")
	for _, tc := range []struct {
		topics []string
		opts   []client.SubscribeOption
	}{
		{nil, nil},
		{[]string{"bad topic"}, nil},
		{[]string{"t"}, []client.SubscribeOption{client.WithLimit(0)}},
		{[]string{"t"}, []client.SubscribeOption{client.WithSince(7)}},
		{[]string{"t"}, []client.SubscribeOption{client.WithCursorFuncs(nil, nil)}},
	} {
		for ev, err := range c.Subscribe(t.Context(), tc.topics, tc.opts...) {
			if err == nil {
				t.Fatalf("%v: got %s", tc.topics, describe(ev))
			}
		}
	}
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://", "http://x/?q=1"} {
		if _, err := client.New(u); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
	if _, err := client.New("http://x", client.WithBackoff(time.Second, time.Millisecond)); err == nil {
		t.Error("New with cap < base succeeded")
	}
	if _, err := client.New("http://x", client.WithHTTPClient(http.DefaultClient), client.WithH2C()); err == nil {
		t.Error("New with WithHTTPClient and WithH2C succeeded")
	}
}

func TestPublishBatchAndDuplicates(t *testing.T) {
	s := startServer(t, serverConfig{})
	c := newClient(t, s.URL, fast()...)
	pubs := []client.Publication{{Topic: "a", Data: 1, ID: "x"}, {Topic: "b", Data: 2}, {Topic: "a", Data: 3}}
	rs, err := c.PublishBatch(t.Context(), pubs)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[0].Seq != 1 || rs[1].Seq != 1 || rs[2].Seq != 2 || rs[0].ID != "x" || rs[1].ID == "" {
		t.Fatalf("receipts %+v", rs)
	}
	r, err := c.Publish(t.Context(), "a", "again", client.WithID("x"))
	if err != nil || !r.Duplicate || r.Seq != 1 {
		t.Fatalf("republish: %+v, %v", r, err)
	}
	_, err = c.Publish(t.Context(), "_longpoll.x", 1)
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 403 || !errors.Is(err, &longpoll.Error{Code: longpoll.CodeReservedTopic}) {
		t.Fatalf("publish to a reserved topic: %v", err)
	}
	if _, err := c.Publish(t.Context(), "a", json.RawMessage(`{bad`)); err == nil {
		t.Fatal("published invalid JSON")
	}
	if _, err := c.Publish(t.Context(), "bad topic", 1); err == nil {
		t.Fatal("published to an invalid topic")
	}
}

func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs.URL
}
