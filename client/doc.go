// Package client is the Go client of a longpoll server: it publishes
// messages and subscribes to topics over protocol v1 (docs/protocol.md),
// surviving dropped connections, server restarts and its own restarts.
//
// Quick start:
//
//	c, err := client.New("http://localhost:8080")
//	defer c.Close()
//	_, err = c.Publish(ctx, "chat.room1", map[string]string{"text": "hi"})
//	for ev, err := range c.Subscribe(ctx, []string{"chat.room1"}, client.WithCursorFile("chat.cursor")) {
//		// ev.Message or ev.Gap; a non-nil err is the last item (ctx.Err() once ctx ends)
//	}
//
// # Subscriptions are iterators
//
// Subscribe returns an iter.Seq2[Event, error]. The loop that ranges over
// it does the polling itself, in its own goroutine: there is no background
// goroutine, no channel to drain, nothing to leak. Cancelling the context
// (or Client.Close) abandons the poll in flight or the backoff wait at
// once; the loop gets the rest of the reply already in hand, if any, then
// ctx.Err() (ErrClosed). Breaking out of the loop ends the subscription
// just as well.
//
// The choice of an iterator over a channel: user code never runs on a
// poller it could stall, because no poll is in flight while user code runs
// (there is one poll in flight at most, all the subscription's topics in
// one request, and the next poll leaves as soon as the loop has taken the
// reply). A slow loop is back-pressure: the server keeps the messages, and
// a loop that falls further behind than the server's retention is told so
// by an "expired" gap, never silently. A channel would have needed a
// buffer (and a policy when it fills) and a goroutine to stop.
//
// # Delivery
//
// Per topic, every message after the subscription's starting position is
// yielded exactly once and in order, across reconnects and server
// restarts, except those the server can no longer provide: those are
// reported by a gap event (Event.Gap, "expired" with the exact number
// missed, "reset" when the topic's log was lost or the cursor refused, or
// "corrupt" with the number of stored messages the store could not read
// back; a reason this client does not know is passed on as it came),
// which comes before the messages of the same reply.
//
// To resume across restarts of the program, give the subscription a
// cursor store (WithCursorFile, or WithCursorFuncs): the cursor is saved
// after each reply, once the loop has taken all its events. Delivery is
// then at least once across a crash (the unsaved reply comes again) and
// exactly once across a clean stop (cancel the context: the loop gets the
// rest of the reply in hand, then the cursor is saved).
//
// # Failures
//
// A failed poll or publish (network error, 5xx, 429, a dropped or stalled
// connection noticed at the hold plus WithPollMargin) is retried after a
// backoff with full jitter (WithBackoff), reset after each success, and
// never shorter than the Retry-After or retry_after_ms the server gave.
// (net/http would re-send at once a poll whose reused connection broke,
// bypassing the jitter: all the clients of a crashed server would come
// back in the same instant. Polls are not re-sent that way.)
// A publish carries the same ids on every attempt (random ones when the
// caller gives none), so a retry never duplicates a message. Answers that
// retrying cannot mend (400, 401 other than token_expired, 403, 404, ...)
// end the subscription or the publish with an *Error.
//
// # Transports
//
// Subscribe long-polls by default (GET /v1/poll, one request per reply).
// WithTransport(SSE) makes it hold one server-sent event stream instead
// (GET /v1/stream): messages go out as they are published, with no
// request per reply, which suits topics with a steady flow or many
// subscribers on HTTP/1.1 proxies that count requests. Polls suit
// paths where a long response is buffered or cut (some proxies, serverless
// gateways) and very long topic lists (a stream's topics go in the URL;
// a poll switches to a POST body). The events, the delivery guarantee and
// the failure handling are the same; a stream's event ids are cursors, so
// a subscription saved under one transport resumes under the other. A
// stream is saved whenever the events received so far are taken, reconnects
// from its last id when the server ends it (its time is up, a drain, a
// shutdown) or it breaks, and is given up when it is silent, not even
// pinging, for WithStreamIdleTimeout. Subscribe's doc lists the details.
//
// # Connections
//
// A Client has one http.Transport shared by its polls and publishes:
// keep-alive connections, bounded dials and TLS handshakes, a response
// header timeout past the hold, HTTP/2 over TLS, and cleartext HTTP/2
// (h2c) with WithH2C. All methods are safe for concurrent use.
//
// # Footprint
//
// The package imports the standard library and package protocol (the
// wire vocabulary: Message, Gap, error codes, topic rules) and nothing
// else of this module: a program that uses only the client links none of
// the server, its stores, their drivers (bbolt, go-redis), Prometheus or
// JWT. A test builds such a program and checks its symbols.
package client
