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

	// The optional abilities: children resolved once, kept by small index,
	// so that recording is an atomic add.
	requests [longpoll.NumRoutes][4]prometheus.Counter // by route and status class
	durs     [longpoll.NumRoutes]prometheus.Observer   // nil for polls
	bytes    prometheus.Counter
	pubDur   prometheus.Histogram
	refused  [longpoll.NumRefusals]prometheus.Counter
	tokens   [longpoll.NumTokenResults]prometheus.Counter
	admin    map[string]prometheus.Counter
}

var (
	_ longpoll.RequestMetrics = (*Metrics)(nil)
	_ longpoll.PublishMetrics = (*Metrics)(nil)
	_ longpoll.RefusalMetrics = (*Metrics)(nil)
	_ longpoll.TokenMetrics   = (*Metrics)(nil)
)

// classes are the values of the code label: status classes.
var classes = [4]string{"2xx", "3xx", "4xx", "5xx"}

// AdminActions are the values of longpoll_admin_actions_total's action
// label.
var AdminActions = []string{"topics", "topic_delete", "disconnect", "node", "drain", "undrain"}

// latencyBuckets suit a request answered at once: 0.5 ms to 10 s.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

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
			Help:    "Time from a message's append (its time field) to its delivery in a poll reply; across nodes it includes the clock skew between the appending node (or Redis) and this one.",
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
	m.newAbilities(reg)
	return m
}

// newAbilities creates and registers the collectors of the optional
// abilities, with every label value present at zero.
func (m *Metrics) newAbilities(reg prometheus.Registerer) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "longpoll_http_requests_total",
		Help: "Requests answered, by route (poll, publish, topic, health, metrics, admin, static, other) and status class (2xx, 3xx, 4xx, 5xx). A request whose client left before its answer is not counted.",
	}, []string{"route", "code"})
	durs := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "longpoll_http_request_duration_seconds",
		Help:    "Time from a request's arrival to its answer, by route; polls excluded (see longpoll_poll_hold_seconds).",
		Buckets: latencyBuckets,
	}, []string{"route"})
	m.bytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "longpoll_response_bytes_total", Help: "Bytes of response bodies sent, every route.",
	})
	m.pubDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "longpoll_publish_duration_seconds",
		Help:    "Time from a publish request's arrival to its acknowledgement (2xx): parsing, checks and the broker's append.",
		Buckets: latencyBuckets,
	})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "longpoll_refusals_total",
		Help: "Requests refused, by reason: rate_limited, overloaded, store_full, broker_unavailable, unauthorized, forbidden, token_revoked, draining.",
	}, []string{"reason"})
	tokens := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "longpoll_token_verifications_total",
		Help: "Credentials checked by the authenticator, by result: ok, invalid, expired, revoked, error.",
	}, []string{"result"})
	admin := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "longpoll_admin_actions_total",
		Help: "Admin API actions taken, by action: topics, topic_delete, disconnect, node, drain, undrain.",
	}, []string{"action"})
	for r := range longpoll.NumRoutes {
		route := longpoll.Route(r)
		for c, class := range classes {
			m.requests[r][c] = requests.WithLabelValues(route.String(), class)
		}
		if route != longpoll.RoutePoll && route != longpoll.RouteStream { // held: not a request's time
			m.durs[r] = durs.WithLabelValues(route.String())
		}
	}
	for r := range longpoll.NumRefusals {
		m.refused[r] = refused.WithLabelValues(longpoll.Refusal(r).String())
	}
	for t := range longpoll.NumTokenResults {
		m.tokens[t] = tokens.WithLabelValues(longpoll.TokenResult(t).String())
	}
	m.admin = make(map[string]prometheus.Counter, len(AdminActions))
	for _, a := range AdminActions {
		m.admin[a] = admin.WithLabelValues(a)
	}
	reg.MustRegister(requests, durs, m.bytes, m.pubDur, refused, tokens, admin)
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

// RequestServed implements longpoll.RequestMetrics.
func (m *Metrics) RequestServed(route longpoll.Route, status, n int, took time.Duration) {
	if int(route) >= len(m.requests) {
		route = longpoll.RouteOther
	}
	m.requests[route][statusClass(status)].Inc()
	if n > 0 {
		m.bytes.Add(float64(n))
	}
	if d := m.durs[route]; d != nil {
		d.Observe(took.Seconds())
	}
}

// statusClass returns the index in classes of status's class; a status
// under 200 counts as 2xx, one of 600 or more as 5xx.
func statusClass(status int) int {
	switch {
	case status < 300:
		return 0
	case status < 400:
		return 1
	case status < 500:
		return 2
	}
	return 3
}

// PublishAcked implements longpoll.PublishMetrics.
func (m *Metrics) PublishAcked(took time.Duration) { m.pubDur.Observe(took.Seconds()) }

// Refused implements longpoll.RefusalMetrics.
func (m *Metrics) Refused(reason longpoll.Refusal) {
	if int(reason) < len(m.refused) {
		m.refused[reason].Inc()
	}
}

// TokenVerified implements longpoll.TokenMetrics.
func (m *Metrics) TokenVerified(result longpoll.TokenResult) {
	if int(result) < len(m.tokens) {
		m.tokens[result].Inc()
	}
}

// AdminAction records an admin API action, one of AdminActions; others
// are ignored.
func (m *Metrics) AdminAction(action string) {
	if c, ok := m.admin[action]; ok {
		c.Inc()
	}
}

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
