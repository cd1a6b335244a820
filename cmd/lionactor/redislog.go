package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// redisLog takes go-redis's own log lines, which it would print to stderr
// by itself (one for each failed reconnection while Redis is down), so that
// a batch run shows them only with --verbose: without it, the budget's
// notices say what the run does about them.
var redisLog struct {
	once   sync.Once
	logger atomic.Pointer[slog.Logger]
}

// logRedisTo sends go-redis's log lines to logger, at debug level; nil
// drops them.
func logRedisTo(logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	redisLog.logger.Store(logger)
	redisLog.once.Do(func() { redis.SetLogger(redisLogger{}) })
}

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	redisLog.logger.Load().DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
