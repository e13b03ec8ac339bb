package prommetrics

import (
	"net/http"
	"time"

	"github.com/longpoll/longpoll"
)

// Handler wraps h, a handler served beside the longpoll.Server (the
// metrics, the pages, the profiles), so that its requests count under
// route in longpoll_http_requests_total, its duration histogram and
// longpoll_response_bytes_total, as the Server counts its own. A request
// that h hands to a handler wrapped by Pass is left for that handler to
// count.
func (m *Metrics) Handler(route longpoll.Route, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(cw, r)
		if cw.passed || !cw.wrote && r.Context().Err() != nil {
			return
		}
		m.RequestServed(route, cw.status, int(cw.bytes), time.Since(start))
	})
}

// Pass wraps next, the handler that a handler wrapped by Handler hands
// the requests it does not answer itself (web.Options.Next: the
// Server), so that those count once, where next counts them.
func Pass(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cw, ok := w.(*countingWriter); ok {
			cw.passed = true
			w = cw.ResponseWriter
		}
		next.ServeHTTP(w, r)
	})
}

// countingWriter notes a reply's status and size.
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
	passed bool
}

func (w *countingWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (a profile
// streams, and sets its own write deadline).
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
