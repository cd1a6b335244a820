package redisbudget_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/redisbudget"
)

// A member leases from a budget shared through Redis, spends part of the
// lease and gives back the rest. (An in-process Redis stands in for a real
// one here, with its clock set by hand.)
func Example() {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mr.SetTime(start)
	mr.RequireUserAuth("budget", "s3cret")

	opts, err := redisbudget.ParseURL("redis://budget:s3cret@" + mr.Addr() + "/0")
	if err != nil {
		log.Fatal(err)
	}
	// The password is never shown.
	fmt.Println("budget on", strings.Replace(opts.String(), mr.Addr(), "HOST:PORT", 1))
	client := opts.NewClient()
	defer client.Close()
	store, err := redisbudget.New(client, redisbudget.Config{LeaseTTL: time.Second})
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	key := "https://api.openai.com/v1#5d41402abc4b2a76" // as budget.KeyFor names it
	limits := actors.Limits{RequestsPerSecond: 50, RequestBurst: 10, TokensPerSecond: 5000, TokenBurst: 2000}
	want := actors.LeaseWanted{Requests: 4, Tokens: 1200, MinTokens: 300}

	g, err := store.Lease(ctx, key, "host-1/pid-42", want, limits)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("a new budget starts empty: %d requests, wait %v\n", g.Requests, g.Wait)

	mr.SetTime(start.Add(g.Wait))
	g, err = store.Lease(ctx, key, "host-1/pid-42", want, limits)
	if err != nil {
		log.Fatal(err)
	}
	// A partial lease: 3 of the 4 requests, and the tokens the bucket holds.
	fmt.Printf("then: %d requests, %d tokens\n", g.Requests, g.Tokens)

	ok, err := store.Return(ctx, key, g.ID, 1, 100) // 1 request and 100 tokens unused
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("returned:", ok)
	// Output:
	// budget on redis://budget:xxxxx@HOST:PORT/0
	// a new budget starts empty: 0 requests, wait 61ms
	// then: 3 requests, 305 tokens
	// returned: true
}
