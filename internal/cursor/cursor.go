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
	raw := make([]byte, 0, 8+len(entries)*24)
	raw = append(raw, version)
	raw = binary.AppendUvarint(raw, uint64(len(entries)))
	for _, e := range entries {
		raw = binary.AppendUvarint(raw, uint64(len(e.Topic)))
		raw = append(raw, e.Topic...)
		raw = binary.BigEndian.AppendUint64(raw, e.Epoch)
		raw = binary.AppendUvarint(raw, e.Seq)
	}
	raw = binary.BigEndian.AppendUint32(raw, crc32.Checksum(raw, table))
	return base64.RawURLEncoding.AppendEncode(dst, raw)
}

// Encode returns the text form of entries.
func Encode(entries []Entry) string { return string(Append(nil, entries)) }

// Decode parses a cursor. validTopic reports whether a name is a valid
// topic. The error explains what is wrong, for the client to see.
func Decode(s string, validTopic func(string) bool) ([]Entry, error) {
	if base64.RawURLEncoding.DecodedLen(len(s)) > MaxEntries*(maxTopicLen+24)+16 {
		return nil, errTooMany
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
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
	seen := make(map[string]struct{}, n)
	for range n {
		l, k := binary.Uvarint(p)
		if k <= 0 || l > maxTopicLen || uint64(len(p)-k) < l {
			return nil, errCorrupt
		}
		p = p[k:]
		topic := string(p[:l])
		p = p[l:]
		if !validTopic(topic) {
			return nil, errTopic
		}
		if _, dup := seen[topic]; dup {
			return nil, errDupTopic
		}
		seen[topic] = struct{}{}
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
