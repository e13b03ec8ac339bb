package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/longpoll/longpoll"
	redisbroker "github.com/longpoll/longpoll/broker/redis"
)

// isRedisURL reports whether --store names a Redis: redis:// or rediss://.
func isRedisURL(store string) bool {
	return strings.HasPrefix(store, "redis://") || strings.HasPrefix(store, "rediss://")
}

// openRedis opens the Redis broker at url with the retention flags. The
// memory store's --max-topics and --max-store-bytes do not apply: Redis's
// maxmemory bounds the store (see docs/deployment.md).
func openRedis(url string, c *storeConfig, log *slog.Logger) (longpoll.Broker, string, error) {
	// go-redis logs dial failures itself, on every attempt while Redis is
	// down; the broker reports outages once, so keep those for debugging.
	goredis.SetLogger(redisLogger{log})
	b, err := redisbroker.Open(url,
		redisbroker.WithMaxMessages(c.retentionMessages),
		redisbroker.WithMaxAge(c.retentionAge),
		redisbroker.WithMaxBytes(c.retentionBytes),
		redisbroker.WithLogger(log),
	)
	if err != nil {
		return nil, "", err
	}
	return b, b.String(), nil
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
}
