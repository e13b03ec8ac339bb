package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/client"
)

// sse are the test client options of fast, over the SSE transport.
func sse(opts ...client.Option) []client.Option {
	return fast(append([]client.Option{client.WithTransport(client.SSE)}, opts...)...)
}

// server returns the running longpoll.Server.
func (s *testServer) server() *longpoll.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// reqLog wraps a handler to note the Last-Event-ID of each stream
// request and count the polls; opened gets a value at each stream
// request.
type reqLog struct {
	mu      sync.Mutex
	streams []string
	polls   int
	opened  chan struct{}
}

func newReqLog() *reqLog { return &reqLog{opened: make(chan struct{}, 10000)} }

func (l *reqLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/stream":
			l.mu.Lock()
			l.streams = append(l.streams, r.Header.Get("Last-Event-ID"))
			l.mu.Unlock()
			l.opened <- struct{}{}
		case "/v1/poll":
			l.mu.Lock()
			l.polls++
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (l *reqLog) counts() (streams, polls int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.streams), l.polls
}

// lastEventIDs returns the Last-Event-ID of the streams from the ith on.
func (l *reqLog) lastEventIDs(from int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.streams[from:])
}

// waitStreams waits until n streams in all were asked for.
func (l *reqLog) waitStreams(t *testing.T, n int) {
	t.Helper()
	for {
		if s, _ := l.counts(); s >= n {
			return
		}
		select {
		case <-l.opened:
		case <-t.Context().Done():
			t.Fatalf("waiting for stream %d", n)
		}
	}
}

// background runs a subscription in a goroutine until the test ends: its
// events arrive on the returned channel; ready is closed once its first
// save, so its starting position is fixed; an error fails the test.
type background struct {
	events chan client.Event
	ready  chan struct{}
	done   chan error
	cancel context.CancelFunc
	cursor atomic.Pointer[string] // the last saved
}

func subscribeInBackground(t *testing.T, c *client.Client, topics []string, opts ...client.SubscribeOption) *background {
	t.Helper()
	b := &background{events: make(chan client.Event, 1000), ready: make(chan struct{}), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	b.cancel = cancel
	var once sync.Once
	load := func(context.Context) (string, error) { return "", nil }
	save := func(_ context.Context, cur string) error {
		b.cursor.Store(&cur)
		once.Do(func() { close(b.ready) })
		return nil
	}
	opts = append(opts, client.WithCursorFuncs(load, save))
	go func() {
		for ev, err := range c.Subscribe(ctx, topics, opts...) {
			if err != nil {
				b.done <- err
				return
			}
			b.events <- ev
		}
		b.done <- nil
	}()
	t.Cleanup(func() {
		cancel()
		<-b.done
	})
	select {
	case <-b.ready:
	case err := <-b.done:
		t.Fatalf("subscription ended at start: %v", err)
	}
	return b
}

// take returns the next n events, failing the test on an error or after
// 20s.
func (b *background) take(t *testing.T, n int) []client.Event {
	t.Helper()
	var got []client.Event
	deadline := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case ev := <-b.events:
			got = append(got, ev)
		case err := <-b.done:
			t.Fatalf("subscription ended after %d of %d events: %v", len(got), n, err)
		case <-deadline:
			t.Fatalf("%d of %d events in 20s", len(got), n)
		}
	}
	return got
}

// wantSeq checks that events are the messages of topic numbered from..to
// in order, nothing else.
func wantSeq(t *testing.T, events []client.Event, topic string, from int) {
	t.Helper()
	for i, ev := range events {
		if ev.Message == nil || ev.Message.Topic != topic || n(t, ev.Message) != from+i {
			t.Fatalf("event %d: %s, want message %d of %s", i, describe(ev), from+i, topic)
		}
	}
}

