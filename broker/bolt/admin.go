package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Topics lists up to limit topics whose names start with prefix and sort
// after after, in byte order of their names, as longpoll.TopicLister says.
//
// It is one read transaction: a cursor seek in the topics bucket, whose
// keys are the names, then one step per topic listed. For each topic it
// finds the oldest message not expired by age as Stat does (a binary
// search) and sums the data lengths of the retained messages, a cursor step
// each (the stored byte count also holds topic names, IDs and overhead, so
// it cannot give the data's size; BenchmarkTopics measures a page of full
// topics). A topic whose messages have all expired is listed, with
// Retained 0, until the reclaimer forgets it. A topic whose record is
// damaged is left out and logged; DeleteTopic removes it.
func (b *Broker) Topics(ctx context.Context, prefix, after string, limit int) ([]longpoll.TopicInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, fmt.Errorf("bolt: topics: limit %d, want at least 1", limit)
	}
	now := b.cfg.now().UnixNano()
	var out []longpoll.TopicInfo
	err := b.view(func(tx *bbolt.Tx) error {
		out = out[:0]
		msgs := tx.Bucket(bucketMsgs)
		c := tx.Bucket(bucketTopics).Cursor()
		start := prefix
		if after > prefix {
			start = after
		}
		k, v := c.Seek([]byte(start))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil && len(out) < limit && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := string(k)
			st, err := decodeTopicState(v)
			if err != nil {
				b.logDamage("topics", name, fmt.Errorf("topic record: %w", err))
				continue
			}
			info, err := b.topicInfo(name, st, msgs.Bucket(k), now, false)
			if errors.Is(err, errDamaged) {
				b.logDamage("topics", name, err)
				info, err = b.topicInfo(name, st, msgs.Bucket(k), now, true)
			}
			if err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ctx.Err()) {
			return nil, err
		}
		return nil, b.readError("topics", prefix, err)
	}
	return out, nil
}

// topicInfo describes one topic. careful, after bbolt panicked on a page of
// the topic's messages, looks each message up alone and counts the ones it
// cannot reach as holding no data.
func (b *Broker) topicInfo(name string, st topicState, msgs *bbolt.Bucket, now int64, careful bool) (info longpoll.TopicInfo, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errDamaged, r)
		}
	}()
	vals := &values{msgs: msgs, careful: careful, seek: true}
	oldest := b.oldest(vals, st, now)
	info = longpoll.TopicInfo{Topic: name, Epoch: st.epoch, Head: st.head}
	if oldest > st.head {
		return info, nil
	}
	info.Oldest = oldest
	info.Retained = st.head + 1 - oldest
	info.LastPublish = fromUnixNano(st.lastTime)
	vals.seek = true
	for seq := oldest; seq <= st.head; seq++ {
		// An unreadable message counts for nothing: a reader cannot get
		// its data.
		if n, err := dataLen(vals.next(seq), seq >= st.sumFrom); err == nil {
			info.Bytes += uint64(n)
		}
	}
	return info, nil
}

// DeleteTopic drops topic's log, as longpoll.TopicDeleter says: its record,
// its messages, its idempotency IDs and its key in the due bucket go in one
// transaction, committed and synced as an Append's is, and the watchers of
// the topic are woken once it is committed. The next Append to the topic
// starts a new log with a new random epoch.
//
// The space is freed at once, not lazily: bbolt's DeleteBucket releases the
// pages of the topic's messages bucket whole (a cursor walk of its keys,
// with no write per message), and retention bounds how many there are.
// bbolt reuses the pages from the next transaction on.
//
// A topic whose record is damaged is deleted all the same (that is the way
// to be rid of it); its due key, which the damaged record no longer tells,
// is left for the reclaimer, which drops keys of topics that do not exist.
func (b *Broker) DeleteTopic(ctx context.Context, topic string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := checkTopic(topic); err != nil {
		return false, fmt.Errorf("bolt: delete topic: %w", err)
	}
	var had bool
	err := b.update("delete topic", func(tx *bbolt.Tx) error {
		var err error
		had, err = b.newStore(tx).deleteTopic(topic)
		return err
	})
	if err != nil {
		return false, err
	}
	if had {
		b.watchers.wake(topic)
	}
	return had, nil
}

// deleteTopic deletes every trace of topic; had reports whether it had a
// record.
func (s *store) deleteTopic(topic string) (had bool, err error) {
	key := []byte(topic)
	raw := s.topics.Get(key)
	if raw == nil {
		return false, nil
	}
	if st, err := decodeTopicState(raw); err == nil {
		if err := s.due.Delete(dueKey(st.due, topic)); err != nil {
			return true, err
		}
	} else {
		s.mended(topic, fmt.Errorf("a damaged topic record (%w) deleted with its topic", err))
	}
	if err := s.topics.Delete(key); err != nil {
		return true, err
	}
	for _, parent := range []*bbolt.Bucket{s.msgs, s.ids} {
		err := parent.DeleteBucket(key)
		if errors.Is(err, berrors.ErrIncompatibleValue) {
			err = parent.Delete(key) // damage: a value where a bucket belongs
		}
		if err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return true, err
		}
	}
	count, err := getUint64(s.meta.Get(keyTopicCount))
	if err != nil {
		return true, err
	}
	return true, s.meta.Put(keyTopicCount, putUint64(count-min(count, 1)))
}

// update runs fn in a write transaction of its own, beside the committer's
// (bbolt runs one at a time), committed and synced as an Append's is. A
// closed store is ErrClosed; a failed write is what Append would report.
func (b *Broker) update(op string, fn func(*bbolt.Tx) error) error {
	b.writes.RLock()
	defer b.writes.RUnlock()
	if b.closed.Load() {
		return errClosed
	}
	err := recovered(func() error { return b.db.Update(fn) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return errClosed
	}
	return b.writeError(op, err)
}
