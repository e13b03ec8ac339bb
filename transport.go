package longpoll

import (
	"net/http"

	"github.com/longpoll/longpoll/internal/transport"
)

// Transport returns the server as longpoll's own transports see it: the
// event loop parks polls on it, sends it what it reads under /v1/, and
// counts its connections' waiting output in its reply budget. It is for
// the transports in this module; wrapping the server in a handler hides
// none of this from them.
func (s *Server) Transport() transport.Server { return (*parkServer)(s) }

// parkServer is the server as a transport.Server.
type parkServer Server

func (ps *parkServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*Server)(ps).ServeHTTP(w, r)
}

func (ps *parkServer) ServePoll(w http.ResponseWriter, r *http.Request, sink transport.Sink) transport.Poll {
	if p := (*Server)(ps).serve(w, r, sink); p != nil {
		return p
	}
	return nil // not a nil *parked in a non-nil interface
}

// Bare: without an Authenticator, the server reads a poll's
// X-Request-Id, and Origin, Access-Control-Request-Method and
// X-Forwarded-For, none of which a bare poll carries.
func (ps *parkServer) Bare() bool { return ps.cfg.auth == nil }

func (ps *parkServer) Pause() { ps.fanout.wait() }

func (ps *parkServer) Budget() *transport.Budget { return ps.budget }
