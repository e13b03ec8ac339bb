package jetstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// A record is one JetStream message on a topic's subject: one topic's
// part of one Append, messages with consecutive seqs. Its headers say
// where it stands in the topic's log; its body holds the messages.
//
//	Lp-Epoch  the topic's epoch, decimal
//	Lp-Seq    the seq of its first message, decimal
//	Lp-Count  how many messages it holds, decimal
//	Lp-Time   the time of its messages, Unix microseconds, decimal
//	Lp-Cost   the retention cost of the epoch's messages before it (see
//	          MessageOverhead), decimal
//	Lp-Data   the data bytes of the epoch's messages before it, decimal
//	Lp-Prev   the stream sequence of the topic's previous record, 0 for
//	          the first of an epoch, decimal
//	Lp-Token  the Append call and attempt that wrote it
//
// The body is a format byte (1), then for each message the uvarint length
// of its id, the id, the uvarint length of its data and the data.
type record struct {
	streamSeq  uint64 // where JetStream stored it; not in the record
	epoch      uint64
	first      uint64
	time       time.Time
	costBefore uint64
	dataBefore uint64
	prev       uint64
	token      string
	msgs       []entry
}

type entry struct {
	id   string
	data []byte
	// bad: the record's body could not be read; the entry stands for a
	// message that readers get as a GapCorrupt.
	bad bool
}

const (
	hEpoch = "Lp-Epoch"
	hSeq   = "Lp-Seq"
	hCount = "Lp-Count"
	hTime  = "Lp-Time"
	hCost  = "Lp-Cost"
	hData  = "Lp-Data"
	hPrev  = "Lp-Prev"
	hToken = "Lp-Token"

	formatV1 = 1
)

func (r *record) last() uint64 { return r.first + uint64(len(r.msgs)) - 1 }

// cost is what a message counts against MaxBytes.
func cost(topic string, e entry) uint64 {
	return uint64(len(e.data) + len(e.id) + len(topic) + MessageOverhead)
}

// costEnd is the retention cost of the epoch's messages up to r's last.
func (r *record) costEnd(topic string) uint64 {
	c := r.costBefore
	for _, e := range r.msgs {
		c += cost(topic, e)
	}
	return c
}

func (r *record) dataEnd() uint64 {
	d := r.dataBefore
	for _, e := range r.msgs {
		d += uint64(len(e.data))
	}
	return d
}

// encode returns r's headers and body.
func (r *record) encode() (nats.Header, []byte) {
	h := nats.Header{}
	u := func(k string, v uint64) { h.Set(k, strconv.FormatUint(v, 10)) }
	u(hEpoch, r.epoch)
	u(hSeq, r.first)
	u(hCount, uint64(len(r.msgs)))
	h.Set(hTime, strconv.FormatInt(r.time.UnixMicro(), 10))
	u(hCost, r.costBefore)
	u(hData, r.dataBefore)
	u(hPrev, r.prev)
	h.Set(hToken, r.token)
	n := 1
	for _, e := range r.msgs {
		n += 2*binary.MaxVarintLen64 + len(e.id) + len(e.data)
	}
	body := make([]byte, 1, n)
	body[0] = formatV1
	for _, e := range r.msgs {
		body = binary.AppendUvarint(body, uint64(len(e.id)))
		body = append(body, e.id...)
		body = binary.AppendUvarint(body, uint64(len(e.data)))
		body = append(body, e.data...)
	}
	return h, body
}

var errRecord = errors.New("malformed record")

// maxCount bounds the messages of one record: a larger Lp-Count is
// damage.
const maxCount = 1 << 20

// decodeHeader parses a record's headers; the record has no messages yet.
func decodeHeader(h nats.Header) (record, uint64, error) {
	var r record
	var count uint64
	for _, f := range []struct {
		k string
		p *uint64
	}{{hEpoch, &r.epoch}, {hSeq, &r.first}, {hCount, &count}, {hCost, &r.costBefore}, {hData, &r.dataBefore}, {hPrev, &r.prev}} {
		v, err := strconv.ParseUint(h.Get(f.k), 10, 64)
		if err != nil {
			return record{}, 0, fmt.Errorf("%w: header %s %q", errRecord, f.k, h.Get(f.k))
		}
		*f.p = v
	}
	us, err := strconv.ParseInt(h.Get(hTime), 10, 64)
	if err != nil {
		return record{}, 0, fmt.Errorf("%w: header %s %q", errRecord, hTime, h.Get(hTime))
	}
	r.time = time.UnixMicro(us).UTC()
	r.token = h.Get(hToken)
	if r.epoch == 0 || r.first == 0 || count == 0 || count > maxCount || r.first+count < r.first {
		return record{}, 0, fmt.Errorf("%w: epoch %d, seq %d, count %d", errRecord, r.epoch, r.first, count)
	}
	return r, count, nil
}

// decodeRecord parses a stored record. The entries' data share body.
func decodeRecord(h nats.Header, body []byte) (record, error) {
	r, count, err := decodeHeader(h)
	if err != nil {
		return record{}, err
	}
	if count > uint64(len(body)) {
		return record{}, fmt.Errorf("%w: %d messages in %d bytes", errRecord, count, len(body))
	}
	if len(body) == 0 || body[0] != formatV1 {
		return record{}, fmt.Errorf("%w: unknown format", errRecord)
	}
	rest := body[1:]
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return nil, false
		}
		v := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return v, true
	}
	r.msgs = make([]entry, 0, count)
	for range count {
		id, ok1 := field()
		data, ok2 := field()
		if !ok1 || !ok2 {
			return record{}, fmt.Errorf("%w: body ends early", errRecord)
		}
		r.msgs = append(r.msgs, entry{id: string(id), data: data})
	}
	if len(rest) != 0 {
		return record{}, fmt.Errorf("%w: %d bytes after the messages", errRecord, len(rest))
	}
	return r, nil
}
