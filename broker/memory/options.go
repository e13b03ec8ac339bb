package memory

import (
	"fmt"
	"time"
)

// Defaults of the options.
const (
	DefaultMaxMessages     = 1000
	DefaultMaxAge          = 24 * time.Hour
	DefaultMaxBytes        = 8 << 20 // per topic
	DefaultMaxTopics       = 1_000_000
	DefaultMaxTotalBytes   = 1 << 30
	DefaultReclaimInterval = time.Minute
)

// MessageOverhead is what a message costs besides its Data, ID and Topic
// bytes when counted against MaxBytes and MaxTotalBytes: roughly its header
// in the log and its entry in the id index. A message counts as
// len(Data)+len(ID)+len(Topic)+MessageOverhead bytes.
const MessageOverhead = 96

// An Option configures a Broker. New panics on an invalid value, naming the
// option: limits are set by code or validated flags, never by clients.
type Option func(*config)

type config struct {
	maxMessages     int
	maxAge          time.Duration
	maxBytes        int64
	maxTopics       int64
	maxTotalBytes   int64
	reclaimInterval time.Duration
	now             func() time.Time
}

func defaultConfig() config {
	return config{
		maxMessages:     DefaultMaxMessages,
		maxAge:          DefaultMaxAge,
		maxBytes:        DefaultMaxBytes,
		maxTopics:       DefaultMaxTopics,
		maxTotalBytes:   DefaultMaxTotalBytes,
		reclaimInterval: DefaultReclaimInterval,
		now:             time.Now,
	}
}

func (c *config) validate() error {
	switch {
	case c.maxMessages < 1:
		return fmt.Errorf("memory: WithMaxMessages(%d): must be at least 1", c.maxMessages)
	case c.maxAge <= 0:
		return fmt.Errorf("memory: WithMaxAge(%v): must be positive", c.maxAge)
	case c.maxBytes < 1:
		return fmt.Errorf("memory: WithMaxBytes(%d): must be at least 1", c.maxBytes)
	case c.maxTopics < 1:
		return fmt.Errorf("memory: WithMaxTopics(%d): must be at least 1", c.maxTopics)
	case c.maxTotalBytes < 1:
		return fmt.Errorf("memory: WithMaxTotalBytes(%d): must be at least 1", c.maxTotalBytes)
	case c.reclaimInterval <= 0:
		return fmt.Errorf("memory: WithReclaimInterval(%v): must be positive", c.reclaimInterval)
	case c.now == nil:
		return fmt.Errorf("memory: WithClock(nil)")
	}
	return nil
}

// WithMaxMessages sets how many messages each topic keeps; older ones are
// dropped. Default DefaultMaxMessages.
func WithMaxMessages(n int) Option { return func(c *config) { c.maxMessages = n } }

// WithMaxAge sets how long a message stays readable after its append.
// Default DefaultMaxAge.
func WithMaxAge(d time.Duration) Option { return func(c *config) { c.maxAge = d } }

// WithMaxBytes sets how many bytes each topic keeps, counted as described
// at MessageOverhead; older messages are dropped, but a topic always keeps
// its newest message. Default DefaultMaxBytes.
func WithMaxBytes(n int64) Option { return func(c *config) { c.maxBytes = n } }

// WithMaxTopics sets how many topics the broker holds at once. An Append
// that would create one more fails with protocol.ErrStoreFull. Watching a
// topic does not create it. Default DefaultMaxTopics.
func WithMaxTopics(n int) Option { return func(c *config) { c.maxTopics = int64(n) } }

// WithMaxTotalBytes sets how many bytes all topics hold together. An Append
// that would pass it, after the drops it causes itself, fails with
// protocol.ErrStoreFull. Default DefaultMaxTotalBytes.
func WithMaxTotalBytes(n int64) Option { return func(c *config) { c.maxTotalBytes = n } }

// WithReclaimInterval sets how often the janitor frees the memory of expired
// messages and forgets expired topics. It bounds how long that memory
// lingers, not what readers see: expired messages are never returned.
// Default DefaultReclaimInterval.
func WithReclaimInterval(d time.Duration) Option {
	return func(c *config) { c.reclaimInterval = d }
}

// WithClock sets the clock that stamps messages and judges their age, for
// tests. Default time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }
