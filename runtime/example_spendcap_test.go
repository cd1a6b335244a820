package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// cents prices a usage at a cent per output token.
type cents struct{}

func (cents) Cost(u messages.Usage) float64 { return 0.01 * float64(u.OutputTokens) }

// An executor with a spend cap admits a request only while what was spent,
// with the estimated cost of what is in flight and of the request, stays
// within the cap. imodel gives its requests their Pricing and
// EstimatedCost; here a call of 3 output tokens is estimated at 5.
func ExampleSpendCap() {
	spend, err := runtime.NewSpendCap(0.20)
	if err != nil {
		log.Fatal(err)
	}
	cfg := runtime.DefaultConfig()
	cfg.SpendCap = spend
	ex, err := runtime.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer ex.Stop(context.Background())

	call := messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		return messages.Result{Usage: &messages.Usage{OutputTokens: 3}}, nil
	})
	for i := 1; ; i++ {
		h, err := ex.Submit(context.Background(), messages.Request{Call: call, Pricing: cents{}, EstimatedCost: 0.05})
		if errors.Is(err, messages.ErrSpendCap) {
			st := spend.Stats()
			fmt.Printf("request %d refused: $%.2f spent of $%.2f\n", i, st.Spent, st.Limit)
			return
		}
		ev, _ := h.Wait(context.Background())
		fmt.Printf("request %d: $%.2f\n", i, ev.Cost().Actual)
	}
	// Output:
	// request 1: $0.03
	// request 2: $0.03
	// request 3: $0.03
	// request 4: $0.03
	// request 5: $0.03
	// request 6: $0.03
	// request 7 refused: $0.18 spent of $0.20
}
