// Package prommetrics reports a longpoll.Server's measurements to
// Prometheus. Every metric name starts with longpoll_; docs/operations.md
// lists them.
//
//	reg := prometheus.NewRegistry()
//	srv, _ := longpoll.New(broker, longpoll.WithMetrics(prommetrics.New(reg)))
package prommetrics

import (
	"time"

	"github.com/longpoll/longpoll"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics implements longpoll.Metrics with Prometheus collectors.
type Metrics struct {
	held      prometheus.Gauge
	polls     *prometheus.CounterVec
	outcomes  map[longpoll.PollOutcome]prometheus.Counter
	published prometheus.Counter
	delivered prometheus.Counter
	gaps      map[longpoll.GapReason]prometheus.Counter
	holdDur   prometheus.Histogram
	latency   prometheus.Histogram
	brokerErr *prometheus.CounterVec
}

var _ longpoll.Metrics = (*Metrics)(nil)

// New creates the collectors and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "longpoll_polls_held", Help: "Polls in flight on this node now.",
		}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longpoll_polls_total", Help: "Finished polls by outcome: messages, timeout, cancelled, shutdown, error.",
		}, []string{"outcome"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longpoll_published_messages_total", Help: "Messages appended by publishes on this node (idempotent repeats excluded).",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longpoll_delivered_messages_total", Help: "Messages sent in poll replies by this node.",
		}),
		holdDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "longpoll_poll_hold_seconds",
			Help:    "How long polls were held before their reply.",
			Buckets: []float64{0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 15, 30, 45, 60},
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "longpoll_delivery_latency_seconds",
			Help:    "Time from a message's append to its delivery in a poll reply.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30},
		}),
		brokerErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longpoll_broker_errors_total", Help: "Failed broker calls by operation: append, read, stat.",
		}, []string{"op"}),
	}
	gaps := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "longpoll_gaps_total", Help: "Gaps reported to clients by reason: expired, reset, corrupt.",
	}, []string{"reason"})
	m.gaps = map[longpoll.GapReason]prometheus.Counter{
		longpoll.GapExpired: gaps.WithLabelValues(string(longpoll.GapExpired)),
		longpoll.GapReset:   gaps.WithLabelValues(string(longpoll.GapReset)),
		longpoll.GapCorrupt: gaps.WithLabelValues(string(longpoll.GapCorrupt)),
	}
	m.outcomes = make(map[longpoll.PollOutcome]prometheus.Counter)
	for _, o := range []longpoll.PollOutcome{longpoll.OutcomeMessages, longpoll.OutcomeTimeout,
		longpoll.OutcomeCancelled, longpoll.OutcomeShutdown, longpoll.OutcomeError} {
		m.outcomes[o] = m.polls.WithLabelValues(string(o))
	}
	for _, op := range []string{"append", "read", "stat"} {
		m.brokerErr.WithLabelValues(op)
	}
	reg.MustRegister(m.held, m.polls, m.published, m.delivered, gaps, m.holdDur, m.latency, m.brokerErr)
	return m
}

func (m *Metrics) PollsHeld(delta int) { m.held.Add(float64(delta)) }

func (m *Metrics) PollEnded(o longpoll.PollOutcome, held time.Duration) {
	if c, ok := m.outcomes[o]; ok {
		c.Inc()
	}
	m.holdDur.Observe(held.Seconds())
}

func (m *Metrics) Published(n int) { m.published.Add(float64(n)) }

func (m *Metrics) Delivered(now time.Time, msgs []longpoll.Message) {
	m.delivered.Add(float64(len(msgs)))
	for i := range msgs {
		m.latency.Observe(now.Sub(msgs[i].Time).Seconds())
	}
}

func (m *Metrics) GapReported(r longpoll.GapReason) {
	if c, ok := m.gaps[r]; ok {
		c.Inc()
	}
}

func (m *Metrics) BrokerError(op string) { m.brokerErr.WithLabelValues(op).Inc() }

// RegisterReplyBytes registers the gauges longpoll_reply_bytes_pending
// and longpoll_reply_bytes_unread, read from pending and unread (a
// Server's ReplyBytesPending and ReplyBytesUnread) at each scrape.
func RegisterReplyBytes(reg prometheus.Registerer, pending, unread func() int64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "longpoll_reply_bytes_pending",
		Help: "Bytes of poll replies the process holds for clients that have not taken them yet (bounded by --max-reply-memory).",
	}, func() float64 { return float64(pending()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "longpoll_reply_bytes_unread",
			Help: "Bytes of large poll replies in sockets, written but not yet read by their clients (event-loop transport).",
		}, func() float64 { return float64(unread()) }))
}
