package bolt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"
)

// formatVersion is the on-disk format this package writes and reads. Bump
// it when the layout changes incompatibly; Open refuses newer files.
const formatVersion = 1

// Root buckets; see doc.go for the layout.
var (
	bucketMeta   = []byte("meta")
	bucketTopics = []byte("topics")
	bucketMsgs   = []byte("msgs")
	bucketIDs    = []byte("ids")
	bucketDue    = []byte("due")

	keyFormat     = []byte("format")
	keyTopicCount = []byte("topics")
)

// topicState is a topic's record in the topics bucket.
//
// The messages stored for the topic are the seqs first..head; none when
// first == head+1. Some of them may be expired by age and not deleted yet.
type topicState struct {
	epoch uint64
	head  uint64
	first uint64
	// bytes is the MessageSize sum of the stored messages.
	bytes uint64
	// lastTime is the Time of the newest message, in Unix nanoseconds.
	lastTime int64
	// due is the time part of the topic's key in the due bucket: no later
	// than when the oldest stored message expires.
	due int64
}

const topicStateLen = 48

func (s *topicState) stored() uint64 { return s.head + 1 - s.first }

func (s *topicState) encode() []byte {
	b := make([]byte, topicStateLen)
	binary.BigEndian.PutUint64(b[0:], s.epoch)
	binary.BigEndian.PutUint64(b[8:], s.head)
	binary.BigEndian.PutUint64(b[16:], s.first)
	binary.BigEndian.PutUint64(b[24:], s.bytes)
	binary.BigEndian.PutUint64(b[32:], uint64(s.lastTime))
	binary.BigEndian.PutUint64(b[40:], uint64(s.due))
	return b
}

var errCorrupt = errors.New("corrupt record")

func decodeTopicState(b []byte) (topicState, error) {
	if len(b) != topicStateLen {
		return topicState{}, errCorrupt
	}
	s := topicState{
		epoch:    binary.BigEndian.Uint64(b[0:]),
		head:     binary.BigEndian.Uint64(b[8:]),
		first:    binary.BigEndian.Uint64(b[16:]),
		bytes:    binary.BigEndian.Uint64(b[24:]),
		lastTime: int64(binary.BigEndian.Uint64(b[32:])),
		due:      int64(binary.BigEndian.Uint64(b[40:])),
	}
	if s.epoch == 0 || s.first == 0 || s.first > s.head+1 {
		return topicState{}, errCorrupt
	}
	return s, nil
}

// seqKey is a message's key in its topic's bucket: seqs sort as numbers.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

// A message's value: its time in Unix nanoseconds (8 bytes), the length of
// its ID (uvarint), the ID, then the data.
func encodeMessage(unixNano int64, id string, data []byte) []byte {
	b := make([]byte, 8, 8+binary.MaxVarintLen64+len(id)+len(data))
	binary.BigEndian.PutUint64(b, uint64(unixNano))
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	return append(b, data...)
}

// decodeMessage splits a stored message; id and data alias v.
func decodeMessage(v []byte) (unixNano int64, id, data []byte, err error) {
	if len(v) < 9 {
		return 0, nil, nil, errCorrupt
	}
	unixNano = int64(binary.BigEndian.Uint64(v))
	n, w := binary.Uvarint(v[8:])
	if w <= 0 || n > uint64(len(v)-8-w) {
		return 0, nil, nil, errCorrupt
	}
	rest := v[8+w:]
	return unixNano, rest[:n], rest[n:], nil
}

// messageTime reads only the time of a stored message.
func messageTime(v []byte) (int64, error) {
	if len(v) < 9 {
		return 0, errCorrupt
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// idKey is an ID's key in its topic's ids bucket. IDs longer than a bbolt
// key may be are stored by their SHA-256; the first byte keeps the two
// kinds apart.
func idKey(id string) []byte {
	const maxPlain = 1024
	if len(id) <= maxPlain {
		b := make([]byte, 0, 1+len(id))
		return append(append(b, 0), id...)
	}
	sum := sha256.Sum256([]byte(id))
	return append([]byte{1}, sum[:]...)
}

// dueKey is a topic's key in the due bucket: the time it next needs the
// reclaimer's attention, then its name, so a cursor walks topics in the
// order they come due.
func dueKey(due int64, topic string) []byte {
	if due < 0 {
		due = 0
	}
	b := make([]byte, 8, 8+len(topic))
	binary.BigEndian.PutUint64(b, uint64(due))
	return append(b, topic...)
}

func splitDueKey(k []byte) (due int64, topic string, err error) {
	if len(k) <= 8 {
		return 0, "", errCorrupt
	}
	return int64(binary.BigEndian.Uint64(k)), string(k[8:]), nil
}

func putUint64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

func getUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, errCorrupt
	}
	return binary.BigEndian.Uint64(b), nil
}

func fromUnixNano(n int64) time.Time { return time.Unix(0, n).UTC() }
