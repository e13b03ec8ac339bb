package cli

import (
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

const (
	defaultStore = "memory"
	storeKinds   = "memory"
)

// storeConfig holds the settings shared by the stores.
type storeConfig struct {
	retentionMessages int
	retentionAge      time.Duration
	retentionBytes    int64
	maxTopics         int
	maxStoreBytes     int64
}

func storeFlags(fs *flag.FlagSet, c *storeConfig) {
	fs.IntVar(&c.retentionMessages, "retention-messages", memory.DefaultMaxMessages, "messages kept per topic")
	fs.DurationVar(&c.retentionAge, "retention-age", memory.DefaultMaxAge, "how long a message is kept")
	fs.Int64Var(&c.retentionBytes, "retention-bytes", memory.DefaultMaxBytes, "bytes kept per topic")
	fs.IntVar(&c.maxTopics, "max-topics", memory.DefaultMaxTopics, "topics held at once; beyond, publishes to new topics get 503 store_full")
	fs.Int64Var(&c.maxStoreBytes, "max-store-bytes", memory.DefaultMaxTotalBytes, "bytes the memory store holds in all; beyond, publishes get 503 store_full")
}

func (c *storeConfig) check(store string) error {
	switch {
	case store != "memory":
		return fmt.Errorf("--store %q: must be one of %s", store, storeKinds)
	case c.retentionMessages < 1, c.retentionAge <= 0, c.retentionBytes < 1, c.maxTopics < 1, c.maxStoreBytes < 1:
		return fmt.Errorf("--retention-messages, --retention-age, --retention-bytes, --max-topics and --max-store-bytes must be positive")
	}
	return nil
}

// openStore opens the broker named by store and describes it for the
// start-up line.
func openStore(store string, c *storeConfig, log *slog.Logger) (longpoll.Broker, string, error) {
	switch store {
	case "memory":
		b := memory.New(
			memory.WithMaxMessages(c.retentionMessages),
			memory.WithMaxAge(c.retentionAge),
			memory.WithMaxBytes(c.retentionBytes),
			memory.WithMaxTopics(c.maxTopics),
			memory.WithMaxTotalBytes(c.maxStoreBytes),
		)
		return b, "memory", nil
	}
	return nil, "", fmt.Errorf("unknown store %q", store)
}
