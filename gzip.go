package longpoll

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"sync"

	"github.com/longpoll/longpoll/internal/transport"
)

// Compressed replies: a poll reply, a publish's receipts or an admin topic
// listing of at least the threshold (WithGzipMinSize) goes out gzip-
// compressed to a client whose Accept-Encoding takes gzip. Smaller
// replies, most of the hot path, are written as before. Every JSON reply
// says Vary: Accept-Encoding.

// DefaultGzipMinSize is the smallest reply body compressed.
const DefaultGzipMinSize = 1024

// WithGzipMinSize sets the smallest reply body, in bytes, that is gzip-
// compressed for clients that accept it.
func WithGzipMinSize(n int) Option {
	return func(c *config) error {
		return positive("gzip min size", n, func(v int) { c.gzipMin = v })(c)
	}
}

// wantsGzip reports whether the reply to r may be gzip-compressed: its
// Accept-Encoding takes gzip (read by the transport for a request it gave
// without its header).
func wantsGzip(w http.ResponseWriter, r *http.Request) bool {
	if pw := parkResponse(w); pw != nil && pw.AcceptGzip {
		return true
	}
	for _, v := range r.Header["Accept-Encoding"] {
		if transport.AcceptsGzip(v) {
			return true
		}
	}
	return false
}

// gzipWriters are reused: a gzip.Writer holds about 800 KB of state.
// BestSpeed: on poll replies it compresses as well as the default level
// in a third of the time (BenchmarkCompress).
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// compress returns body gzip-compressed, in a new slice, or nil when that
// is no smaller.
func compress(body []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(body)/4 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&out)
	_, _ = zw.Write(body) // a bytes.Buffer takes everything
	_ = zw.Close()
	zw.Reset(nil)
	gzipWriters.Put(zw)
	if out.Len() >= len(body) {
		return nil
	}
	return out.Bytes()
}

// writeJSONMaybeGzip writes a 200 JSON reply, compressed when gz and the
// body is at least the threshold.
func (s *Server) writeJSONMaybeGzip(w http.ResponseWriter, body []byte, gz bool) {
	if gz && len(body) >= s.cfg.gzipMin {
		if z := compress(body); z != nil {
			writeGzipJSON(w, z)
			return
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// writeGzipJSON writes a 200 JSON reply whose body z is gzip-compressed.
func writeGzipJSON(w http.ResponseWriter, z []byte) {
	if pw, ok := w.(*transport.Response); ok && pw.Fields() == nil {
		pw.SetJSONGzipBody(http.StatusOK, z)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	writeJSON(w, http.StatusOK, z)
}
