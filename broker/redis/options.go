package redis

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	DefaultMaxMessages = 1000
	DefaultMaxAge      = 24 * time.Hour
	DefaultMaxBytes    = 8 << 20 // per topic
	DefaultPrefix      = "longpoll:"
	// DefaultLinger is how long a topic stays subscribed after its last
	// watcher stopped, so that a topic polled in a tight loop does not
	// SUBSCRIBE and UNSUBSCRIBE on every poll.
	DefaultLinger = 30 * time.Second
	// DefaultTimeout bounds every call to Redis, so that an unreachable
	// Redis fails calls fast with protocol.ErrUnavailable.
	DefaultTimeout = 2 * time.Second
	// DefaultDialTimeout bounds each connection attempt.
	DefaultDialTimeout = time.Second
	// DefaultSubscribeTimeout bounds how long Watch waits for Redis to
	// confirm a new subscription while the pub/sub connection is up.
	DefaultSubscribeTimeout = 2 * time.Second
	// DefaultHealthInterval is how long a pub/sub connection may stay
	// silent before it is pinged; a ping unanswered for as long again
	// declares the connection dead.
	DefaultHealthInterval = 2 * time.Second
)

// MessageOverhead is what a message costs besides its Data, ID and Topic
// bytes when counted against MaxBytes, as in broker/memory: a message counts
// as len(Data)+len(ID)+len(Topic)+MessageOverhead bytes.
const MessageOverhead = 96

// An Option configures a Broker. Open fails on an invalid value, naming
// the option.
type Option func(*config) error

type config struct {
	maxMessages      int
	maxAge           time.Duration
	maxBytes         int64
	prefix           string
	linger           time.Duration
	timeout          time.Duration
	dialTimeout      time.Duration
	subscribeTimeout time.Duration
	healthInterval   time.Duration
	log              *slog.Logger
	now              func() time.Time // nil: Redis's own clock (TIME)
}

func defaultConfig() config {
	return config{
		maxMessages:      DefaultMaxMessages,
		maxAge:           DefaultMaxAge,
		maxBytes:         DefaultMaxBytes,
		prefix:           DefaultPrefix,
		linger:           DefaultLinger,
		timeout:          DefaultTimeout,
		dialTimeout:      DefaultDialTimeout,
		subscribeTimeout: DefaultSubscribeTimeout,
		healthInterval:   DefaultHealthInterval,
		log:              slog.New(slog.DiscardHandler),
	}
}

func positive[T int | int64 | time.Duration](name string, v T) error {
	if v <= 0 {
		return fmt.Errorf("%s(%v): must be positive", name, v)
	}
	return nil
}

// WithMaxMessages sets how many messages each topic keeps; older ones are
// dropped. Default DefaultMaxMessages.
func WithMaxMessages(n int) Option {
	return func(c *config) error { c.maxMessages = n; return positive("WithMaxMessages", n) }
}

// WithMaxAge sets how long a message stays readable after its append. A
// topic whose last append is older than that is forgotten by Redis (its
// keys expire) and its next append starts a new epoch. Default
// DefaultMaxAge.
func WithMaxAge(d time.Duration) Option {
	return func(c *config) error {
		c.maxAge = d
		if d < time.Millisecond {
			return fmt.Errorf("WithMaxAge(%v): must be at least 1ms", d)
		}
		return nil
	}
}

// WithMaxBytes sets how many bytes each topic keeps, counted as described
// at MessageOverhead; older messages are dropped, but a topic always keeps
// its newest message. Default DefaultMaxBytes.
func WithMaxBytes(n int64) Option {
	return func(c *config) error { c.maxBytes = n; return positive("WithMaxBytes", n) }
}

// WithPrefix sets the prefix of every key and channel the broker uses, so
// that several deployments can share one Redis. Default DefaultPrefix.
func WithPrefix(p string) Option {
	return func(c *config) error {
		c.prefix = p
		for _, r := range p {
			if r == '{' || r == '}' {
				return fmt.Errorf("WithPrefix(%q): must not hold { or }: they would change the keys' hash slot", p)
			}
		}
		return nil
	}
}

// WithLinger sets how long a topic stays subscribed after its last watcher
// stopped. Default DefaultLinger.
func WithLinger(d time.Duration) Option {
	return func(c *config) error { c.linger = d; return positive("WithLinger", d) }
}

// WithTimeout bounds every call to Redis. Default DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error { c.timeout = d; return positive("WithTimeout", d) }
}

// WithDialTimeout bounds each connection attempt. Default DefaultDialTimeout.
func WithDialTimeout(d time.Duration) Option {
	return func(c *config) error { c.dialTimeout = d; return positive("WithDialTimeout", d) }
}

// WithSubscribeTimeout bounds how long Watch waits for a subscription to
// be confirmed. Default DefaultSubscribeTimeout.
func WithSubscribeTimeout(d time.Duration) Option {
	return func(c *config) error { c.subscribeTimeout = d; return positive("WithSubscribeTimeout", d) }
}

// WithHealthInterval sets how long a pub/sub connection may stay silent
// before it is pinged. Default DefaultHealthInterval.
func WithHealthInterval(d time.Duration) Option {
	return func(c *config) error { c.healthInterval = d; return positive("WithHealthInterval", d) }
}

// WithLogger sets the logger of connection losses and recoveries. Default:
// silent.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("WithLogger(nil)")
		}
		c.log = l
		return nil
	}
}

// WithClock makes the broker stamp messages and judge their age with now
// instead of Redis's clock, for tests. Every node sharing a Redis must use
// the same clock. Default: Redis's TIME.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("WithClock(nil)")
		}
		c.now = now
		return nil
	}
}
