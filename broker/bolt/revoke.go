package bolt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

// Revocations live in the revoked bucket, one key per subject (see
// encodeRevocation), written in transactions committed and synced as an
// Append's are: they survive a restart, and a Backup carries them.

// Revoke stores r, as longpoll.Revoker says: over an earlier revocation of
// the same subject it keeps the later Before and the later Expires. The
// same transaction deletes every stored revocation that has expired, so
// the bucket holds no more than the revocations in force (one that has
// expired already is deleted at once). The callbacks of WatchRevocations
// get the revocation as stored, once it is committed, if it is in force.
func (b *Broker) Revoke(ctx context.Context, r longpoll.Revocation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.Subject == "" || len(r.Subject) > maxKeySize {
		return fmt.Errorf("bolt: revoke: the subject must be 1 to %d bytes, got %d", maxKeySize, len(r.Subject))
	}
	stored := longpoll.Revocation{Subject: r.Subject, Before: r.Before.UTC(), Expires: r.Expires.UTC()}
	now := b.cfg.now()
	err := b.update("revoke", func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketRevoked)
		key := []byte(r.Subject)
		if v := bk.Get(key); v != nil {
			before, expires, err := decodeRevocation(v)
			if err != nil {
				// The new one takes the damaged one's place.
				b.log.Warn("damaged data in the store, mended", "revocation", r.Subject, "err", err)
			} else {
				if before.After(stored.Before) {
					stored.Before = before
				}
				if expires.After(stored.Expires) {
					stored.Expires = expires
				}
			}
		}
		if err := bk.Put(key, encodeRevocation(stored.Before, stored.Expires)); err != nil {
			return err
		}
		return pruneRevocations(bk, now)
	})
	if err != nil {
		return err
	}
	if stored.Expires.After(now) {
		b.revWatchers.notify(stored)
	}
	return nil
}

// pruneRevocations deletes the revocations of bk that are no longer in
// force at now, and the ones that do not decode.
func pruneRevocations(bk *bbolt.Bucket, now time.Time) error {
	var gone [][]byte
	c := bk.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if _, expires, err := decodeRevocation(v); err != nil || !expires.After(now) {
			gone = append(gone, append([]byte(nil), k...))
		}
	}
	// Deleted after the walk: a cursor may skip a key after a delete.
	for _, k := range gone {
		if err := bk.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Revocations returns the revocations in force (Expires after now), in
// byte order of their subjects. Expired ones still stored are left out
// here and deleted by the next Revoke. A revocation that does not decode
// is left out and logged.
func (b *Broker) Revocations(ctx context.Context) ([]longpoll.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := b.cfg.now()
	var out []longpoll.Revocation
	err := b.view(func(tx *bbolt.Tx) error {
		out = out[:0]
		return tx.Bucket(bucketRevoked).ForEach(func(k, v []byte) error {
			before, expires, err := decodeRevocation(v)
			if err != nil {
				b.logDamage("revocations", "", fmt.Errorf("revocation of %q: %w", k, err))
				return nil
			}
			if expires.After(now) {
				out = append(out, longpoll.Revocation{Subject: string(k), Before: before, Expires: expires})
			}
			return nil
		})
	})
	if err != nil {
		if errors.Is(err, errClosed) {
			return nil, err
		}
		return nil, b.readError("revocations", "", err)
	}
	return out, nil
}

// WatchRevocations calls fn with each revocation Revoke stores from now on,
// as stored (merged with an earlier one of its subject), on the goroutine
// of that Revoke, after the commit and outside every lock. A bolt file
// has one process, so the Revokes of this Broker are all there are. The
// callbacks of concurrent Revokes of one subject may come in either order;
// merging only ever makes the times later, so a watcher that keeps the
// later Before and Expires of what it gets ends where the store does.
// After Close, WatchRevocations does nothing.
func (b *Broker) WatchRevocations(fn func(longpoll.Revocation)) (stop func()) {
	if b.closed.Load() {
		return func() {}
	}
	return b.revWatchers.add(fn)
}

type revWatchers struct {
	mu sync.Mutex
	// fns is never changed in place, only replaced, so notify can call
	// it after unlocking.
	fns []*revWatcher
}

type revWatcher struct{ fn func(longpoll.Revocation) }

func (w *revWatchers) add(fn func(longpoll.Revocation)) (stop func()) {
	rw := &revWatcher{fn: fn}
	w.mu.Lock()
	w.fns = append(w.fns[:len(w.fns):len(w.fns)], rw)
	w.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			list := make([]*revWatcher, 0, len(w.fns))
			for _, o := range w.fns {
				if o != rw {
					list = append(list, o)
				}
			}
			w.fns = list
		})
	}
}

func (w *revWatchers) notify(r longpoll.Revocation) {
	w.mu.Lock()
	list := w.fns
	w.mu.Unlock()
	for _, rw := range list {
		rw.fn(r)
	}
}