// stopAfter ranges over a subscription until want events arrived, then
// cancels it and ranges on to its end: the loop saves its position as at
// any clean stop. It returns the events and the error that ended it.
func stopAfter(t *testing.T, c *client.Client, want int, topics []string, opts ...client.SubscribeOption) ([]client.Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got []client.Event
	for ev, err := range c.Subscribe(ctx, topics, opts...) {
		if err != nil {
			return got, err
		}
		got = append(got, ev)
		if len(got) == want {
			cancel()
		}
	}
	return got, nil
}

// within returns a context that ends with the test or after 20s, so that
// a subscription that stalls fails its test instead of hanging it.
func within(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// memCursor is a cursor store in memory.
type memCursor struct{ cur string }

func (m *memCursor) option() client.SubscribeOption {
	return client.WithCursorFuncs(
		func(context.Context) (string, error) { return m.cur, nil },
		func(_ context.Context, cur string) error { m.cur = cur; return nil })
}

// TestSSEYieldsWhatPollYields: the same messages, subscribed over each
// transport with a small limit, come as the same events in the same
// order.
func TestSSEYieldsWhatPollYields(t *testing.T) {
	s := startServer(t, serverConfig{})
	pub := newClient(t, s.URL, fast()...)
	var pubs []client.Publication
	for i := 1; i <= 30; i++ {
		pubs = append(pubs, client.Publication{Topic: "a", Data: map[string]int{"n": i}}, client.Publication{Topic: "b", Data: map[string]int{"n": i}})
	}
	if _, err := pub.PublishBatch(t.Context(), pubs); err != nil {
		t.Fatal(err)
	}
	var lists [2][]string
	for i, tr := range []client.Transport{client.Poll, client.SSE} {
		c := newClient(t, s.URL, fast(client.WithTransport(tr))...)
		for _, ev := range collect(t, c.Subscribe(within(t), []string{"a", "b"}, client.WithSince(client.Earliest), client.WithLimit(7)), 60) {
			lists[i] = append(lists[i], describe(ev))
		}
	}
	if !slices.Equal(lists[0], lists[1]) {
		t.Fatalf("poll yielded\n%s\nSSE yielded\n%s", strings.Join(lists[0], "\n"), strings.Join(lists[1], "\n"))
	}
	for _, topic := range []string{"a", "b"} {
		next := 1
		for _, l := range lists[1] {
			if strings.HasPrefix(l, "msg "+topic+" ") {
				if want := fmt.Sprintf(`msg %s %d {"n":%d}`, topic, next, next); l != want {
					t.Fatalf("got %s, want %s", l, want)
				}
				next++
			}
		}
	}
}

// TestSSEAcrossStreamEnds: a server that ends each stream after 50ms
// (a close event) loses and repeats nothing across the reconnects.
func TestSSEAcrossStreamEnds(t *testing.T) {
	log := newReqLog()
	s := startServer(t, serverConfig{server: []longpoll.Option{longpoll.WithMaxStream(50 * time.Millisecond)}, wrap: log.wrap})
	pub := newClient(t, s.URL, fast()...)
	c := newClient(t, s.URL, sse()...)
	b := subscribeInBackground(t, c, []string{"t"})
	const batches = 20
	for i := range batches {
		publishN(t, pub, "t", i*10+1, i*10+10)
		if i%4 == 3 {
			// Let a stream end before the next batch.
			streams, _ := log.counts()
			log.waitStreams(t, streams+1)
		}
	}
	wantSeq(t, b.take(t, batches*10), "t", 1)
	if streams, _ := log.counts(); streams < 6 {
		t.Fatalf("%d streams: the test wants the messages to cross several stream ends", streams)
	}
	ids := log.lastEventIDs(0)
	if ids[0] == "" || slices.Contains(ids, "") {
		t.Fatalf("a stream was asked for without Last-Event-ID: %q", ids)
	}
}

// TestSSEServerRestart is TestServerRestartReportsReset and
// TestServerRestartDurableNoGap over streams: a graceful stop ends them
// with a close event, a crash cuts them.
func TestSSEServerRestart(t *testing.T) {
	t.Run("graceful", func(t *testing.T) { testRestart(t, true, "", client.WithTransport(client.SSE)) })
	t.Run("crash", func(t *testing.T) { testRestart(t, false, "", client.WithTransport(client.SSE)) })
	t.Run("durable", func(t *testing.T) { testRestart(t, true, t.TempDir(), client.WithTransport(client.SSE)) })
}

// TestSSEDrain: a drain ends the stream with a close event; the client
// is refused while the node drains, and once the drain ends it goes on
// from its last id with the messages published meanwhile.
func TestSSEDrain(t *testing.T) {
	log := newReqLog()
	s := startServer(t, serverConfig{server: []longpoll.Option{longpoll.WithRetryAfter(20 * time.Millisecond)}, wrap: log.wrap})
	pub := newClient(t, s.URL, fast()...)
	c := newClient(t, s.URL, sse()...)
	b := subscribeInBackground(t, c, []string{"t"})
	publishN(t, pub, "t", 1, 5)
	wantSeq(t, b.take(t, 5), "t", 1)
	streams, _ := log.counts()
	s.server().SetDraining(true)
	publishN(t, pub, "t", 6, 10)
	log.waitStreams(t, streams+2) // back after the close event, refused, and back again
	s.server().SetDraining(false)
	wantSeq(t, b.take(t, 5), "t", 6)
	select {
	case ev := <-b.events:
		t.Fatalf("an extra event: %s", describe(ev))
	default:
	}
}

// startJWTServer starts a server under JWT auth with the admin API, and
// returns it and a signer of tokens with every grant (admin when asked),
// issued at iat and valid for ttl from now.
func startJWTServer(t *testing.T, wrap func(http.Handler) http.Handler) (*testServer, func(sub string, iat time.Time, ttl time.Duration, admin bool) string) {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("test-secret-", 4)), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{SecretFile: secret})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(sub string, iat time.Time, ttl time.Duration, admin bool) string {
		tok, err := auth.SignHS256(auth.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(iat), ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))},
			Longpoll:         auth.Grants{Subscribe: []string{">"}, Publish: []string{">"}, Admin: admin},
		}, secret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	s := startServer(t, serverConfig{server: []longpoll.Option{longpoll.WithAuthenticator(a), longpoll.WithAdminAPI()}, wrap: wrap})
	return s, sign
}

