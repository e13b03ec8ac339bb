package bolt

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/longpoll/longpoll"
)

// BenchmarkAppend measures durable appends of one small message each, by
// 1, 16 and 256 concurrent publishers over 16 topics: what group commit
// gains as the publishers share fsyncs. Compare with the memory broker's
// BenchmarkAppend.
func BenchmarkAppend(b *testing.B) {
	data := json.RawMessage(`{"user":"u-12345","event":"click","target":"#buy","at":"2030-01-02T03:04:05Z"}`)
	for _, publishers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			br := openTest(b)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for p := range publishers {
				wg.Go(func() {
					pubs := []longpoll.Publication{{Topic: fmt.Sprint("bench-", p%16), Data: data}}
					for next.Add(1) <= int64(b.N) {
						if _, err := br.Append(b.Context(), pubs); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
			b.ReportMetric(float64(br.enqueued.Load())/float64(br.commits.Load()), "appends/commit")
		})
	}
}

// BenchmarkRead measures reading a page of 100 messages of 100 bytes.
func BenchmarkRead(b *testing.B) {
	br := openTest(b)
	data := json.RawMessage(`{"user":"u-12345","event":"click","target":"#buy","at":"2030-01-02T03:04:05Z"}`)
	pubs := make([]longpoll.Publication, 1000)
	for i := range pubs {
		pubs[i] = longpoll.Publication{Topic: "read", Data: data}
	}
	if _, err := br.Append(b.Context(), pubs); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := br.Read(b.Context(), "read", longpoll.Position{}, 100)
		if err != nil || len(p.Messages) != 100 {
			b.Fatal(p, err)
		}
	}
}
