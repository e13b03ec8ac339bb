// Package httpdate appends the HTTP Date header's value, formatting it at
// most once per second.
package httpdate

import (
	"net/http"
	"sync/atomic"
	"time"
)

type stamp struct {
	sec  int64
	text []byte
}

var last atomic.Pointer[stamp]

// Append appends now in http.TimeFormat.
func Append(buf []byte, now time.Time) []byte {
	sec := now.Unix()
	if s := last.Load(); s != nil && s.sec == sec {
		return append(buf, s.text...)
	}
	s := &stamp{sec: sec, text: now.UTC().AppendFormat(nil, http.TimeFormat)}
	last.Store(s)
	return append(buf, s.text...)
}