// TestSSETokenExpiredAtOpen: a stream refused 401 token_expired when it
// is asked for gets a new token from the hook and is asked for again at
// once, as a poll is.
func TestSSETokenExpiredAtOpen(t *testing.T) {
	log := newReqLog()
	s, sign := startJWTServer(t, log.wrap)
	now := time.Now()
	ops := sign("ops", now, time.Hour, true)
	pub := newClient(t, s.URL, fast(client.WithToken(func(context.Context) (string, error) { return ops, nil }))...)
	publishN(t, pub, "t", 1, 6)
	var cur memCursor
	if _, err := stopAfter(t, pub, 3, []string{"t"}, client.WithSince(client.Earliest), client.WithLimit(3), cur.option()); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	toks := []string{sign("bob", now.Add(-2*time.Hour), -time.Hour, false), sign("bob", now, time.Hour, false)}
	var hooks atomic.Int64
	c := newClient(t, s.URL, sse(client.WithToken(func(context.Context) (string, error) {
		return toks[min(hooks.Add(1), 2)-1], nil
	}))...)
	wantSeq(t, collect(t, c.Subscribe(within(t), []string{"t"}, cur.option()), 3), "t", 4)
	if h := hooks.Load(); h != 2 {
		t.Fatalf("token hook called %d times, want 2", h)
	}
	if streams, polls := log.counts(); streams != 2 || polls != 1 {
		t.Fatalf("%d streams and %d polls, want the refused stream and the one with the new token after the publisher's poll", streams, polls)
	}
}

