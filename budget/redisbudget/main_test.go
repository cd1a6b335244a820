package redisbudget

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/runtimetest"
)

// logs captures what go-redis logs (reconnections, bad connections), for
// tests that check no password gets there.
var logs capture

type capture struct{ runtimetest.Buffer }

func (c *capture) Printf(_ context.Context, format string, v ...any) {
	fmt.Fprintf(&c.Buffer, format+"\n", v...)
}

// TestMain checks that no test leaves a goroutine behind: subscriptions,
// clients and the Redis servers the tests start included.
func TestMain(m *testing.M) {
	redis.SetLogger(&logs)
	goleak.VerifyTestMain(m)
}
