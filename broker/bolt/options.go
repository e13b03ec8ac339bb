package bolt

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	// DefaultMaxMessages is how many messages a topic retains.
	DefaultMaxMessages = 1000
	// DefaultMaxAge is how long a message is retained.
	DefaultMaxAge = 24 * time.Hour
	// DefaultMaxBytes is how many bytes of messages a topic retains, as
	// counted by MessageSize.
	DefaultMaxBytes = 8 << 20
	// DefaultMaxTopics is how many topics the store holds before Append
	// refuses new ones with protocol.ErrStoreFull.
	DefaultMaxTopics = 1_000_000
	// DefaultLockTimeout is how long Open waits for another process to
	// release the data file before it gives up.
	DefaultLockTimeout = time.Second
	// DefaultReclaimInterval is how often the background reclaimer looks
	// for expired messages and forgotten topics.
	DefaultReclaimInterval = time.Second
)

// MessageOverhead is added to a message's topic, ID and data lengths to
// give its size for the MaxBytes limit: the key, time and B-tree
// bookkeeping a message costs besides its bytes. It is the memory
// broker's, so that both keep the same messages under the same limit.
const MessageOverhead = 96

// MessageSize is what a message counts against a topic's MaxBytes.
func MessageSize(topic, id string, data []byte) int {
	return len(topic) + len(id) + len(data) + MessageOverhead
}

type config struct {
	maxMessages     int
	maxAge          time.Duration
	maxBytes        int64
	maxTopics       int
	now             func() time.Time
	logger          *slog.Logger
	lockTimeout     time.Duration
	reclaimInterval time.Duration

	// afterReclaim, when set (tests only), is called after every pass of
	// the background reclaimer with what it did.
	afterReclaim func(reclaimStats, error)
}

func defaultConfig() config {
	return config{
		maxMessages:     DefaultMaxMessages,
		maxAge:          DefaultMaxAge,
		maxBytes:        DefaultMaxBytes,
		maxTopics:       DefaultMaxTopics,
		now:             time.Now,
		logger:          slog.New(slog.DiscardHandler),
		lockTimeout:     DefaultLockTimeout,
		reclaimInterval: DefaultReclaimInterval,
	}
}

// Option configures a Broker.
type Option func(*config) error

// WithMaxMessages sets how many messages each topic retains; older ones
// are dropped as new ones are appended.
func WithMaxMessages(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("max messages must be positive, got %d", n)
		}
		c.maxMessages = n
		return nil
	}
}

// WithMaxAge sets how long a message is retained after it was appended.
func WithMaxAge(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("max age must be positive, got %v", d)
		}
		c.maxAge = d
		return nil
	}
}

// WithMaxBytes sets how many bytes of messages each topic retains, as
// counted by MessageSize; older messages are dropped as new ones are
// appended. The newest message is always retained, whatever its size.
func WithMaxBytes(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("max bytes must be positive, got %d", n)
		}
		c.maxBytes = n
		return nil
	}
}

// WithMaxTopics caps the topics the store holds; an Append that would
// create more fails with protocol.ErrStoreFull.
func WithMaxTopics(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("max topics must be positive, got %d", n)
		}
		c.maxTopics = n
		return nil
	}
}

// WithClock sets the clock that stamps messages and ages them; the
// default is time.Now. For tests.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("nil clock")
		}
		c.now = now
		return nil
	}
}

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

// WithLockTimeout sets how long Open waits for the data file's lock when
// another process holds it.
func WithLockTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("lock timeout must be positive, got %v", d)
		}
		c.lockTimeout = d
		return nil
	}
}

// WithReclaimInterval sets how often the background reclaimer runs. Readers
// never see an expired message whatever the interval: it only decides how
// soon the space of expired messages and idle topics is reused.
func WithReclaimInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("reclaim interval must be positive, got %v", d)
		}
		c.reclaimInterval = d
		return nil
	}
}
