package prommetrics

import (
	"context"
	"runtime"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/prometheus/client_golang/prometheus"
)

// ReadyTimeout bounds the broker ping that longpoll_ready makes at each
// scrape, as /readyz bounds its own.
const ReadyTimeout = 2 * time.Second

// RegisterServer registers the gauges read from srv at each scrape:
// longpoll_topics_waited, longpoll_ready (what /readyz answers: 1 for
// 200, 0 for 503; it pings the broker, within ReadyTimeout) and
// longpoll_draining.
func RegisterServer(reg prometheus.Registerer, srv *longpoll.Server) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "longpoll_topics_waited",
			Help: "Topics with at least one poll waiting on this node now.",
		}, func() float64 { return float64(srv.TopicsWaited()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "longpoll_ready",
			Help: "1 when /readyz would answer 200 (not draining, the broker answers a ping), else 0.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
			defer cancel()
			return b2f(srv.Ready(ctx) == nil)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "longpoll_draining",
			Help: "1 while the node drains (from the start of its shutdown), else 0.",
		}, func() float64 { return b2f(srv.Draining()) }))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Transports are the values of longpoll_connections_open's transport
// label.
var Transports = []string{"dense", "std"}

// RegisterConnections registers longpoll_connections_open{transport},
// read at each scrape from dense (the event loop's connections) and std
// (net/http's, which under the dense transport are those it handed over).
// A nil func reads zero.
func RegisterConnections(reg prometheus.Registerer, dense, std func() int) {
	for i, f := range []func() int{dense, std} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "longpoll_connections_open",
			Help:        "Client connections open now, by transport: dense (the event loop) or std (net/http).",
			ConstLabels: prometheus.Labels{"transport": Transports[i]},
		}, func() float64 {
			if f == nil {
				return 0
			}
			return float64(f())
		}))
	}
}

// RegisterBuildInfo registers longpoll_build_info{version,commit,go} = 1:
// version and commit as given (the binary's, which the release sets with
// -ldflags; commit "unknown" when ""), go the toolchain's version.
func RegisterBuildInfo(reg prometheus.Registerer, version, commit string) {
	if commit == "" {
		commit = "unknown"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "longpoll_build_info",
		Help:        "Always 1; its labels name the build: version, commit (VCS revision) and go (toolchain).",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "go": runtime.Version()},
	})
	g.Set(1)
	reg.MustRegister(g)
}
