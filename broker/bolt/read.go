package bolt

import (
	"context"
	"fmt"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

// Read returns up to limit messages of topic after from, as the
// longpoll.Broker contract says. Messages expired by age are left out at
// read time, whether or not the reclaimer has deleted them yet.
func (b *Broker) Read(ctx context.Context, topic string, from longpoll.Position, limit int) (longpoll.Page, error) {
	if err := ctx.Err(); err != nil {
		return longpoll.Page{}, err
	}
	now := b.cfg.now().UnixNano()
	var page longpoll.Page
	err := b.view(func(tx *bbolt.Tx) error {
		var err error
		page, err = b.read(tx, topic, from, limit, now)
		return err
	})
	if err != nil {
		return longpoll.Page{}, fmt.Errorf("bolt: read %q: %w", topic, err)
	}
	return page, nil
}

func (b *Broker) read(tx *bbolt.Tx, topic string, from longpoll.Position, limit int, now int64) (longpoll.Page, error) {
	st, msgs, err := getTopic(tx, topic)
	if err != nil {
		return longpoll.Page{}, err
	}
	if msgs == nil {
		if from == (longpoll.Position{}) {
			return longpoll.Page{}, nil
		}
		return longpoll.Page{Gap: &longpoll.Gap{Topic: topic, Reason: longpoll.GapReset}}, nil
	}
	oldest, err := b.oldest(msgs, st, now)
	if err != nil {
		return longpoll.Page{}, err
	}

	var page longpoll.Page
	after := from.Seq
	switch {
	case (from == longpoll.Position{}) || (from.Epoch == st.epoch && from.Seq <= st.head):
		if after+1 < oldest {
			page.Gap = &longpoll.Gap{Topic: topic, Reason: longpoll.GapExpired, Missed: oldest - (after + 1)}
			after = oldest - 1
		}
	default:
		page.Gap = &longpoll.Gap{Topic: topic, Reason: longpoll.GapReset}
		after = oldest - 1
	}
	if limit <= 0 || after >= st.head {
		if page.Gap == nil {
			// Nothing new: Next is where the reader was.
			page.Next = from
		} else {
			page.Next = longpoll.Position{Epoch: st.epoch, Seq: after}
		}
		return page, nil
	}

	// Collect the values first (they live in the mmap until the
	// transaction ends), then copy all the data into one allocation.
	n := min(uint64(limit), st.head-after)
	type kv struct {
		seq uint64
		v   []byte
	}
	vals := make([]kv, 0, n)
	size := 0
	c := msgs.Cursor()
	for k, v := c.Seek(seqKey(after + 1)); k != nil && uint64(len(vals)) < n; k, v = c.Next() {
		seq, err := getUint64(k)
		if err != nil {
			return longpoll.Page{}, err
		}
		if seq != after+1+uint64(len(vals)) {
			return longpoll.Page{}, fmt.Errorf("seq %d: %w: message missing", after+1+uint64(len(vals)), errCorrupt)
		}
		vals = append(vals, kv{seq, v})
		size += len(v)
	}
	if uint64(len(vals)) != n {
		return longpoll.Page{}, fmt.Errorf("seq %d: %w: message missing", after+1+uint64(len(vals)), errCorrupt)
	}
	arena := make([]byte, 0, size)
	page.Messages = make([]longpoll.Message, len(vals))
	for i, e := range vals {
		t, id, data, err := decodeMessage(e.v)
		if err != nil {
			return longpoll.Page{}, fmt.Errorf("seq %d: %w", e.seq, err)
		}
		m := &page.Messages[i]
		m.Topic, m.Seq, m.Time = topic, e.seq, fromUnixNano(t)
		if len(id) > 0 {
			m.ID = string(id)
		}
		start := len(arena)
		arena = append(arena, data...)
		m.Data = arena[start:len(arena):len(arena)]
	}
	page.Next = longpoll.Position{Epoch: st.epoch, Seq: vals[len(vals)-1].seq}
	return page, nil
}

// Stat describes topic's log now.
func (b *Broker) Stat(ctx context.Context, topic string) (longpoll.TopicStat, error) {
	if err := ctx.Err(); err != nil {
		return longpoll.TopicStat{}, err
	}
	now := b.cfg.now().UnixNano()
	var ts longpoll.TopicStat
	err := b.view(func(tx *bbolt.Tx) error {
		st, msgs, err := getTopic(tx, topic)
		if err != nil || msgs == nil {
			return err
		}
		oldest, err := b.oldest(msgs, st, now)
		if err != nil {
			return err
		}
		ts = longpoll.TopicStat{Epoch: st.epoch, Head: st.head}
		if oldest <= st.head {
			ts.Oldest = oldest
		}
		return nil
	})
	if err != nil {
		return longpoll.TopicStat{}, fmt.Errorf("bolt: stat %q: %w", topic, err)
	}
	return ts, nil
}

// getTopic reads a topic's state and messages bucket; a nil bucket if the
// topic does not exist.
func getTopic(tx *bbolt.Tx, topic string) (topicState, *bbolt.Bucket, error) {
	key := []byte(topic)
	raw := tx.Bucket(bucketTopics).Get(key)
	if raw == nil {
		return topicState{}, nil, nil
	}
	st, err := decodeTopicState(raw)
	if err != nil {
		return topicState{}, nil, err
	}
	msgs := tx.Bucket(bucketMsgs).Bucket(key)
	if msgs == nil {
		return topicState{}, nil, fmt.Errorf("%w: no messages bucket", errCorrupt)
	}
	return st, msgs, nil
}

// oldest returns the seq of the oldest message not expired at now, or
// head+1 if there is none. Times never decrease within a topic, so the
// stored messages are expired up to some seq and not after it: a binary
// search finds it, however far the reclaimer is behind.
func (b *Broker) oldest(msgs *bbolt.Bucket, st topicState, now int64) (uint64, error) {
	isExpired := func(seq uint64) (bool, error) {
		t, err := messageTime(msgs.Get(seqKey(seq)))
		if err != nil {
			return false, fmt.Errorf("seq %d: %w", seq, err)
		}
		return expired(t, now, b.cfg.maxAge), nil
	}
	if st.first > st.head {
		return st.head + 1, nil
	}
	if exp, err := isExpired(st.first); err != nil || !exp {
		return st.first, err
	}
	// Invariant: lo is expired, hi is not (head+1 counts as not).
	lo, hi := st.first, st.head+1
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		exp, err := isExpired(mid)
		if err != nil {
			return 0, err
		}
		if exp {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi, nil
}
