package longpoll

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRevocationTTL is how long a revocation stays in force past its
// time: the longest token life it honours. See WithRevocationTTL.
const DefaultRevocationTTL = 24 * time.Hour

// WithRevocationTTL sets how long an admin disconnect's revocation stays
// in force past its time: a token of the subject issued before it and
// still valid later than that is accepted again. Set it to at least the
// longest token life you issue.
func WithRevocationTTL(d time.Duration) Option {
	return func(c *config) error {
		return positive("revocation ttl", d, func(v time.Duration) { c.revocationTTL = v })(c)
	}
}

var errTokenRevoked = &Error{Code: CodeTokenRevoked, Message: "the token was revoked; get a new one and poll again with the same cursor"}

// revocations are the revocations in force on this node, by subject. The
// map is replaced whole on each change, so the check on every request is
// one atomic load and a map lookup, with no lock.
type revocations struct {
	mu   sync.Mutex // serializes writers
	m    atomic.Pointer[map[string]Revocation]
	stop func() // the store's watch; nil without one
}

// lookup returns the subject's revocation in force at now.
func (rv *revocations) lookup(subject string, now time.Time) (Revocation, bool) {
	m := rv.m.Load()
	if m == nil {
		return Revocation{}, false
	}
	r, ok := (*m)[subject]
	if !ok || !now.Before(r.Expires) {
		return Revocation{}, false
	}
	return r, true
}

// add merges r into the set, keeping the later Before and Expires of a
// subject's revocations, and drops those no longer in force. It reports
// whether the set refuses more than before.
func (rv *revocations) add(r Revocation, now time.Time) bool {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	old := rv.m.Load()
	next := make(map[string]Revocation, 1)
	if old != nil {
		for sub, o := range *old {
			if now.Before(o.Expires) {
				next[sub] = o
			}
		}
	}
	o, had := next[r.Subject]
	merged := r
	if had {
		if o.Before.After(merged.Before) {
			merged.Before = o.Before
		}
		if o.Expires.After(merged.Expires) {
			merged.Expires = o.Expires
		}
	}
	if !now.Before(merged.Expires) {
		return false
	}
	next[r.Subject] = merged
	rv.m.Store(&next)
	return !had || merged.Before.After(o.Before)
}

// revoked reports whether p's credential is refused by a revocation: it
// was issued at or before the revocation's time, in whole seconds, or
// its issue time is unknown.
func (s *Server) revoked(p *Principal) bool {
	if p == nil {
		return false
	}
	r, ok := s.revs.lookup(p.Subject, time.Now())
	if !ok {
		return false
	}
	return p.IssuedAt.IsZero() || p.IssuedAt.Unix() <= r.Before.Unix()
}

// followRevocations loads the store's revocations and follows their
// changes, when the server authenticates and the store keeps them. A
// store that cannot be read now is logged; its watch brings the
// revocations when it can (a Revoker's watch reports what it missed).
func (s *Server) followRevocations() {
	rk, ok := s.broker.(Revoker)
	if !ok || s.cfg.auth == nil {
		return
	}
	s.revs.stop = rk.WatchRevocations(func(r Revocation) { s.applyRevocation(r) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := rk.Revocations(ctx)
	if err != nil {
		s.log.Warn("could not load the stored revocations; following their changes", "error", err)
		return
	}
	for _, r := range rs {
		s.applyRevocation(r)
	}
}

// applyRevocation puts r in force on this node and ends the held polls
// it refuses.
func (s *Server) applyRevocation(r Revocation) {
	if s.revs.add(r, time.Now()) {
		s.kickHeld()
	}
}

// revoke stores a revocation of subject's credentials issued at or
// before before, and puts it in force here at once.
func (s *Server) revoke(ctx context.Context, subject string, before time.Time) error {
	rk, ok := s.broker.(Revoker)
	if !ok {
		return errNotImplemented("revocations")
	}
	r := Revocation{Subject: subject, Before: before.UTC().Truncate(time.Second), Expires: before.Add(s.cfg.revocationTTL).UTC()}
	if err := rk.Revoke(ctx, r); err != nil {
		return err
	}
	s.applyRevocation(r)
	return nil
}

// kickHeld makes every held poll look at the server's state again: the
// node draining, its credential revoked. Polls held by a goroutine wait
// on the kick channel, which is closed and replaced; parked polls are
// visited.
func (s *Server) kickHeld() {
	ch := make(chan struct{})
	old := s.kick.Swap(&ch)
	close(*old)
	for _, p := range s.wheel.All() {
		if p.mustEnd() && p.state.CompareAndSwap(stHeld, stClaimed) {
			p.endNow()
		}
	}
}

// kicked returns the channel the next kickHeld closes.
func (s *Server) kicked() <-chan struct{} { return *s.kick.Load() }

func errNotImplemented(what string) *Error {
	return &Error{Code: CodeNotImplemented, Message: "the store does not keep " + what}
}
