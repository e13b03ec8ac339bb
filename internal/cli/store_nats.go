package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/jetstream"
)

// isNATSURL reports whether --store names NATS JetStream: nats:// or
// tls://.
func isNATSURL(store string) bool {
	return strings.HasPrefix(store, "nats://") || strings.HasPrefix(store, "tls://")
}

// checkNATS checks a nats:// --store and the --nats- flags without
// connecting; its errors never hold the URL's password.
func (c *storeConfig) checkNATS(store string) error {
	nats := isNATSURL(store)
	switch {
	case !nats && (c.natsCreds != "" || c.natsNkey != "" || c.natsUpdateStream):
		return errors.New("--nats-creds, --nats-nkey and --nats-update-stream apply to a nats:// or tls:// --store only")
	case !nats:
		return nil
	case c.natsCreds != "" && c.natsNkey != "":
		return errors.New("--nats-creds and --nats-nkey: give one of them")
	}
	if _, err := jetstream.ParseURL(store); err != nil {
		return fmt.Errorf("--store: a NATS URL (nats://[user:pass@]host:port[,host:port...][?replicas=N&stream=NAME&prefix=P]): %v", err)
	}
	return nil
}

// openNATS opens the JetStream broker at url with the retention flags.
// The memory store's --max-topics and --max-store-bytes do not apply: the
// stream's and the account's limits bound the store (see
// docs/deployment.md).
func openNATS(url string, c *storeConfig, log *slog.Logger) (longpoll.Broker, string, error) {
	opts := []jetstream.Option{
		jetstream.WithMaxMessages(c.retentionMessages),
		jetstream.WithMaxAge(c.retentionAge),
		jetstream.WithMaxBytes(c.retentionBytes),
		jetstream.WithLogger(log),
	}
	if c.natsCreds != "" {
		opts = append(opts, jetstream.WithCredsFile(c.natsCreds))
	}
	if c.natsNkey != "" {
		opts = append(opts, jetstream.WithNkeyFile(c.natsNkey))
	}
	if c.natsUpdateStream {
		opts = append(opts, jetstream.WithUpdateStream())
	}
	b, err := jetstream.Open(url, opts...)
	if err != nil {
		return nil, "", err
	}
	return b, b.String(), nil
}
