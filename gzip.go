package longpoll

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"runtime"
	"sync/atomic"

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

// gzipWriters are the compressors: a gzip.Writer holds about 800 KB of
// state, so there are at most as many as processors (made as needed,
// then reused), which bounds what compression holds however many replies
// go out at once. A reply that finds none free goes out plain:
// compression saves bandwidth, and is never worth memory without bound.
// BestSpeed: on poll replies it compresses as well as the default level
// in a third of the time (BenchmarkCompress).
var (
	gzipWriters = make(chan *gzip.Writer, max(2, runtime.GOMAXPROCS(0)))
	gzipMade    atomic.Int32
)

// takeGzip returns a free compressor, or nil when all are in use.
func takeGzip() *gzip.Writer {
	select {
	case zw := <-gzipWriters:
		return zw
	default:
	}
	if gzipMade.Add(1) > int32(cap(gzipWriters)) {
		gzipMade.Add(-1)
		return nil
	}
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}

// compress returns body gzip-compressed, in a new slice, or nil when that
// is no smaller or every compressor is busy.
func compress(body []byte) []byte {
	zw := takeGzip()
	if zw == nil {
		return nil
	}
	var out bytes.Buffer
	out.Grow(len(body)/4 + 64)
	zw.Reset(&out)
	_, _ = zw.Write(body) // a bytes.Buffer takes everything
	_ = zw.Close()
	zw.Reset(nil)
	gzipWriters <- zw // never blocks: no more are made than it holds
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
