//go:build !race

package budget_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// A budget service and one member executor in the same process (in real
// use they are in different processes): the member's permits come from the
// service's leases.
func Example() {
	srv, err := budget.Listen("127.0.0.1:0", budget.ServiceConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval, cfg.RequestInterval = 600, time.Minute // the key's whole limit
	cfg.SharedBudget = budget.MemberConfig{
		Address:         srv.Addr(),
		Key:             budget.KeyFor("https://api.openai.com/v1", "sk-example"),
		ExpectedMembers: 3,
	}
	ex, err := runtime.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer ex.Stop(context.Background())

	h, err := ex.Submit(context.Background(), messages.Request{Call: messages.CallFunc(
		func(ctx context.Context, attempt int) (messages.Result, error) {
			return messages.Result{Value: "done"}, nil
		})})
	if err != nil {
		log.Fatal(err)
	}
	ev, _ := h.Wait(context.Background())
	st, _ := srv.Stats()
	fmt.Println(ev.Status, "with", st.GrantedRequests, "request granted by the service")
	// Output: COMPLETED with 1 request granted by the service
}

// A service that lets in only the holders of a shared secret: a member
// with it joins; a member without it is refused, and keeps to its local
// share of the limits.
func ExampleSecret() {
	secret := budget.Secret("a secret of at least 16 bytes, from the environment")
	srv, err := budget.Listen("127.0.0.1:0", budget.ServiceConfig{Secret: secret})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	member := func(secret budget.Secret) *runtime.Executor {
		cfg := runtime.DefaultConfig()
		cfg.SharedBudget = budget.MemberConfig{
			Address: srv.Addr(), Key: budget.KeyFor("https://api.openai.com/v1", "sk-example"),
			ExpectedMembers: 2, Secret: secret,
		}
		ex, err := runtime.Start(cfg)
		if err != nil {
			log.Fatal(err)
		}
		h, err := ex.Submit(context.Background(), messages.Request{Call: messages.CallFunc(
			func(context.Context, int) (messages.Result, error) { return messages.Result{}, nil })})
		if err != nil {
			log.Fatal(err)
		}
		h.Wait(context.Background())
		return ex
	}
	in, out := member(secret), member(nil)
	defer in.Stop(context.Background())
	defer out.Stop(context.Background())
	fmt.Println("with the secret:", in.Stats().Shared.Mode)
	fmt.Println("without:", out.Stats().Shared.Mode, "-", out.Stats().Shared.Reason)
	fmt.Printf("the secret prints as %v\n", secret)
	// Output:
	// with the secret: joined
	// without: fallen back - refused by the service: no proof of the shared secret
	// the secret prints as [REDACTED]
}
