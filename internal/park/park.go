// Package park connects an event-loop transport to the server's parked
// polls: a poll that must wait is kept as a small record, with no
// goroutine, and its reply is handed to the transport when it is ready.
package park

import "net/http"

// Sink receives a parked poll's reply.
type Sink interface {
	// Finish writes one complete HTTP/1.1 response: head (status line and
	// header block) followed by body. It is called at most once, from any
	// goroutine, with no server lock held, and must not block. head may
	// be reused once Finish returns; body is shared with other replies
	// and must not be modified. A poll that was cancelled gets no Finish.
	Finish(head, body []byte)
}

// Poll is a parked poll.
type Poll interface {
	// Cancel ends the poll without a reply: its client is gone.
	Cancel()
	// Release asks for the reply now, with what the poll has (a request
	// pipelined behind it is waiting). Finish follows unless the poll was
	// cancelled.
	Release()
}

// Serve serves the poll request r on srv, which must be the
// *longpoll.Server the transport fronts. When the reply is ready at once
// it is written to w and Serve returns nil; otherwise the poll is parked
// and returned, and its reply goes to sink, possibly before Serve
// returns. Package longpoll sets Serve.
var Serve func(srv http.Handler, w http.ResponseWriter, r *http.Request, sink Sink) Poll
