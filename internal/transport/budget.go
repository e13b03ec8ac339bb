package transport

import (
	"sync/atomic"
)

// Budget bounds the bytes of replies a server holds that clients have not
// taken yet: replies built and being written, and output that waits on a
// connection for its client to read. A reply that would take the bytes in
// use past the limit is refused (Reserve); output already built is only
// counted (Add). It is safe for concurrent use.
type Budget struct {
	used   atomic.Int64
	socket atomic.Int64
	limit  int64
}

// NewBudget returns a Budget of limit bytes; 0 or less means no limit.
func NewBudget(limit int64) *Budget {
	return &Budget{limit: limit}
}

// Reserve counts n bytes more and reports true, unless that would take
// the bytes in use past the limit: then it counts nothing and reports
// false. A reply of its own is always let through while nothing else is
// in use, so that one reply larger than the budget still goes out.
func (b *Budget) Reserve(n int) bool {
	if b.limit <= 0 {
		b.used.Add(int64(n))
		return true
	}
	if u := b.used.Add(int64(n)); u > b.limit && u != int64(n) {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

// Add counts n bytes more, or fewer for a negative n, without a check.
func (b *Budget) Add(n int) { b.used.Add(int64(n)) }

// Used returns the bytes counted now.
func (b *Budget) Used() int64 { return b.used.Load() }

// AddSocket counts n bytes more (or fewer) of replies written to sockets
// that their clients have not read yet: the kernel holds them, not the
// process, so they never refuse a reply, but they weigh with Used when
// a transport decides whether to cut slow readers.
func (b *Budget) AddSocket(n int) { b.socket.Add(int64(n)) }

// Socket returns the bytes counted by AddSocket now.
func (b *Budget) Socket() int64 { return b.socket.Load() }

// Limit returns the budget's limit in bytes; 0 means none.
func (b *Budget) Limit() int64 { return b.limit }
