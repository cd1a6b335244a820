package budget_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// A member of a budget kept in Redis: its permits come from leases that
// Redis grants, and nothing of lionactor's runs beside it. (An in-process
// Redis stands in here for yours; give the URL of your server, with its
// user and password: redis://user:password@host:6379/0.)
func ExampleMemberConfig_redis() {
	redis := miniredis.NewMiniRedis()
	if err := redis.Start(); err != nil {
		log.Fatal(err)
	}
	defer redis.Close()

	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval, cfg.RequestInterval = 600, time.Minute // the key's whole limit
	cfg.SharedBudget = budget.MemberConfig{
		Address:         "redis://" + redis.Addr() + "/0",
		Key:             budget.KeyFor("https://api.openai.com/v1", "sk-example"),
		ExpectedMembers: 3,
	}
	ex, err := runtime.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	h, err := ex.Submit(context.Background(), messages.Request{Call: messages.CallFunc(
		func(ctx context.Context, attempt int) (messages.Result, error) {
			return messages.Result{Value: "done"}, nil
		})})
	if err != nil {
		log.Fatal(err)
	}
	ev, _ := h.Wait(context.Background())
	if err := ex.Stop(context.Background()); err != nil {
		log.Fatal(err)
	}
	st := ex.Stats().Shared
	fmt.Println(ev.Status, "on a lease from Redis:", st.Mode, "with", st.LeasedRequests, "request leased")
	// Output: COMPLETED on a lease from Redis: joined with 1 request leased
}
