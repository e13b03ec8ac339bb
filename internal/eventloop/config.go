package eventloop

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/longpoll/longpoll/internal/transport"
)

// Config configures a Transport.
type Config struct {
	// Server is the server the transport fronts (longpoll.Server's
	// Transport): plain polls are parked on it, and the other requests
	// under /v1/ that the loop reads (publishes, topic info, preflights)
	// go straight to it. Serve refuses a Config without one.
	Server transport.Server
	// Std serves everything else, and must route /v1/ to Server too. Its
	// timeouts and header limit apply to what it serves.
	Std *http.Server
	// ReadHeaderTimeout is how long a client may take to send a poll's
	// request head; IdleTimeout how long a connection may wait between
	// requests.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// Workers run the start of each poll (authentication, the first
	// read of the broker), each publish the loop reads, and the fan-out
	// of a publish; 0 means 64.
	Workers int
	// Inline serves the polls and publishes the loop reads on the loop
	// itself rather than on a worker while the process has one processor
	// (GOMAXPROCS 1), saving two goroutine switches per request. Only for
	// a Poll whose requests never wait on I/O: the memory store, with
	// authentication done in memory. A request that blocks holds up
	// every connection while it does. A fan-out an inline publish sets
	// off runs on the loop too, after the publish's reply.
	Inline bool
	Logger *slog.Logger
}
