package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/longpoll/longpoll/protocol"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

// Read returns up to limit messages of topic after from, as the
// longpoll.Broker contract says. Messages expired by age are left out at
// read time, whether or not the reclaimer has deleted them yet.
//
// A stored message that cannot be read back (its checksum fails, it does
// not decode, its key is missing, or bbolt panics on its page) is skipped
// and reported as a GapCorrupt. Damage to the topic's own record is an
// error that satisfies errors.Is(err, ErrDamaged).
func (b *Broker) Read(ctx context.Context, topic string, from protocol.Position, limit int) (longpoll.Page, error) {
	if err := ctx.Err(); err != nil {
		return longpoll.Page{}, err
	}
	now := b.cfg.now().UnixNano()
	page, err := b.readView(topic, from, limit, now, false)
	if errors.Is(err, errDamaged) {
		// bbolt panicked on a damaged page: read again, each message
		// looked up alone, so that only the messages it cannot reach are
		// skipped.
		b.logDamage("read", topic, err)
		page, err = b.readView(topic, from, limit, now, true)
	}
	if err != nil {
		return longpoll.Page{}, b.readError("read", topic, err)
	}
	if g := page.Gap; g != nil && g.Reason == protocol.GapCorrupt {
		b.logDamage("read", topic, fmt.Errorf("%d stored messages after seq %d cannot be read back: skipped",
			g.Missed, page.Next.Seq-g.Missed))
	}
	return page, nil
}

// readError wraps an error of a read of topic, marking damage with
// ErrDamaged (and logging it).
func (b *Broker) readError(op, topic string, err error) error {
	if isDamage(err) {
		b.logDamage(op, topic, err)
		return fmt.Errorf("bolt: %s %q: %w: %w", op, topic, ErrDamaged, err)
	}
	return fmt.Errorf("bolt: %s %q: %w", op, topic, err)
}

func isDamage(err error) bool {
	return errors.Is(err, errDamaged) || errors.Is(err, errCorrupt) || errors.Is(err, errChecksum)
}

// ErrDamaged marks the errors of calls that found the store's own records
// damaged: the server answers 500 internal. Damaged messages are not
// errors but GapCorrupt gaps.
var ErrDamaged = &protocol.Error{Code: protocol.CodeInternal, Message: "the store's data is damaged"}

func (b *Broker) readView(topic string, from protocol.Position, limit int, now int64, careful bool) (page longpoll.Page, err error) {
	err = b.view(func(tx *bbolt.Tx) error {
		page, err = b.read(tx, topic, from, limit, now, careful)
		return err
	})
	return page, err
}

func (b *Broker) read(tx *bbolt.Tx, topic string, from protocol.Position, limit int, now int64, careful bool) (longpoll.Page, error) {
	st, msgs, ok, err := getTopic(tx, topic)
	if err != nil {
		return longpoll.Page{}, err
	}
	if !ok {
		if from == (protocol.Position{}) {
			return longpoll.Page{}, nil
		}
		return longpoll.Page{Gap: &protocol.Gap{Topic: topic, Reason: protocol.GapReset}}, nil
	}
	vals := &values{msgs: msgs, careful: careful, seek: true}
	oldest := b.oldest(vals, st, now)

	var page longpoll.Page
	after := from.Seq
	switch {
	case (from == protocol.Position{}) || (from.Epoch == st.epoch && from.Seq <= st.head):
		if after+1 < oldest {
			page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapExpired, Missed: oldest - (after + 1)}
			after = oldest - 1
		}
	default:
		page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapReset}
		after = oldest - 1
	}
	if limit <= 0 || after >= st.head {
		if page.Gap == nil {
			// Nothing new: Next is where the reader was.
			page.Next = from
		} else {
			page.Next = protocol.Position{Epoch: st.epoch, Seq: after}
		}
		return page, nil
	}

	// Decode the values first (they live in the mmap until the
	// transaction ends), then copy all the data into one allocation.
	// Unreadable messages right after the position are skipped as a
	// corrupt gap; ones after a readable message end the page, for the
	// next Read to report.
	type stored struct {
		seq uint64
		v   []byte // checked, without its checksum
	}
	got := make([]stored, 0, min(uint64(limit), st.head-after))
	size := 0
	var bad uint64
	for seq := after + 1; seq <= st.head && len(got) < limit; seq++ {
		v, ok := checkStored(vals.next(seq), seq >= st.sumFrom)
		if !ok {
			if len(got) > 0 || page.Gap != nil {
				break
			}
			bad++
			continue
		}
		got = append(got, stored{seq, v})
		size += len(v)
	}
	if bad > 0 {
		page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapCorrupt, Missed: bad}
	}
	if len(got) == 0 {
		page.Next = protocol.Position{Epoch: st.epoch, Seq: after + bad}
		return page, nil
	}
	arena := make([]byte, 0, size)
	page.Messages = make([]protocol.Message, len(got))
	for i, e := range got {
		t, id, data, _ := decodeMessage(e.v, false)
		m := &page.Messages[i]
		m.Topic, m.Seq, m.Time = topic, e.seq, fromUnixNano(t)
		if len(id) > 0 {
			m.ID = string(id)
		}
		start := len(arena)
		arena = append(arena, data...)
		m.Data = arena[start:len(arena):len(arena)]
	}
	page.Next = protocol.Position{Epoch: st.epoch, Seq: got[len(got)-1].seq}
	return page, nil
}

