// Package cursor encodes a poll's per-topic positions as opaque text.
//
// Layout, before unpadded base64url encoding:
//
//	version  1 byte (1)
//	count    uvarint
//	count times:
//	  topic length uvarint, topic bytes
//	  epoch        8 bytes big-endian
//	  seq          uvarint
//	crc32c   4 bytes big-endian, of everything before it
//
// The checksum turns a truncated or mangled cursor into a clear error
// instead of a silently wrong position.
package cursor

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"sync"
	"unsafe"
)

const version = 1

// MaxEntries bounds how many topics one cursor may hold.
const MaxEntries = 1000

// maxTopicLen mirrors the protocol's topic length limit.
const maxTopicLen = 256

// Entry is one topic's position.
type Entry struct {
	Topic string
	Epoch uint64
	Seq   uint64
}

var (
	errCorrupt  = errors.New("cursor is corrupt or truncated")
	errVersion  = errors.New("cursor is from an unknown format version")
	errTooMany  = errors.New("cursor holds too many topics")
	errTopic    = errors.New("cursor holds an invalid topic name")
	errDupTopic = errors.New("cursor names a topic twice")
	errEncoding = errors.New("cursor is not unpadded base64url text")
)

var table = crc32.MakeTable(crc32.Castagnoli)

// Append appends the text form of entries to dst.
func Append(dst []byte, entries []Entry) []byte {
	bp := bufs.Get().(*[]byte)
	defer func() { putBuf(bp) }()
	raw := (*bp)[:0]
	raw = append(raw, version)
	raw = binary.AppendUvarint(raw, uint64(len(entries)))
	for _, e := range entries {
		raw = binary.AppendUvarint(raw, uint64(len(e.Topic)))
		raw = append(raw, e.Topic...)
		raw = binary.BigEndian.AppendUint64(raw, e.Epoch)
		raw = binary.AppendUvarint(raw, e.Seq)
	}
	raw = binary.BigEndian.AppendUint32(raw, crc32.Checksum(raw, table))
	*bp = raw
	return base64.RawURLEncoding.AppendEncode(dst, raw)
}

// bufs holds the binary form of cursors being encoded or decoded: the
// checksum's assembly keeps a stack buffer from staying on the stack.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func putBuf(bp *[]byte) {
	if cap(*bp) <= 4<<10 {
		bufs.Put(bp)
	}
}

// Encode returns the text form of entries.
func Encode(entries []Entry) string { return string(Append(nil, entries)) }

// Decode parses a cursor. validTopic reports whether a name is a valid
// topic. An entry whose topic is one of the first 8 known gets that
// string rather than a new copy. The error explains what is wrong, for the client to
// see.
func Decode(s string, validTopic func(string) bool, known ...string) ([]Entry, error) {
	if base64.RawURLEncoding.DecodedLen(len(s)) > MaxEntries*(maxTopicLen+24)+16 {
		return nil, errTooMany
	}
	bp := bufs.Get().(*[]byte)
	defer func() { putBuf(bp) }()
	// The text is only read: no copy of it is made.
	raw, err := base64.RawURLEncoding.AppendDecode((*bp)[:0], unsafe.Slice(unsafe.StringData(s), len(s)))
	*bp = raw
	if err != nil {
		return nil, errEncoding
	}
	if len(raw) < 1+1+4 {
		return nil, errCorrupt
	}
	body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
	if crc32.Checksum(body, table) != sum {
		return nil, errCorrupt
	}
	if body[0] != version {
		return nil, errVersion
	}
	p := body[1:]
	n, k := binary.Uvarint(p)
	if k <= 0 {
		return nil, errCorrupt
	}
	p = p[k:]
	if n > MaxEntries {
		return nil, errTooMany
	}
	entries := make([]Entry, 0, n)
	// Duplicates are found by a scan for a few entries, by a map beyond.
	var seen map[string]struct{}
	if n > 8 {
		seen = make(map[string]struct{}, n)
	}
	for range n {
		l, k := binary.Uvarint(p)
		if k <= 0 || l > maxTopicLen || uint64(len(p)-k) < l {
			return nil, errCorrupt
		}
		p = p[k:]
		topic := ""
		for _, t := range known[:min(len(known), 8)] { // a few: no quadratic scan
			if t == string(p[:l]) {
				topic = t
				break
			}
		}
		if topic == "" {
			topic = string(p[:l])
		}
		p = p[l:]
		if !validTopic(topic) {
			return nil, errTopic
		}
		if seen != nil {
			if _, dup := seen[topic]; dup {
				return nil, errDupTopic
			}
			seen[topic] = struct{}{}
		} else {
			for _, e := range entries {
				if e.Topic == topic {
					return nil, errDupTopic
				}
			}
		}
		if len(p) < 8 {
			return nil, errCorrupt
		}
		epoch := binary.BigEndian.Uint64(p)
		p = p[8:]
		seq, k := binary.Uvarint(p)
		if k <= 0 {
			return nil, errCorrupt
		}
		p = p[k:]
		entries = append(entries, Entry{Topic: topic, Epoch: epoch, Seq: seq})
	}
	if len(p) != 0 {
		return nil, errCorrupt
	}
	return entries, nil
}
