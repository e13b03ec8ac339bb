package bolt

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

func pub(topic, data string) longpoll.Publication {
	return longpoll.Publication{Topic: topic, Data: json.RawMessage(data)}
}

func pubID(topic, id, data string) longpoll.Publication {
	return longpoll.Publication{Topic: topic, ID: id, Data: json.RawMessage(data)}
}

func mustAppend(t testing.TB, b *Broker, pubs ...longpoll.Publication) []longpoll.Receipt {
	t.Helper()
	rs, err := b.Append(t.Context(), pubs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return rs
}

// appendN appends n messages to topic, one per call, with data "1".."n"
// counting from start.
func appendN(t testing.TB, b *Broker, topic string, start, n int) []longpoll.Receipt {
	t.Helper()
	var rs []longpoll.Receipt
	for i := start; i < start+n; i++ {
		rs = append(rs, mustAppend(t, b, pub(topic, fmt.Sprint(i)))...)
	}
	return rs
}

func mustRead(t testing.TB, b *Broker, topic string, from longpoll.Position, limit int) longpoll.Page {
	t.Helper()
	p, err := b.Read(t.Context(), topic, from, limit)
	if err != nil {
		t.Fatalf("Read(%q, %+v): %v", topic, from, err)
	}
	return p
}

func mustStat(t testing.TB, b *Broker, topic string) longpoll.TopicStat {
	t.Helper()
	st, err := b.Stat(t.Context(), topic)
	if err != nil {
		t.Fatalf("Stat(%q): %v", topic, err)
	}
	return st
}

func seqsOf(msgs []longpoll.Message) []uint64 {
	var s []uint64
	for _, m := range msgs {
		s = append(s, m.Seq)
	}
	return s
}

func wantSeqs(t testing.TB, msgs []longpoll.Message, first, last uint64) {
	t.Helper()
	ok := uint64(len(msgs)) == last+1-first
	for i := 0; ok && i < len(msgs); i++ {
		ok = msgs[i].Seq == first+uint64(i)
	}
	if !ok {
		t.Fatalf("got seqs %v, want %d..%d", seqsOf(msgs), first, last)
	}
}

// rawState is what the store holds for a topic, looked at directly.
type rawState struct {
	exists    bool
	st        topicState
	stored    int // keys in the topic's messages bucket
	ids       int // keys in its ids bucket
	dueKeys   int // keys for it in the due bucket
	topicsCnt uint64
}

func inspect(t testing.TB, b *Broker, topic string) rawState {
	t.Helper()
	var r rawState
	err := b.db.View(func(tx *bbolt.Tx) error {
		var err error
		if r.topicsCnt, err = getUint64(tx.Bucket(bucketMeta).Get(keyTopicCount)); err != nil {
			return err
		}
		key := []byte(topic)
		if raw := tx.Bucket(bucketTopics).Get(key); raw != nil {
			r.exists = true
			if r.st, err = decodeTopicState(raw); err != nil {
				return err
			}
		}
		if mb := tx.Bucket(bucketMsgs).Bucket(key); mb != nil {
			r.stored = mb.Stats().KeyN
		}
		if ib := tx.Bucket(bucketIDs).Bucket(key); ib != nil {
			r.ids = ib.Stats().KeyN
		}
		return tx.Bucket(bucketDue).ForEach(func(k, _ []byte) error {
			if _, name, err := splitDueKey(k); err == nil && name == topic {
				r.dueKeys++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("inspect %q: %v", topic, err)
	}
	return r
}
