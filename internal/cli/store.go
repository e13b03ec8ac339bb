package cli

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/bolt"
	"github.com/longpoll/longpoll/broker/memory"
)

const (
	defaultStore = "disk"
	storeKinds   = "disk (durable, in --data-dir), memory, redis://host:port/db (rediss:// for TLS; ?cluster=true for Redis Cluster), or nats://host:4222[,host:4222...][?replicas=N&stream=NAME&prefix=P] (NATS JetStream; tls:// for TLS)"
)

// dataDirFor is where --store disk keeps its data unless --data-dir says
// otherwise: one directory per listening address, so servers on several
// ports of one machine never share (or fight over) a store, and a server
// restarted on its address finds its data again. addr is the address as
// bound (127.0.0.1:8080 for localhost:8080; backup resolves its --addr
// the same way, see boundAddr). The base is $XDG_DATA_HOME/longpoll, else
// ~/.local/share/longpoll, else ./longpoll-data.
func dataDirFor(addr string) string {
	base := "longpoll-data"
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		base = filepath.Join(d, "longpoll")
	} else if h, err := os.UserHomeDir(); err == nil {
		base = filepath.Join(h, ".local", "share", "longpoll")
	}
	name := strings.NewReplacer(":", "-", "[", "", "]", "", "/", "-").Replace(addr)
	if name == "" {
		name = "default"
	}
	return filepath.Join(base, name)
}

// storeConfig holds the settings shared by the stores.
type storeConfig struct {
	dataDir           string
	retentionMessages int
	retentionAge      time.Duration
	retentionBytes    int64
	maxTopics         int
	maxStoreBytes     int64
	natsCreds         string
	natsNkey          string
	natsUpdateStream  bool
}

func storeFlags(fs *flag.FlagSet, c *storeConfig) {
	fs.StringVar(&c.dataDir, "data-dir", "", "directory of the disk store, created if missing (default: $XDG_DATA_HOME/longpoll/<addr>, else ~/.local/share/longpoll/<addr>, named after the address bound: --addr localhost:8080 gives .../127.0.0.1-8080)")
	fs.IntVar(&c.retentionMessages, "retention-messages", memory.DefaultMaxMessages, "messages kept per topic")
	fs.DurationVar(&c.retentionAge, "retention-age", memory.DefaultMaxAge, "how long a message is kept")
	fs.Int64Var(&c.retentionBytes, "retention-bytes", memory.DefaultMaxBytes, "bytes kept per topic")
	fs.IntVar(&c.maxTopics, "max-topics", memory.DefaultMaxTopics, "topics held at once; beyond, publishes to new topics get 503 store_full")
	fs.Int64Var(&c.maxStoreBytes, "max-store-bytes", memory.DefaultMaxTotalBytes, "bytes the memory store holds in all; beyond, publishes get 503 store_full")
	fs.StringVar(&c.natsCreds, "nats-creds", "", "NATS credentials file (user JWT and nkey seed) for a nats:// --store")
	fs.StringVar(&c.natsNkey, "nats-nkey", "", "file of the NATS nkey seed for a nats:// --store")
	fs.BoolVar(&c.natsUpdateStream, "nats-update-stream", false, "let this node change the JetStream stream's limits to its retention flags, instead of refusing to start when they differ")
}

func (c *storeConfig) check(store string) error {
	switch {
	case store != "memory" && store != "disk" && !isRedisURL(store) && !isNATSURL(store):
		return fmt.Errorf("--store %q: must be one of %s", store, storeKinds)
	case c.retentionMessages < 1, c.retentionAge <= 0, c.retentionBytes < 1, c.maxTopics < 1, c.maxStoreBytes < 1:
		return fmt.Errorf("--retention-messages, --retention-age, --retention-bytes, --max-topics and --max-store-bytes must be positive")
	}
	return c.checkNATS(store)
}

// openStore opens the broker named by store and describes it for the
// start-up line.
func openStore(store string, c *storeConfig, log *slog.Logger) (longpoll.Broker, string, error) {
	if isRedisURL(store) {
		return openRedis(store, c, log)
	}
	if isNATSURL(store) {
		return openNATS(store, c, log)
	}
	switch store {
	case "disk":
		b, err := bolt.Open(c.dataDir,
			bolt.WithMaxMessages(c.retentionMessages),
			bolt.WithMaxAge(c.retentionAge),
			bolt.WithMaxBytes(c.retentionBytes),
			bolt.WithMaxTopics(c.maxTopics),
			bolt.WithLogger(log),
		)
		if err != nil {
			return nil, "", err
		}
		return b, "disk " + b.Path(), nil
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
