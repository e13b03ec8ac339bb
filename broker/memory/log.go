package memory

import (
	"sort"
	"time"

	"github.com/longpoll/longpoll/protocol"
)

// topicLog is one topic's log in one epoch. Its shard's lock guards it.
//
// The retained messages are buf[off:], in seq order and gapless, ending at
// seq head. Dropping from the front advances off and zeroes the dropped
// slots so their data can be collected; push moves the live messages to the
// front of the array, or to a new one, when the array is full, so the dead
// prefix never costs more than the live messages do.
type topicLog struct {
	name  string
	epoch uint64
	head  uint64 // seq of the newest message ever appended; never decreases
	buf   []protocol.Message
	off   int
	bytes int64     // size of buf[off:]
	data  int64     // len(Data) summed over buf[off:], for TopicInfo.Bytes
	last  time.Time // Time of the newest message ever appended
	// ids maps the ID of each retained message that has one to its seq.
	ids map[string]uint64
}

func msgSize(topic, id string, data []byte) int64 {
	return int64(len(data)+len(id)+len(topic)) + MessageOverhead
}

func (l *topicLog) live() []protocol.Message { return l.buf[l.off:] }

// firstSeq is the seq of live()[0], or head+1 when nothing is retained.
func (l *topicLog) firstSeq() uint64 { return l.head - uint64(len(l.buf)-l.off) + 1 }

// visible returns the index in live() of the oldest message not older than
// cutoff: messages before it are expired even if not dropped yet.
func (l *topicLog) visible(cutoff time.Time) int {
	live := l.live()
	if len(live) == 0 || !live[0].Time.Before(cutoff) {
		return 0 // the common case: nothing expired
	}
	return sort.Search(len(live), func(i int) bool { return !live[i].Time.Before(cutoff) })
}

func (l *topicLog) push(m protocol.Message) {
	if len(l.buf) == cap(l.buf) && l.off > 0 {
		n := len(l.buf) - l.off
		if l.off >= n {
			// At least half of the array is dead: reuse it.
			copy(l.buf, l.buf[l.off:])
			clear(l.buf[n:])
			l.buf = l.buf[:n]
		} else {
			nb := make([]protocol.Message, n, 2*n)
			copy(nb, l.buf[l.off:])
			l.buf = nb
		}
		l.off = 0
	}
	l.buf = append(l.buf, m)
	l.data += int64(len(m.Data))
}

// dropFront drops the n oldest retained messages and returns their size.
func (l *topicLog) dropFront(n int) int64 {
	var freed int64
	for i := l.off; i < l.off+n; i++ {
		m := &l.buf[i]
		freed += msgSize(m.Topic, m.ID, m.Data)
		l.data -= int64(len(m.Data))
		if m.ID != "" && l.ids[m.ID] == m.Seq {
			delete(l.ids, m.ID)
		}
		*m = protocol.Message{}
	}
	l.off += n
	l.bytes -= freed
	if l.off == len(l.buf) {
		// Only age empties a log; let its array go.
		l.buf, l.off = nil, 0
	}
	return freed
}

// expire drops the messages older than cutoff and returns their size.
func (l *topicLog) expire(cutoff time.Time) int64 {
	if n := l.visible(cutoff); n > 0 {
		return l.dropFront(n)
	}
	return 0
}

// shrink gives back memory a burst left behind: an array much larger than
// the messages it holds and an empty id index.
func (l *topicLog) shrink() {
	n := len(l.buf) - l.off
	if c := cap(l.buf); c > 16 && c > 4*n {
		nb := make([]protocol.Message, n, 2*n)
		copy(nb, l.buf[l.off:])
		l.buf, l.off = nb, 0
	}
	if len(l.ids) == 0 {
		l.ids = nil
	}
}
