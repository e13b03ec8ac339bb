package memory

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/longpoll/longpoll"
)

var benchData = json.RawMessage(`{"event":"update","id":12345,"body":"` + strings.Repeat("x", 40) + `"}`)

// BenchmarkAppend is one publication to a topic that keeps its last 1000.
func BenchmarkAppend(b *testing.B) {
	br := New()
	defer br.Close()
	pubs := []longpoll.Publication{{Topic: "bench", Data: benchData}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Append(b.Context(), pubs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendWatched is BenchmarkAppend with a watcher to wake.
func BenchmarkAppendWatched(b *testing.B) {
	br := New()
	defer br.Close()
	var woken atomic.Int64
	defer br.Watch("bench", func(string) { woken.Add(1) })()
	pubs := []longpoll.Publication{{Topic: "bench", Data: benchData}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Append(b.Context(), pubs); err != nil {
			b.Fatal(err)
		}
	}
	if woken.Load() == 0 {
		b.Fatal("watcher never woken")
	}
}

// BenchmarkAppendParallel has every goroutine append to its own topic.
func BenchmarkAppendParallel(b *testing.B) {
	br := New()
	defer br.Close()
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		pubs := []longpoll.Publication{{Topic: fmt.Sprint("bench-", n.Add(1)), Data: benchData}}
		for pb.Next() {
			if _, err := br.Append(b.Context(), pubs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRead100 reads 100 messages from the middle of a full topic.
func BenchmarkRead100(b *testing.B) {
	br := New()
	defer br.Close()
	var rs []longpoll.Receipt
	for range DefaultMaxMessages {
		r, err := br.Append(b.Context(), []longpoll.Publication{{Topic: "bench", Data: benchData}})
		if err != nil {
			b.Fatal(err)
		}
		rs = r
	}
	from := longpoll.Position{Epoch: rs[0].Epoch, Seq: 500}
	b.ReportAllocs()
	for b.Loop() {
		p, err := br.Read(b.Context(), "bench", from, 100)
		if err != nil || len(p.Messages) != 100 {
			b.Fatal(err, len(p.Messages))
		}
	}
}
