package longpoll_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/prommetrics"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkParkedPublishWakeMetrics is BenchmarkParkedPublishWake with
// and without the Prometheus metrics, side by side, so that what the
// metrics cost on the fan-out's hot path shows under the same load.
func BenchmarkParkedPublishWakeMetrics(b *testing.B) {
	for _, n := range []int{1, 1000} {
		for _, prom := range []bool{false, true} {
			b.Run(fmt.Sprintf("waiters=%d/prom=%v", n, prom), func(b *testing.B) {
				br := memory.New(memory.WithMaxMessages(10))
				b.Cleanup(func() { br.Close() })
				var opts []longpoll.Option
				if prom {
					opts = append(opts, longpoll.WithMetrics(prommetrics.New(prometheus.NewRegistry())))
				}
				srv, _ := longpoll.New(br, opts...)
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/poll?topic=w&timeout=0", nil))
				var r struct{ Cursor string }
				if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.Cursor == "" {
					b.Fatalf("first poll: %s", rec.Body)
				}
				sink := &countSink{done: make(chan []byte, n)}
				repoll := func(cur string) {
					for range n {
						if p := srv.Transport().ServePoll(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/poll?topic=w&timeout=50&cursor="+cur, nil), sink); p == nil {
							b.Fatal("not parked")
						}
					}
				}
				repoll(r.Cursor)
				data := json.RawMessage(`{"n":1}`)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := srv.Publish(b.Context(), longpoll.Publication{Topic: "w", Data: data}); err != nil {
						b.Fatal(err)
					}
					var body []byte
					for range n {
						body = <-sink.done
					}
					json.Unmarshal(body, &r)
					repoll(r.Cursor)
				}
				b.StopTimer()
				srv.Shutdown(b.Context())
				for range n {
					<-sink.done
				}
			})
		}
	}
}
