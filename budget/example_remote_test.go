//go:build !race

package budget_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/lionactor/lionactor/budget"
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

	h, err := ex.Submit(context.Background(), runtime.Request{Call: runtime.CallFunc(
		func(ctx context.Context, attempt int) (runtime.Result, error) {
			return runtime.Result{Value: "done"}, nil
		})})
	if err != nil {
		log.Fatal(err)
	}
	ev, _ := h.Wait(context.Background())
	st, _ := srv.Stats()
	fmt.Println(ev.Status, "with", st.GrantedRequests, "request granted by the service")
	// Output: COMPLETED with 1 request granted by the service
}
