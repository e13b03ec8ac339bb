package jetstream

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/longpoll/longpoll"
)

var benchData = json.RawMessage(`{"event":"update","id":12345,"body":"` + strings.Repeat("x", 40) + `"}`)

// BenchmarkAppend is one publication at a time to one topic, on an
// embedded server: one request per append (the last record is cached).
func BenchmarkAppend(b *testing.B) {
	br := open(b, scope(b, startEmbedded(b).url()))
	pubs := []longpoll.Publication{{Topic: "bench", Data: benchData}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Append(b.Context(), pubs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendParallel is many publishers on one hot topic: their
// appends are committed in groups.
func BenchmarkAppendParallel(b *testing.B) {
	br := open(b, scope(b, startEmbedded(b).url()))
	pubs := []longpoll.Publication{{Topic: "bench", Data: benchData}}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Append(b.Context(), pubs); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReadTail reads the newest message of a topic of 1000, as a
// woken poll does: the last record alone.
func BenchmarkReadTail(b *testing.B) {
	br, st := benchLog(b)
	from := longpoll.Position{Epoch: st.Epoch, Seq: st.Head - 1}
	b.ReportAllocs()
	for b.Loop() {
		if p, err := br.Read(b.Context(), "bench", from, 100); err != nil || len(p.Messages) != 1 {
			b.Fatal(len(p.Messages), err)
		}
	}
}

// BenchmarkReadFar reads 100 messages from the middle of a topic of 1000
// single-message records: a search, then a consumer.
func BenchmarkReadFar(b *testing.B) {
	br, st := benchLog(b)
	from := longpoll.Position{Epoch: st.Epoch, Seq: st.Head / 2}
	b.ReportAllocs()
	for b.Loop() {
		if p, err := br.Read(b.Context(), "bench", from, 100); err != nil || len(p.Messages) != 100 {
			b.Fatal(len(p.Messages), err)
		}
	}
}

func benchLog(b *testing.B) (*Broker, longpoll.TopicStat) {
	br := open(b, scope(b, startEmbedded(b).url()))
	for range 1000 {
		if _, err := br.Append(b.Context(), []longpoll.Publication{{Topic: "bench", Data: benchData}, {Topic: "other", Data: benchData}}); err != nil {
			b.Fatal(err)
		}
	}
	st, err := br.Stat(b.Context(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	return br, st
}
