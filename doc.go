// Package longpoll is an HTTP long-polling publish/subscribe server.
//
// Quick start: mount a Server over a Broker and publish from Go.
//
//	b := memory.New()
//	srv, _ := longpoll.New(b)
//	go http.ListenAndServe("localhost:8080", srv)
//	srv.Publish(ctx, longpoll.Publication{Topic: "news", Data: json.RawMessage(`"hi"`)})
//
// Clients poll GET /v1/poll?topic=news and receive each message of the
// topic exactly once and in order, resuming from the cursor of their last
// reply; docs/protocol.md is the wire contract.
//
// Guarantees. Each topic is an append-only log with gapless sequence
// numbers, owned by the Broker. A poll registers with the server before it
// reads the log, so a message appended while a poll starts is never
// missed. Per topic, every message after a cursor's position is delivered
// exactly once and in order over any sequence of polls; a message the
// client can no longer get (dropped by retention, or lost with its log) is
// reported as a Gap. Publications with an ID are idempotent per topic.
//
// Concurrency. A Server is safe for concurrent use. A held poll costs its
// request's goroutine and one small registration; a publish wakes only the
// polls waiting on its topic, under that topic's shard lock, and never
// blocks on a slow client. Call Shutdown before stopping the http.Server:
// net/http does not wake held requests, Shutdown answers them.
package longpoll
