package longpoll

import (
	"compress/gzip"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkCompress compresses a poll reply of 1,000 chat-like messages
// (about 158 KB), as a reply to a client that takes gzip is.
func BenchmarkCompress(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"messages":[`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"topic":"backlog","seq":%d,"time":"2026-12-05T09:50:00.%09dZ","data":{"user":"user-%d","text":"message number %d in the chat room","ts":%d}}`, i+1, i, i, i, 1733390000+i)
	}
	sb.WriteString(`],"cursor":"AQEB","timeout":false,"gaps":[]}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	var n int
	for b.Loop() {
		n = len(compress(body))
	}
	b.ReportMetric(float64(n), "out-bytes")
}

// At most cap(gzipWriters) compressors exist: with all of them busy, a
// reply goes out plain rather than make another.
func TestCompressorsBounded(t *testing.T) {
	body := []byte(strings.Repeat(`{"topic":"t","seq":1}`, 100))
	if compress(body) == nil {
		t.Fatal("compress with a compressor free returned nil")
	}
	var busy []*gzip.Writer
	for range cap(gzipWriters) {
		zw := takeGzip()
		if zw == nil {
			t.Fatalf("only %d compressors, want %d", len(busy), cap(gzipWriters))
		}
		busy = append(busy, zw)
	}
	if takeGzip() != nil || compress(body) != nil {
		t.Fatal("a compressor beyond the bound was made")
	}
	for _, zw := range busy {
		gzipWriters <- zw
	}
	if int(gzipMade.Load()) != cap(gzipWriters) || compress(body) == nil {
		t.Fatalf("%d compressors made, want %d, and compress to work again", gzipMade.Load(), cap(gzipWriters))
	}
}