// TestSSETokenRevoked: an admin disconnect of the subscriber's subject
// ends its stream with an error event token_revoked; the client asks its
// hook once for a new token and goes on from its last id.
func TestSSETokenRevoked(t *testing.T) {
	log := newReqLog()
	s, sign := startJWTServer(t, log.wrap)
	now := time.Now()
	before := now.Add(-30 * time.Second)
	// The first token is issued before the disconnect's time, the second
	// after it.
	toks := []string{sign("alice", now.Add(-time.Minute), time.Hour, false), sign("alice", now, time.Hour, false)}
	var hooks atomic.Int64
	hook := func(context.Context) (string, error) {
		return toks[min(hooks.Add(1), 2)-1], nil
	}
	ops := sign("ops", now.Add(-time.Minute), time.Hour, true)
	pub := newClient(t, s.URL, fast(client.WithToken(func(context.Context) (string, error) { return ops, nil }))...)
	c := newClient(t, s.URL, sse(client.WithToken(hook))...)
	b := subscribeInBackground(t, c, []string{"t"})
	publishN(t, pub, "t", 1, 5)
	wantSeq(t, b.take(t, 5), "t", 1)
	streams, _ := log.counts()

	body := fmt.Sprintf(`{"sub":"alice","before":%q}`, before.UTC().Format(time.RFC3339))
	req, _ := http.NewRequestWithContext(t.Context(), "POST", s.URL+"/v1/admin/disconnect", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ops)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("disconnect: %d %s", res.StatusCode, rb)
	}
	publishN(t, pub, "t", 6, 10)
	wantSeq(t, b.take(t, 5), "t", 6)
	if h := hooks.Load(); h != 2 {
		t.Fatalf("token hook called %d times, want 2: the first token, and one refresh at the revocation", h)
	}
	if now, _ := log.counts(); now != streams+1 {
		t.Fatalf("%d streams after the disconnect, want 1: reconnected at once with the new token", now-streams)
	}
}

// TestSSEGaps: retention that dropped messages the cursor wants is an
// "expired" gap before the messages, over each transport alike.
func TestSSEGaps(t *testing.T) {
	for _, tr := range []client.Transport{client.Poll, client.SSE} {
		t.Run(tr.String(), func(t *testing.T) {
			log := newReqLog()
			s := startServer(t, serverConfig{broker: []memory.Option{memory.WithMaxMessages(5)}, wrap: log.wrap})
			c := newClient(t, s.URL, fast(client.WithTransport(tr))...)
			publishN(t, c, "t", 1, 1)
			var cur memCursor
			if got := collect(t, c.Subscribe(within(t), []string{"t"}, client.WithSince(client.Earliest), cur.option()), 1); n(t, got[0].Message) != 1 || cur.cur == "" {
				t.Fatalf("got %s, cursor %q", describe(got[0]), cur.cur)
			}
			publishN(t, c, "t", 2, 11) // retention keeps 7..11
			var lines []string
			for _, ev := range collect(t, c.Subscribe(within(t), []string{"t"}, cur.option()), 6) {
				lines = append(lines, describe(ev))
			}
			want := `gap t expired 5|msg t 7 {"n":7}|msg t 8 {"n":8}|msg t 9 {"n":9}|msg t 10 {"n":10}|msg t 11 {"n":11}`
			if strings.Join(lines, "|") != want {
				t.Fatalf("got  %s\nwant %s", strings.Join(lines, "|"), want)
			}
			if streams, _ := log.counts(); (streams > 0) != (tr == client.SSE) {
				t.Fatalf("%d streams over %v", streams, tr)
			}
		})
	}
}