// checkStored checks a stored message for a reader and returns it without
// its checksum; ok is false when it cannot be served. A value whose
// checksum holds is trusted; one of format 1, without, must at least hold
// JSON.
func checkStored(v []byte, summed bool) (body []byte, ok bool) {
	if summed {
		var err error
		if v, err = checkSum(v); err != nil {
			return nil, false
		}
	}
	_, _, data, err := decodeMessage(v, false)
	if err != nil || (!summed && !json.Valid(data)) {
		return nil, false
	}
	return v, true
}

// values finds a topic's stored messages by seq (none if msgs is nil).
// careful, after bbolt panicked on a damaged page, looks each one up alone
// and takes a panic for a missing message.
type values struct {
	msgs    *bbolt.Bucket
	careful bool
	c       *bbolt.Cursor
	seek    bool // the cursor is not on the last key returned
	key     [8]byte
}

// next returns the value of seq, nil if it is missing; it is fastest when
// called for consecutive seqs.
func (v *values) next(seq uint64) []byte {
	if v.careful || v.msgs == nil {
		return v.get(seq)
	}
	binary.BigEndian.PutUint64(v.key[:], seq)
	if v.c == nil {
		v.c = v.msgs.Cursor()
	}
	if !v.seek {
		if k, val := v.c.Next(); bytes.Equal(k, v.key[:]) {
			return val
		}
	}
	k, val := v.c.Seek(v.key[:])
	v.seek = !bytes.Equal(k, v.key[:])
	if v.seek {
		return nil
	}
	return val
}

// get returns the value of seq, nil if it is missing.
func (v *values) get(seq uint64) (val []byte) {
	if v.msgs == nil {
		return nil
	}
	if v.careful {
		defer func() {
			if recover() != nil {
				val = nil
			}
		}()
	}
	return v.msgs.Get(seqKey(seq))
}

// Stat describes topic's log now.
func (b *Broker) Stat(ctx context.Context, topic string) (longpoll.TopicStat, error) {
	if err := ctx.Err(); err != nil {
		return longpoll.TopicStat{}, err
	}
	now := b.cfg.now().UnixNano()
	var ts longpoll.TopicStat
	stat := func(careful bool) error {
		return b.view(func(tx *bbolt.Tx) error {
			st, msgs, ok, err := getTopic(tx, topic)
			if err != nil || !ok {
				return err
			}
			oldest := b.oldest(&values{msgs: msgs, careful: careful}, st, now)
			ts = longpoll.TopicStat{Epoch: st.epoch, Head: st.head}
			if oldest <= st.head {
				ts.Oldest = oldest
			}
			return nil
		})
	}
	err := stat(false)
	if errors.Is(err, errDamaged) {
		b.logDamage("stat", topic, err)
		err = stat(true)
	}
	if err != nil {
		return longpoll.TopicStat{}, b.readError("stat", topic, err)
	}
	return ts, nil
}

// getTopic reads a topic's state and messages bucket; ok is false if the
// topic does not exist. A nil bucket for a topic that exists is damage:
// its stored messages are all unreadable (see store.load for the repair).
func getTopic(tx *bbolt.Tx, topic string) (st topicState, msgs *bbolt.Bucket, ok bool, err error) {
	key := []byte(topic)
	raw := tx.Bucket(bucketTopics).Get(key)
	if raw == nil {
		return topicState{}, nil, false, nil
	}
	if st, err = decodeTopicState(raw); err != nil {
		return topicState{}, nil, false, fmt.Errorf("topic record: %w", err)
	}
	return st, tx.Bucket(bucketMsgs).Bucket(key), true, nil
}

// oldest returns the seq of the oldest message not expired at now, or
// head+1 if there is none. Times never decrease within a topic, so the
// stored messages are expired up to some seq and not after it: a binary
// search finds it, however far the reclaimer is behind.
func (b *Broker) oldest(vals *values, st topicState, now int64) uint64 {
	isExpired := func(seq uint64) bool {
		return expired(timeBound(vals.get, st, seq), now, b.cfg.maxAge)
	}
	if st.first > st.head || !isExpired(st.first) {
		return st.first
	}
	// Invariant: lo is expired, hi is not (head+1 counts as not).
	lo, hi := st.first, st.head+1
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if isExpired(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// timeBound returns the time of stored message seq or, if it cannot be
// read, the time of the first readable one after it (the topic's newest
// time if none is): never earlier than its own, since times never
// decrease. So an unreadable message expires no sooner than it would
// have, and no later than the next one.
func timeBound(get func(uint64) []byte, st topicState, seq uint64) int64 {
	for s := seq; s <= st.head; s++ {
		if t, err := messageTime(get(s), s >= st.sumFrom); err == nil {
			return t
		}
	}
	return st.lastTime
}
