package jetstream

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options and of the store URL.
const (
	DefaultMaxMessages = 1000
	DefaultMaxAge      = 24 * time.Hour
	DefaultMaxBytes    = 8 << 20 // per topic
	// DefaultStream names the stream of the topics' logs; the stream of
	// the id index and the key-value buckets take its name and a suffix.
	DefaultStream = "LONGPOLL"
	// DefaultPrefix starts every subject the broker uses.
	DefaultPrefix = "longpoll"
	// DefaultTimeout bounds every call to NATS, so that an unreachable
	// NATS fails calls fast with protocol.ErrUnavailable.
	DefaultTimeout = 2 * time.Second
	// DefaultDialTimeout bounds each connection attempt.
	DefaultDialTimeout = 2 * time.Second
)

// MessageOverhead is what a message costs besides its Data, ID and Topic
// bytes when counted against MaxBytes, as in broker/memory and
// broker/redis: a message counts as
// len(Data)+len(ID)+len(Topic)+MessageOverhead bytes.
const MessageOverhead = 96

// An Option configures a Broker. Open fails on an invalid value, naming
// the option.
type Option func(*config) error

type config struct {
	maxMessages  int
	maxAge       time.Duration
	maxBytes     int64
	timeout      time.Duration
	dialTimeout  time.Duration
	startTimeout time.Duration
	credsFile    string
	nkeyFile     string
	updateStream bool
	log          *slog.Logger
	now          func() time.Time
}

func defaultConfig() config {
	return config{
		maxMessages:  DefaultMaxMessages,
		maxAge:       DefaultMaxAge,
		maxBytes:     DefaultMaxBytes,
		timeout:      DefaultTimeout,
		startTimeout: DefaultStartTimeout,
		dialTimeout:  DefaultDialTimeout,
		log:          slog.New(slog.DiscardHandler),
		now:          time.Now,
	}
}

func positive[T int | int64 | time.Duration](name string, v T) error {
	if v <= 0 {
		return fmt.Errorf("%s(%v): must be positive", name, v)
	}
	return nil
}

// WithMaxMessages sets how many messages each topic keeps; older ones are
// hidden from readers at once and dropped by JetStream later. Default
// DefaultMaxMessages.
func WithMaxMessages(n int) Option {
	return func(c *config) error { c.maxMessages = n; return positive("WithMaxMessages", n) }
}

// WithMaxAge sets how long a message stays readable after its append.
// Default DefaultMaxAge.
func WithMaxAge(d time.Duration) Option {
	return func(c *config) error {
		c.maxAge = d
		if d < 100*time.Millisecond {
			return fmt.Errorf("WithMaxAge(%v): must be at least 100ms", d)
		}
		return nil
	}
}

// WithMaxBytes sets how many bytes each topic keeps, counted as described
// at MessageOverhead; older messages are hidden, but a topic always keeps
// its newest message. Default DefaultMaxBytes.
func WithMaxBytes(n int64) Option {
	return func(c *config) error { c.maxBytes = n; return positive("WithMaxBytes", n) }
}

// DefaultStartTimeout is how long Open keeps trying to find or make the
// streams and buckets (WithStartTimeout).
const DefaultStartTimeout = 60 * time.Second

// WithStartTimeout bounds how long Open keeps trying to find or make the
// store's streams and buckets: nodes started together on a new cluster
// make them at once, and a replicated stream is ready only once its Raft
// group has formed. A stream whose settings differ from the node's fails
// at once. Default DefaultStartTimeout.
func WithStartTimeout(d time.Duration) Option {
	return func(c *config) error { c.startTimeout = d; return positive("WithStartTimeout", d) }
}

// WithTimeout bounds every call to NATS. Default DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error { c.timeout = d; return positive("WithTimeout", d) }
}

// WithDialTimeout bounds each connection attempt. Default DefaultDialTimeout.
func WithDialTimeout(d time.Duration) Option {
	return func(c *config) error { c.dialTimeout = d; return positive("WithDialTimeout", d) }
}

// WithCredsFile authenticates with a NATS credentials file (a user JWT
// and its nkey seed).
func WithCredsFile(path string) Option {
	return func(c *config) error {
		if path == "" {
			return errors.New(`WithCredsFile(""): want a file`)
		}
		c.credsFile = path
		return nil
	}
}

// WithNkeyFile authenticates with the nkey seed in a file.
func WithNkeyFile(path string) Option {
	return func(c *config) error {
		if path == "" {
			return errors.New(`WithNkeyFile(""): want a file`)
		}
		c.nkeyFile = path
		return nil
	}
}

// WithUpdateStream lets Open change an existing stream whose limits
// differ from this broker's options, instead of failing.
func WithUpdateStream() Option {
	return func(c *config) error { c.updateStream = true; return nil }
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
