package longpoll_test

import (
	"fmt"
	"testing"

	"github.com/longpoll/longpoll"
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
				var opts []longpoll.Option
				if prom {
					opts = append(opts, longpoll.WithMetrics(prommetrics.New(prometheus.NewRegistry())))
				}
				parkedPublishWake(b, n, opts...)
			})
		}
	}
}
