// Package eventloop is longpoll's event-loop transport for cleartext HTTP/1.1
// on Linux (`--transport dense`). Connections live on an epoll loop (loop.go) instead of two
// goroutines and two bufio buffers each: a plain GET /v1/poll is parsed
// here and handed to the server, which either answers at once or parks
// the poll as a small record; the parked poll's reply is written back
// from whichever goroutine readies it, on the server's request one of
// this transport's workers (transport.Runner). GET /v1/stream is parked
// the same way, and its events are written as chunks of one reply from
// whichever goroutine readies them (transport.Streamer). A plain POST /v1/publish whose
// body arrives with its head, and the protocol's small requests (topic
// info, CORS preflights, health checks), are served here too: those
// under /v1/ straight by the server, health checks through the net/http
// server's handler.
//
// Every other request (pages, metrics, a POST poll, a slow or large
// publish, anything unusual or malformed) and every connection that
// opens with the HTTP/2 preface moves, with the bytes read so far, to the
// standard net/http server, which serves it exactly as it serves a plain
// listener: statuses, limits and timeouts stay those of net/http.
//
// It knows HTTP, not the protocol: it reaches the server only through
// the transport.Server in its Config, and imports neither the server nor
// its parts.
//
// # Connection states
//
// A connection on the loop is in one state (conn.state, under conn.mu):
//
//	accept ──> idle
//	idle ──a simple head, whole──> busy          (a worker, or the loop, serves it)
//	idle ──a head net/http must read, or the HTTP/2 preface──> handed
//	busy ──the server answers at once──> idle     (the reply written)
//	busy ──the server parks the poll──> waiting
//	waiting ──the parked poll's reply (Finish)──> idle
//	waiting ──a stream's part (Write)──> waiting   (more than its bound waiting: cut, closed)
//	busy, waiting ──more input──> the same state  (kept; a parked poll is asked to answer now,
//	                                               a stream is not: the input waits for its end)
//	idle, busy, waiting ──closed──> closed        (Connection: close after its reply, the end
//	                                               of input with nothing kept, a timeout, a
//	                                               write error, a slow reader cut; a parked
//	                                               poll's client gone cancels it)
//	handed ──net/http closes it──> closed
//
// Beside the state: flushing (idle, but the last reply is not all in the
// socket: the next request waits until it is, as under net/http, whose
// write blocks) and eof (the client's input has ended: what it sent is
// answered, then the connection closes).
//
// # Lock order
//
// Each lock below may be taken while holding those above it, never the
// other way round:
//
//  1. conn.mu: the request state (state, buf, poll, the flags above).
//  2. conn.io: the descriptor (read, write, close) and its waiting
//     output (outState); a descriptor is read, written and closed only
//     under it, so a closed descriptor's reused number is never touched.
//  3. leaves, each taken alone and holding nothing else: loop.ctl
//     (shared for epoll_ctl, exclusive to close the set), loop.mu (the
//     table of connections by descriptor), idleWheel.mu.
//
// Taken with no connection lock held: Transport.mu (the count of
// connections, closing) and stdConn.mu (a handed connection's input).
// No lock is held while a handler runs, while a reply is written to the
// socket on the writer's side of conn.io, or while a callback of the
// server (ServePoll, Release, Cancel) runs: a failed write closes the
// connection on the writing goroutine, which then calls onClose with
// conn.io released.
//
// # Pooling
//
// A request served by the loop is one pooled allocation (request): its
// http.Request, url.URL, transport.Response and parsed head. It goes back
// to the pool as soon as the request is served, that is once its reply is
// written or its poll parked, and the next request reuses it. So a
// handler (the server, or Config.Std's handler for what the loop serves
// itself) must not keep the *http.Request, its URL, or the
// ResponseWriter after it returns: it would read another request's data.
// The server copies what a parked poll keeps, and the transport copies a
// reply the socket does not take at once.
package eventloop
