package bolt

import (
	"fmt"
	"runtime/debug"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// Background reclamation. Count and size limits are applied by Append in
// its own transaction; age is applied by readers at read time and by
// Append to the topics it touches. What remains is the space of expired
// messages in topics that nobody appends to, and the topics themselves once
// nothing is left in them: the reclaimer deletes those, in small
// transactions so that it never holds the write lock for long.
//
// It finds them through the due bucket, which holds one key per topic: the
// time it next needs attention (no later than when its oldest stored
// message expires), then its name. A pass walks the keys that are due. The
// key is written when a topic is created and rewritten only by the
// reclaimer, so appends to an existing topic never touch it: it may be
// early, never late, and an early key costs one look at the topic.

// Limits of one reclaiming transaction.
const (
	reclaimTxTopics  = 256
	reclaimTxDeletes = 2048
)

// recheckEmpty is how long a topic kept only because it is watched waits
// before the reclaimer looks at it again.
const recheckEmpty = time.Minute

type reclaimStats struct {
	// Deleted counts expired messages deleted, Forgotten topics removed.
	Deleted, Forgotten int
}

func (b *Broker) reclaimLoop() {
	defer b.wg.Done()
	tick := time.NewTicker(b.cfg.reclaimInterval)
	defer tick.Stop()
	for {
		select {
		case <-b.stopping:
			return
		case <-tick.C:
		}
		st, err := b.reclaim()
		if err != nil {
			b.log.Error("reclaiming expired messages", "err", err)
		} else if st.Deleted > 0 || st.Forgotten > 0 {
			b.log.Debug("reclaimed expired messages", "deleted", st.Deleted, "forgotten_topics", st.Forgotten)
		}
		if hook := b.cfg.afterReclaim; hook != nil {
			hook(st, err)
		}
	}
}

// reclaim deletes what is expired now, one small transaction at a time,
// until nothing is due or the broker is closing.
func (b *Broker) reclaim() (reclaimStats, error) {
	var total reclaimStats
	for {
		select {
		case <-b.stopping:
			return total, nil
		default:
		}
		now := b.cfg.now().UnixNano()
		var st reclaimStats
		var more bool
		err := b.db.Update(func(tx *bbolt.Tx) (err error) {
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("%w: %v", errDamaged, r)
				}
			}()
			st, more, err = b.reclaimTx(tx, now)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("bolt: reclaim: %w", err)
		}
		total.Deleted += st.Deleted
		total.Forgotten += st.Forgotten
		if !more {
			return total, nil
		}
	}
}

// reclaimTx deals with the topics due at now, within the limits of one
// transaction. more reports that some are left for another.
func (b *Broker) reclaimTx(tx *bbolt.Tx, now int64) (st reclaimStats, more bool, err error) {
	s := b.newStore(tx)
	var keys [][]byte
	c := s.due.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		due, _, err := splitDueKey(k)
		if err != nil {
			return st, false, err
		}
		if due > now {
			break
		}
		if len(keys) == reclaimTxTopics {
			more = true
			break
		}
		keys = append(keys, append([]byte(nil), k...))
	}

	budget := reclaimTxDeletes
	count, err := getUint64(s.meta.Get(keyTopicCount))
	if err != nil {
		return st, false, err
	}
	countChanged := false
	for _, k := range keys {
		if budget <= 0 {
			more = true
			break
		}
		due, name, _ := splitDueKey(k)
		w, err := s.load(name)
		if isDamage(err) {
			// A damaged topic record: leave the topic alone and look
			// again later, rather than stop reclaiming the others.
			b.logDamage("reclaim", name, err)
			if err := s.due.Delete(k); err != nil {
				return st, false, err
			}
			if err := s.due.Put(dueKey(addNanos(now, recheckEmpty), name), []byte{}); err != nil {
				return st, false, err
			}
			continue
		}
		if err != nil {
			return st, false, err
		}
		if w == nil || w.st.due != due {
			// No topic, or not its key: a leftover.
			if err := s.due.Delete(k); err != nil {
				return st, false, err
			}
			continue
		}
		n, err := s.dropExpired(w, now, budget)
		if err != nil {
			return st, false, err
		}
		budget -= n
		st.Deleted += n
		var next int64
		switch {
		case w.st.first <= w.st.head:
			t := timeBound(w.get, w.st, w.st.first)
			if expired(t, now, b.cfg.maxAge) {
				// Out of budget: the key stays due for the next round.
				more = true
				if err := s.save(w); err != nil {
					return st, false, err
				}
				continue
			}
			next = expiresAt(t, b.cfg.maxAge)
		case !b.watchers.watched(name):
			// Nothing left and nobody waiting on it: forget the topic.
			// An Append to it starts a new log with a new epoch.
			if err := s.forget(w, k); err != nil {
				return st, false, err
			}
			count--
			countChanged = true
			st.Forgotten++
			continue
		default:
			next = addNanos(now, recheckEmpty)
		}
		if err := s.due.Delete(k); err != nil {
			return st, false, err
		}
		w.st.due = next
		if err := s.due.Put(dueKey(next, name), []byte{}); err != nil {
			return st, false, err
		}
		if err := s.save(w); err != nil {
			return st, false, err
		}
	}
	if countChanged {
		if err := s.meta.Put(keyTopicCount, putUint64(count)); err != nil {
			return st, false, err
		}
	}
	return st, more, nil
}

// forget deletes every trace of a topic that has no stored message.
func (s *store) forget(w *topicWork, dueKey []byte) error {
	if err := s.topics.Delete(w.key); err != nil {
		return err
	}
	if err := s.msgs.DeleteBucket(w.key); err != nil {
		return err
	}
	if w.ids != nil {
		if err := s.ids.DeleteBucket(w.key); err != nil {
			return err
		}
	}
	return s.due.Delete(dueKey)
}
