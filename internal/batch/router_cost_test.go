package batch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

// pricedDeployments are two deployments on the simulator, each group
// served by a model of its own price.
func pricedDeployments(base string) []Deployment {
	mini := deployment("mini", "fast", "sk-mini", base, 60000)
	mini.Endpoint.Model = "gpt-4o-mini"
	big := deployment("big", "smart", "sk-big", base, 60000)
	big.Endpoint.Model = "gpt-4o"
	return []Deployment{mini, big}
}

// A run over deployments prices each line at the model of the deployment
// that served it, and its dry run estimates each line as that deployment
// would send it: the same tokens, the run's cost within the range.
func TestRunOverDeploymentsCostsEachLineWhereItRan(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{CompletionTokens: 5})
	cfg := testConfig(base)
	cfg.Deployments = pricedDeployments(base)
	var in strings.Builder
	const n = 30
	for i := range n {
		in.WriteString(modelLine(map[bool]string{true: "fast", false: "smart"}[i%3 != 0], i))
	}
	in.WriteString(modelLine("nobody-serves-this", n))
	in.WriteString(`{"id":"no-model","messages":[{"role":"user","content":"hi"}],"max_tokens":8}` + "\n") // two groups: which?
	f, err := DryRun(cfg, Input{R: strings.NewReader(in.String())}, DryRunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(in.String())}, nil)
	if err != nil {
		t.Fatal(err)
	}
	prices := imodel.DefaultPrices()
	var total, estimated float64
	var tokens int64
	if len(f.Invalid) != 2 {
		t.Fatalf("dry run: invalid lines %+v, want the unknown model's and the one naming none", f.Invalid)
	}
	for _, r := range wantIndices(t, results, seq(0, n+2)) {
		if r.Index >= n {
			// The dry run gives the run's reason, word for word.
			dry := f.Invalid[r.Index-n]
			if r.Status != "FAILED" || dry.Line != r.Index+1 || dry.Kind != r.Error.Kind ||
				fmt.Sprintf("line %d: %s", r.Index+1, dry.Reason) != r.Error.Message {
				t.Errorf("line %d: run %s %+v, dry run %+v", r.Index+1, r.Status, r.Error, dry)
			}
			continue
		}
		model := map[string]string{"mini": "gpt-4o-mini", "big": "gpt-4o"}[r.Deployment]
		price, _ := prices.Lookup(imodel.OpenAI, model)
		u := usageOf(t, r)
		want := (float64(u.PromptTokens)*price.Input + float64(u.CompletionTokens)*price.Output) / 1e6
		if r.Status != "COMPLETED" || r.CostUSD == nil || r.CostUSD.Actual == nil || !sameUSD(*r.CostUSD.Actual, want) {
			t.Fatalf("line %d at %q: %s cost %+v, want $%v at %s's price", r.Index, r.Deployment, r.Status, r.CostUSD, want, model)
		}
		total += want
		estimated += *r.CostUSD.Estimated
		tokens += int64(r.Tokens.Estimated)
	}
	if byModel := sum.CostByModel(); len(byModel) != 2 || byModel["gpt-4o"] <= 0 || !sameUSD(byModel["gpt-4o"]+byModel["gpt-4o-mini"], total) {
		t.Errorf("cost by model %v, want gpt-4o and gpt-4o-mini adding up to %v", byModel, total)
	}
	if f.Sent != n || f.InputTokens+f.OutputTokens != tokens || math.Abs(f.CostMax-estimated) > 1e-12 || total < f.CostInput || total > f.CostMax {
		t.Errorf("dry run: %d sent, %d tokens, $%v ... $%v; the run: %d tokens estimated at $%v, cost $%v",
			f.Sent, f.InputTokens+f.OutputTokens, f.CostInput, f.CostMax, tokens, estimated, total)
	}
	if f.RPM != 120000 || f.Concurrency != 2*cfg.Concurrency {
		t.Errorf("dry run limits: %d rpm, %d callers; want the deployments' together", f.RPM, f.Concurrency)
	}
}

// A spend cap over deployments holds for the run as a whole.
func TestRunOverDeploymentsStopsAtTheSpendCap(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{CompletionTokens: 5})
	cfg := testConfig(base)
	cfg.Deployments = pricedDeployments(base)
	cfg.Concurrency = 4
	price, _ := imodel.DefaultPrices().Lookup(imodel.OpenAI, "gpt-4o")
	cfg.MaxCost = 20 * (20*price.Input + 8*price.Output) / 1e6 // about 20 requests of gpt-4o at their estimate
	var in strings.Builder
	const n = 200
	for i := range n {
		in.WriteString(modelLine(map[bool]string{true: "fast", false: "smart"}[i%2 == 0], i))
	}
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(in.String()), Total: n}, nil)
	if !errors.Is(err, ErrSpendCap) {
		t.Fatalf("Run: %v, want ErrSpendCap", err)
	}
	spent := costOfLines(results)
	if spent > cfg.MaxCost || len(results) == 0 || len(results) == n {
		t.Errorf("%d lines for $%v under a cap of $%v", len(results), spent, cfg.MaxCost)
	}
	if s := sum.Snapshot(); !s.SpendCapped || s.Remaining() != n-len(results) || sim.Stats().Requests != int64(len(results)) {
		t.Errorf("capped %v, %d remaining, %d served for %d lines", s.SpendCapped, s.Remaining(), sim.Stats().Requests, len(results))
	}
}
