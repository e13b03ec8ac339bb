// Package stats publishes the server's own measurements to the reserved
// topic _longpoll.stats, so that a dashboard can follow them by long
// polling like any other topic (longpoll serve's /dashboard does).
//
// Every interval a Publisher reads the Prometheus registry the server
// reports to (prommetrics) and publishes one compact JSON Snapshot through
// Server.Publish, which alone may write to reserved topics. The topic is
// an ordinary topic of the broker: the broker's count, age and size
// retention bound it (at the default of 1000 messages and one snapshot a
// second, about 17 minutes of history).
//
//	p, err := stats.Start(srv, stats.Config{Gatherer: reg, Broker: b})
//	defer p.Close()
package stats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Topic is where the snapshots go.
const Topic = longpoll.ReservedPrefix + "stats"

// DefaultInterval is the time between two snapshots.
const DefaultInterval = time.Second

// Version is the Snapshot format's version, its "v" field.
const Version = 1

// Server is what a Publisher publishes through: a *longpoll.Server.
type Server interface {
	Publish(ctx context.Context, pubs ...longpoll.Publication) ([]longpoll.Receipt, error)
}

// TopicCounter is the optional ability of a broker to count its topics;
// a Snapshot has a topic count only when the broker has it.
type TopicCounter interface {
	Topics() int
}

// Snapshot is one measurement, as published (JSON). Counters are totals
// since the server started: a reader takes the rate between two
// snapshots, and a total that went down means a restarted server.
type Snapshot struct {
	V          int       `json:"v"`
	Node       string    `json:"node"`
	Time       time.Time `json:"time"`
	IntervalMS int64     `json:"interval_ms"`
	// Held is the number of polls in flight on this node.
	Held int64 `json:"held"`
	// Polls counts finished polls by outcome: messages, timeout,
	// cancelled, shutdown, error.
	Polls map[string]uint64 `json:"polls"`
	// Published counts messages appended through this node, its own
	// snapshots excluded; Delivered, messages sent in poll replies.
	Published uint64 `json:"published"`
	Delivered uint64 `json:"delivered"`
	// Gaps counts gaps reported to clients, by reason: expired, reset, corrupt.
	Gaps map[string]uint64 `json:"gaps"`
	// BrokerErrors counts failed broker calls by operation.
	BrokerErrors map[string]uint64 `json:"broker_errors"`
	// Topics is the broker's topic count, when it can tell.
	Topics *int `json:"topics,omitempty"`
	// Refusals counts refused requests by reason (longpoll_refusals_total).
	Refusals map[string]uint64 `json:"refusals"`
	// DeliveryLatency and PublishLatency are the histograms of
	// longpoll_delivery_latency_seconds and
	// longpoll_publish_duration_seconds; nil when not exported.
	DeliveryLatency *Histogram `json:"delivery_latency,omitempty"`
	PublishLatency  *Histogram `json:"publish_latency,omitempty"`
}

// Histogram is a cumulative histogram: N[i] observations were at most
// LE[i] seconds, and the last of N, one more than LE, counts them all.
type Histogram struct {
	LE []float64 `json:"le"`
	N  []uint64  `json:"n"`
}

// Config configures a Publisher.
type Config struct {
	// Gatherer is the registry prommetrics reports to. Required.
	Gatherer prometheus.Gatherer
	// Interval between snapshots; 0 means DefaultInterval.
	Interval time.Duration
	// Broker, when it implements TopicCounter, adds the topic count.
	Broker any
	// Node names this server in the snapshots; default the host name.
	Node string
	// Logger reports failed publishes; default silent.
	Logger *slog.Logger
}