// TestSSEInvalidCursorResets: a Last-Event-ID the server refuses is a
// reset gap for every topic, then a start per since, as a refused poll
// cursor is.
func TestSSEInvalidCursorResets(t *testing.T) {
	s := startServer(t, serverConfig{})
	c := newClient(t, s.URL, sse()...)
	publishN(t, c, "a", 1, 2)
	var saved []string
	load := func(context.Context) (string, error) { return "AQEBAAAA", nil } // base64url, but not a cursor
	save := func(_ context.Context, cur string) error { saved = append(saved, cur); return nil }
	got := collect(t, c.Subscribe(within(t), []string{"a", "b"}, client.WithSince(client.Earliest), client.WithCursorFuncs(load, save)), 4)
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

// TestSSEResumesWithLastEventID: a subscription stopped cleanly saves the
// id of the last event it took; the next one sends it as Last-Event-ID
// (no poll first) and gets exactly the messages after it.
func TestSSEResumesWithLastEventID(t *testing.T) {
	log := newReqLog()
	s := startServer(t, serverConfig{wrap: log.wrap})
	pub := newClient(t, s.URL, fast()...)
	c := newClient(t, s.URL, sse()...)
	b := subscribeInBackground(t, c, []string{"t"})
	publishN(t, pub, "t", 1, 3)
	wantSeq(t, b.take(t, 3), "t", 1)
	b.cancel()
	if err := <-b.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ended with %v", err)
	}
	b.done <- nil // for the cleanup
	cur := memCursor{*b.cursor.Load()}
	streams, polls := log.counts()
	publishN(t, pub, "t", 4, 6)
	wantSeq(t, collect(t, c.Subscribe(within(t), []string{"t"}, cur.option()), 3), "t", 4)
	if ids := log.lastEventIDs(streams); ids[0] != *b.cursor.Load() {
		t.Fatalf("the resumed stream sent Last-Event-ID %q, want the saved %q", ids[0], *b.cursor.Load())
	}
	if _, p := log.counts(); p != polls {
		t.Fatalf("%d polls when resuming with a cursor, want none", p-polls)
	}
}

// TestSSECursorInterchange: one subscription goes on from poll to SSE to
// poll with one cursor store, and loses and repeats nothing.
func TestSSECursorInterchange(t *testing.T) {
	log := newReqLog()
	s := startServer(t, serverConfig{wrap: log.wrap})
	pub := newClient(t, s.URL, fast()...)
	var cur memCursor
	from := 1
	for i, tr := range []client.Transport{client.Poll, client.SSE, client.Poll, client.SSE} {
		publishN(t, pub, "t", from, from+3)
		streams, polls := log.counts()
		c := newClient(t, s.URL, fast(client.WithTransport(tr))...)
		got, err := stopAfter(t, c, 4, []string{"t"}, client.WithSince(client.Earliest), cur.option())
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d (%v): ended with %v after %d events", i, tr, err, len(got))
		}
		wantSeq(t, got, "t", from)
		nowStreams, nowPolls := log.counts()
		if i > 0 && ((nowStreams > streams) != (tr == client.SSE) || (nowPolls > polls) != (tr == client.Poll)) {
			t.Fatalf("run %d (%v): %d streams, %d polls", i, tr, nowStreams-streams, nowPolls-polls)
		}
		from += 4
	}
}

// streamNotes wraps a handler to signal each stream's arrival and each
// stream that ended because its client left.
func streamNotes(arrived, left chan<- struct{}) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/stream" {
				h.ServeHTTP(w, r)
				return
			}
			select {
			case arrived <- struct{}{}:
			default:
			}
			h.ServeHTTP(w, r)
			if r.Context().Err() != nil {
				left <- struct{}{}
			}
		})
	}
}

// TestSSECancelAndCloseEndTheStream: cancelling the context, or closing
// the Client, ends the held stream at once and the loop with ctx.Err()
// or ErrClosed.
func TestSSECancelAndCloseEndTheStream(t *testing.T) {
	arrived, left := make(chan struct{}, 1), make(chan struct{}, 2)
	s := startServer(t, serverConfig{wrap: streamNotes(arrived, left)})
	for _, how := range []string{"cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			c := newClient(t, s.URL, client.WithTransport(client.SSE))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			go func() {
				<-arrived
				if how == "cancel" {
					cancel()
				} else {
					c.Close()
				}
			}()
			var last error
			for _, err := range c.Subscribe(ctx, []string{"t"}) {
				if err == nil {
					t.Fatal("got an event")
				}
				last = err
			}
			want := context.Canceled
			if how == "close" {
				want = client.ErrClosed
			}
			if !errors.Is(last, want) {
				t.Fatalf("ended with %v, want %v", last, want)
			}
			<-left // the server saw the stream leave
		})
	}
}

