package bolt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

// formatVersion is the on-disk format this package writes and reads. Bump
// it when the layout changes incompatibly; Open refuses newer files.
//
// Format 2 adds a CRC-32C to every message value and topic record it
// writes. A format-1 file is read as it is and marked format 2 when
// opened: its records and values stay until rewritten or dropped, and a
// topic record says from which seq its values carry a checksum.
//
// A root bucket that older code of the same format ignores is added
// without a new version, by Open when a file lacks it: revoked.
const formatVersion = 2

// castagnoli is CRC-32C, which amd64 and arm64 compute in hardware.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const sumLen = 4 // a CRC-32C, big-endian, after the bytes it covers

// Root buckets; see doc.go for the layout.
var (
	bucketMeta   = []byte("meta")
	bucketTopics = []byte("topics")
	bucketMsgs   = []byte("msgs")
	bucketIDs    = []byte("ids")
	bucketDue    = []byte("due")
	// bucketRevoked holds the revocations (see revoke.go). Files written
	// before it existed lack it; Open adds it.
	bucketRevoked = []byte("revoked")

	keyFormat     = []byte("format")
	keyTopicCount = []byte("topics")
	// keyClean is set by Close and deleted by Open: a store opened without
	// it was not stopped cleanly.
	keyClean = []byte("clean")
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
	// sumFrom is the first seq whose value carries a checksum: 1 for a
	// topic created in format 2, the head+1 of the day it was first read
	// for one created in format 1.
	sumFrom uint64
}

const (
	// topicStateLen1 is a format-1 record: the six fields, no checksum.
	topicStateLen1 = 48
	// topicStateLen is a format-2 record: the six fields, sumFrom, then a
	// checksum of the 56 bytes before it.
	topicStateLen = 60
)

func (s *topicState) stored() uint64 { return s.head + 1 - s.first }

func (s *topicState) encode() []byte {
	b := make([]byte, topicStateLen)
	binary.BigEndian.PutUint64(b[0:], s.epoch)
	binary.BigEndian.PutUint64(b[8:], s.head)
	binary.BigEndian.PutUint64(b[16:], s.first)
	binary.BigEndian.PutUint64(b[24:], s.bytes)
	binary.BigEndian.PutUint64(b[32:], uint64(s.lastTime))
	binary.BigEndian.PutUint64(b[40:], uint64(s.due))
	binary.BigEndian.PutUint64(b[48:], s.sumFrom)
	binary.BigEndian.PutUint32(b[56:], crc32.Checksum(b[:56], castagnoli))
	return b
}

var (
	errCorrupt  = errors.New("corrupt record")
	errChecksum = errors.New("checksum mismatch")
)

func decodeTopicState(b []byte) (topicState, error) {
	switch len(b) {
	case topicStateLen:
		if binary.BigEndian.Uint32(b[56:]) != crc32.Checksum(b[:56], castagnoli) {
			return topicState{}, errChecksum
		}
	case topicStateLen1:
	default:
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
	if len(b) == topicStateLen1 {
		s.sumFrom = s.head + 1 // no value of a format-1 topic has a checksum
	} else {
		s.sumFrom = binary.BigEndian.Uint64(b[48:])
	}
	if s.epoch == 0 || s.first == 0 || s.first > s.head+1 || s.sumFrom == 0 || s.sumFrom > s.head+1 {
		return topicState{}, errCorrupt
	}
	return s, nil
}

// seqKey is a message's key in its topic's bucket: seqs sort as numbers.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

// A message's value: its time in Unix nanoseconds (8 bytes), the length of
// its ID (uvarint), the ID, the data, then (format 2) a CRC-32C of all
// that. A value of format 1 has no checksum: the topic's sumFrom tells.
func encodeMessage(unixNano int64, id string, data []byte) []byte {
	b := make([]byte, 8, 8+binary.MaxVarintLen64+len(id)+len(data)+sumLen)
	binary.BigEndian.PutUint64(b, uint64(unixNano))
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// checkSum verifies the checksum that ends v and returns what it covers.
func checkSum(v []byte) ([]byte, error) {
	if len(v) < sumLen {
		return nil, errCorrupt
	}
	body := v[:len(v)-sumLen]
	if binary.BigEndian.Uint32(v[len(body):]) != crc32.Checksum(body, castagnoli) {
		return nil, errChecksum
	}
	return body, nil
}

// decodeMessage splits a stored message, after checking its checksum if
// summed; id and data alias v.
func decodeMessage(v []byte, summed bool) (unixNano int64, id, data []byte, err error) {
	if summed {
		if v, err = checkSum(v); err != nil {
			return 0, nil, nil, err
		}
	}
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

// messageTime reads only the time of a stored message, after checking its
// checksum if summed.
func messageTime(v []byte, summed bool) (int64, error) {
	if summed {
		var err error
		if v, err = checkSum(v); err != nil {
			return 0, err
		}
	}
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

// dataLen returns the length of a stored message's data, reading only
// its lengths: the checksum of a summed value is not checked.
func dataLen(v []byte, summed bool) (int, error) {
	if summed {
		if len(v) < sumLen {
			return 0, errCorrupt
		}
		v = v[:len(v)-sumLen]
	}
	if len(v) < 9 {
		return 0, errCorrupt
	}
	n, w := binary.Uvarint(v[8:])
	if w <= 0 || n > uint64(len(v)-8-w) {
		return 0, errCorrupt
	}
	return len(v) - 8 - w - int(n), nil
}

// A revocation's value in the revoked bucket, keyed by its subject:
// Before then Expires, each as Unix seconds (8 bytes, big-endian, two's
// complement) and nanoseconds (4 bytes, big-endian, below 1e9), then a
// CRC-32C of those 24 bytes. Seconds and nanoseconds keep every time
// exactly, where Unix nanoseconds alone end in 2262.
const revocationLen = 28

func encodeRevocation(before, expires time.Time) []byte {
	b := make([]byte, 0, revocationLen)
	for _, t := range []time.Time{before, expires} {
		b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
		b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeRevocation(b []byte) (before, expires time.Time, err error) {
	if len(b) != revocationLen {
		return time.Time{}, time.Time{}, errCorrupt
	}
	if _, err := checkSum(b); err != nil {
		return time.Time{}, time.Time{}, err
	}
	var ts [2]time.Time
	for i := range ts {
		sec := int64(binary.BigEndian.Uint64(b[i*12:]))
		nsec := binary.BigEndian.Uint32(b[i*12+8:])
		if nsec >= 1e9 {
			return time.Time{}, time.Time{}, errCorrupt
		}
		ts[i] = time.Unix(sec, int64(nsec)).UTC()
	}
	return ts[0], ts[1], nil
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