// Publisher publishes a Snapshot every interval until Close.
type Publisher struct {
	srv      Server
	cfg      Config
	topics   TopicCounter
	log      *slog.Logger
	own      uint64 // snapshots appended, excluded from Published
	lastErr  string
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Start publishes a first snapshot at once, then one every interval, from
// a goroutine that Close stops.
func Start(srv Server, cfg Config) (*Publisher, error) {
	if srv == nil || cfg.Gatherer == nil {
		return nil, errors.New("stats: a server and a gatherer are required")
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("stats: negative interval %v", cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	p := &Publisher{srv: srv, cfg: cfg, log: cfg.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.topics, _ = cfg.Broker.(TopicCounter)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go p.run(ctx)
	return p, nil
}

// Close stops the publisher and waits for its goroutine; a second Close
// does nothing.
func (p *Publisher) Close() {
	p.stopOnce.Do(func() {
		p.cancel()
		p.wg.Wait()
	})
}

func (p *Publisher) run(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.publish(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Publisher) publish(ctx context.Context) {
	s, err := Take(p.cfg.Gatherer, p.topics)
	if err == nil {
		s.Node = p.cfg.Node
		s.IntervalMS = p.cfg.Interval.Milliseconds()
		s.Published -= min(p.own, s.Published)
		var data []byte
		data, err = json.Marshal(s)
		if err == nil {
			// A slow store must not pile snapshots up.
			pctx, cancel := context.WithTimeout(ctx, max(p.cfg.Interval, time.Second))
			_, err = p.srv.Publish(pctx, longpoll.Publication{Topic: Topic, Data: data})
			cancel()
		}
	}
	if err != nil {
		if ctx.Err() == nil && err.Error() != p.lastErr {
			p.log.Warn("publishing stats", "topic", Topic, "error", err)
		}
		p.lastErr = err.Error()
		return
	}
	p.own++
	p.lastErr = ""
}

// Take reads a Snapshot from g (the longpoll_ metrics of prommetrics) and
// topics, when not nil. Node and IntervalMS are left for the caller.
func Take(g prometheus.Gatherer, topics TopicCounter) (Snapshot, error) {
	fams, err := g.Gather()
	if err != nil && len(fams) == 0 {
		return Snapshot{}, fmt.Errorf("stats: gathering metrics: %w", err)
	}
	s := Snapshot{
		V:            Version,
		Time:         time.Now().UTC(),
		Polls:        map[string]uint64{},
		Gaps:         map[string]uint64{},
		BrokerErrors: map[string]uint64{},
		Refusals:     map[string]uint64{},
	}
	for _, f := range fams {
		var by map[string]uint64
		var label string
		switch f.GetName() {
		case "longpoll_polls_total":
			by, label = s.Polls, "outcome"
		case "longpoll_gaps_total":
			by, label = s.Gaps, "reason"
		case "longpoll_broker_errors_total":
			by, label = s.BrokerErrors, "op"
		case "longpoll_refusals_total":
			by, label = s.Refusals, "reason"
		case "longpoll_delivery_latency_seconds":
			s.DeliveryLatency = histogram(f)
		case "longpoll_publish_duration_seconds":
			s.PublishLatency = histogram(f)
		}
		var total float64
		for _, m := range f.GetMetric() {
			// The getters are nil-safe: only one of the three is set.
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			total += v
			for _, l := range m.GetLabel() {
				if by != nil && l.GetName() == label {
					by[l.GetValue()] += uint64(v)
				}
			}
		}
		switch f.GetName() {
		case "longpoll_polls_held":
			s.Held = int64(total)
		case "longpoll_published_messages_total":
			s.Published = uint64(total)
		case "longpoll_delivered_messages_total":
			s.Delivered = uint64(total)
		}
	}
	if topics != nil {
		n := topics.Topics()
		s.Topics = &n
	}
	return s, nil
}

// histogram sums the histograms of a family over its label sets; nil
// when it has none.
func histogram(f *dto.MetricFamily) *Histogram {
	var h *Histogram
	for _, m := range f.GetMetric() {
		mh := m.GetHistogram()
		if mh == nil {
			continue
		}
		bs := mh.GetBucket()
		if h == nil {
			h = &Histogram{LE: make([]float64, 0, len(bs)), N: make([]uint64, len(bs)+1)}
			for _, b := range bs {
				h.LE = append(h.LE, b.GetUpperBound())
			}
		}
		for i, b := range bs {
			if i < len(h.LE) && b.GetUpperBound() == h.LE[i] {
				h.N[i] += b.GetCumulativeCount()
			}
		}
		h.N[len(h.LE)] += mh.GetSampleCount()
	}
	return h
}
