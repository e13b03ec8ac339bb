package longpoll

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/longpoll/longpoll/protocol"
)

// Defaults for the Server's settings.
const (
	DefaultPollTimeout      = 25 * time.Second
	DefaultMaxHold          = 55 * time.Second
	DefaultMaxTopicsPerPoll = 100
	DefaultPollLimit        = protocol.DefaultPollLimit
	MaxPollLimit            = protocol.MaxPollLimit
	DefaultMaxMessageSize   = 64 << 10
	DefaultMaxBatch         = 1000
	DefaultMaxBodySize      = 8 << 20
	DefaultRetryAfter       = 2 * time.Second
	// DefaultMaxReplyBytes bounds a poll reply's body; see
	// WithMaxReplyBytes.
	DefaultMaxReplyBytes = 1 << 20
	// DefaultMaxReplyMemory bounds the reply bytes the server holds that
	// clients have not taken yet; see WithMaxReplyMemory.
	DefaultMaxReplyMemory = 256 << 20
	// DefaultWriteMargin is added to a poll's hold to give its write
	// deadline, so a legitimate hold is never cut.
	DefaultWriteMargin = 10 * time.Second
)

type config struct {
	liveConfig
	logger         *slog.Logger
	metrics        Metrics
	maxHold        time.Duration
	maxHeldPolls   int
	maxReplyMemory int64
	writeMargin    time.Duration
	auth           Authenticator
	limits         ClientLimits
	trustedProxies []netip.Prefix
	revocationTTL  time.Duration
	streamPing     time.Duration
	gzipMin        int
	maxStream      time.Duration
	node           NodeInfo
	admin          bool // ServeHTTP serves the admin API (WithAdminAPI)
}

// liveConfig is the part of the settings Reconfigure changes while the
// server serves. The server reads it through an atomic pointer, so a
// request sees one whole version of it.
type liveConfig struct {
	defaultTimeout   time.Duration
	maxTopicsPerPoll int
	maxMessageSize   int
	maxBatch         int
	maxBodySize      int64
	maxReplyBytes    int
	retryAfter       time.Duration
	corsOrigins      map[string]bool
}

// Option configures a Server.
type Option func(*config) error

// WithLogger sets the logger; the default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithMetrics sets where the server reports its metrics; the default
// reports nowhere. See the prommetrics package for Prometheus.
func WithMetrics(m Metrics) Option {
	return func(c *config) error {
		if m == nil {
			return fmt.Errorf("nil metrics")
		}
		c.metrics = m
		return nil
	}
}

func positive[T int | int64 | time.Duration](name string, v T, set func(T)) Option {
	return func(*config) error {
		if v <= 0 {
			return fmt.Errorf("%s must be positive, got %v", name, v)
		}
		set(v)
		return nil
	}
}

// WithPollTimeout sets the hold of a poll that names no timeout.
func WithPollTimeout(d time.Duration) Option {
	return func(c *config) error {
		return positive("poll timeout", d, func(v time.Duration) { c.defaultTimeout = v })(c)
	}
}

// WithMaxHold caps how long a poll is held. Keep it under the idle limit
// of every proxy between clients and the server.
func WithMaxHold(d time.Duration) Option {
	return func(c *config) error {
		return positive("max hold", d, func(v time.Duration) { c.maxHold = v })(c)
	}
}

// WithMaxHeldPolls caps the polls in flight; beyond it polls get 503
// overloaded. The default derives from the open-file limit.
func WithMaxHeldPolls(n int) Option {
	return func(c *config) error {
		return positive("max held polls", n, func(v int) { c.maxHeldPolls = v })(c)
	}
}

// WithMaxTopicsPerPoll caps the distinct topics one poll may name.
func WithMaxTopicsPerPoll(n int) Option {
	return func(c *config) error {
		return positive("max topics per poll", n, func(v int) { c.maxTopicsPerPoll = v })(c)
	}
}

// WithMaxMessageSize caps a message's data, as compact JSON text, in bytes.
func WithMaxMessageSize(n int) Option {
	return func(c *config) error {
		return positive("max message size", n, func(v int) { c.maxMessageSize = v })(c)
	}
}

// WithMaxReplyBytes bounds a poll reply's body, in bytes: a reply stops
// before the message that would take it past n, but always holds at
// least one message, and a poll from its cursor returns the rest at once.
func WithMaxReplyBytes(n int) Option {
	return func(c *config) error {
		return positive("max reply bytes", n, func(v int) { c.maxReplyBytes = v })(c)
	}
}

// WithMaxReplyMemory bounds the bytes of poll replies the server holds
// that clients have not taken yet, across all its connections: replies
// being built and written, and output waiting on the event-loop
// transport's connections. A poll whose reply would take it past n gets
// 503 overloaded with Retry-After; on the event-loop transport, a client
// that reads slower than a floor rate while it holds more than its share
// is cut, and its next poll from the same cursor gets what it missed.
func WithMaxReplyMemory(n int64) Option {
	return func(c *config) error {
		return positive("max reply memory", n, func(v int64) { c.maxReplyMemory = v })(c)
	}
}

// WithMaxBatch caps the messages of one publish request.
func WithMaxBatch(n int) Option {
	return func(c *config) error {
		return positive("max batch", n, func(v int) { c.maxBatch = v })(c)
	}
}

// WithMaxBodySize caps a request body in bytes.
func WithMaxBodySize(n int64) Option {
	return func(c *config) error {
		return positive("max body size", n, func(v int64) { c.maxBodySize = v })(c)
	}
}

// WithRetryAfter sets the base delay advised to refused clients (overload,
// shutdown); each answer spreads it between 0.5x and 1.5x.
func WithRetryAfter(d time.Duration) Option {
	return func(c *config) error {
		return positive("retry after", d, func(v time.Duration) { c.retryAfter = v })(c)
	}
}

// WithWriteMargin sets how far past its hold a poll's write deadline lies.
func WithWriteMargin(d time.Duration) Option {
	return func(c *config) error {
		return positive("write margin", d, func(v time.Duration) { c.writeMargin = v })(c)
	}
}