// roundTripFunc answers requests without a network, for a synctest
// bubble.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSSESilentStreamIsGivenUp: a stream that answers 200 and then sends
// nothing (a proxy that buffers it, a connection gone without a word) is
// given up after WithStreamIdleTimeout of silence, pings counting as
// words, and reconnected from its last id no sooner than its retry
// field. The real server always pings; this fault needs a fake one.
func TestSSESilentStreamIsGivenUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 40 * time.Second
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var arrivals []time.Time
		var reqs []*http.Request
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			arrivals = append(arrivals, time.Now())
			reqs = append(reqs, r)
			if len(arrivals) == 3 {
				cancel()
				return nil, r.Context().Err()
			}
			pings := 0
			if len(arrivals) == 1 {
				pings = 2 // the first stream pings twice, then falls silent
			}
			pr, pw := io.Pipe()
			go func() {
				io.WriteString(pw, "retry: 1000\n\n")
				for range pings {
					select {
					case <-time.After(30 * time.Second):
						io.WriteString(pw, ": ping\n\n")
					case <-r.Context().Done():
					}
				}
				<-r.Context().Done()
				pw.CloseWithError(r.Context().Err())
			}()
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: pr, Request: r}, nil
		})
		c, err := client.New("http://longpoll.test", client.WithHTTPClient(&http.Client{Transport: rt}),
			client.WithTransport(client.SSE), client.WithStreamIdleTimeout(idle), client.WithBackoff(time.Millisecond, time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for ev, err := range c.Subscribe(ctx, []string{"t"}, client.WithCursor("AQEC")) {
			if err == nil {
				t.Fatalf("got %s", describe(ev))
			}
		}
		if len(arrivals) != 3 {
			t.Fatalf("%d requests", len(arrivals))
		}
		// Silence after the last ping, then the retry field's second.
		for i, want := range []time.Duration{60*time.Second + idle + time.Second, idle + time.Second} {
			if got := arrivals[i+1].Sub(arrivals[i]); got != want {
				t.Errorf("stream %d given up and reconnected after %v, want %v", i+1, got, want)
			}
		}
		for _, r := range reqs {
			if r.URL.Path != "/v1/stream" || r.Header.Get("Accept") != "text/event-stream" || r.Header.Get("Last-Event-ID") != "AQEC" {
				t.Fatalf("request %s %v", r.URL, r.Header)
			}
		}
	})
}

// TestSSEBreakSavesTheLastEvent: a loop that breaks on the last event the
// stream sent has taken everything up to its id, which is saved, as a
// poll's cursor is when a loop breaks on the last event of its reply.
func TestSSEBreakSavesTheLastEvent(t *testing.T) {
	s := startServer(t, serverConfig{})
	pub := newClient(t, s.URL, fast()...)
	c := newClient(t, s.URL, sse()...)
	var cur memCursor
	var once sync.Once
	var wg sync.WaitGroup
	defer wg.Wait()
	save := func(_ context.Context, v string) error {
		cur.cur = v
		// The starting position is saved: publish what the stream brings.
		once.Do(func() {
			wg.Go(func() {
				if _, err := pub.Publish(t.Context(), "t", map[string]int{"n": 1}); err != nil {
					t.Error(err)
				}
			})
		})
		return nil
	}
	load := func(context.Context) (string, error) { return cur.cur, nil }
	wantSeq(t, collect(t, c.Subscribe(within(t), []string{"t"}, client.WithCursorFuncs(load, save)), 1), "t", 1)
	wg.Wait()
	publishN(t, pub, "t", 2, 2)
	wantSeq(t, collect(t, c.Subscribe(within(t), []string{"t"}, cur.option()), 1), "t", 2)
}
