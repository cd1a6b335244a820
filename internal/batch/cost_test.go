package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

func sameUSD(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

// usageOf reads the usage of a chat completion result's response.
func usageOf(t testing.TB, r Result) wire.Usage {
	t.Helper()
	var body wire.ChatResponse
	if err := json.Unmarshal(r.Response, &body); err != nil || body.Usage == nil {
		t.Fatalf("index %d: response %s: %v", r.Index, r.Response, err)
	}
	return *body.Usage
}

func TestRunCostsEveryRequest(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	const n = 40
	input := jsonl(t, n) + `{"model":"in-house-model","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}` + "\n"
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	price, _ := imodel.DefaultPrices().Lookup(imodel.OpenAI, "gpt-4o-mini")
	var actual, estimated float64
	for _, r := range wantIndices(t, results, seq(0, n+1)) {
		c := r.CostUSD
		if r.Index == n {
			if c == nil || !c.PriceUnknown || c.Estimated != nil || c.Actual != nil {
				t.Errorf("unknown model: cost_usd %+v, want price unknown", c)
			}
			continue
		}
		u := usageOf(t, r)
		want := (float64(u.PromptTokens)*price.Input + float64(u.CompletionTokens)*price.Output) / 1e6
		if c == nil || c.PriceUnknown || c.Actual == nil || !sameUSD(*c.Actual, want) {
			t.Fatalf("index %d: cost_usd %+v, want actual %v for usage %+v", r.Index, c, want, u)
		}
		// Estimated before the call: the prompt, and max_tokens of output.
		wantEst := (float64(u.PromptTokens)*price.Input + 8*price.Output) / 1e6
		if c.Estimated == nil || !sameUSD(*c.Estimated, wantEst) || *c.Actual > *c.Estimated {
			t.Errorf("index %d: estimated %v, want %v", r.Index, c.Estimated, wantEst)
		}
		actual += *c.Actual
		estimated += *c.Estimated
	}
	s := sum.Snapshot()
	if !sameUSD(s.CostActual, actual) || !sameUSD(s.CostEstimated, estimated) || s.Priced != n || s.PriceUnknown != 1 ||
		len(s.UnpricedModels) != 1 || s.UnpricedModels[0] != "in-house-model" {
		t.Errorf("summary: %v actual, %v estimated, %d priced, %d unknown %v; the file says %v, %v", s.CostActual, s.CostEstimated, s.Priced, s.PriceUnknown, s.UnpricedModels, actual, estimated)
	}
	if byModel := sum.CostByModel(); len(byModel) != 1 || !sameUSD(byModel["gpt-4o-mini"], actual) {
		t.Errorf("cost by model %v", byModel)
	}
	var buf bytes.Buffer
	s.Write(&buf)
	for _, want := range []string{
		fmt.Sprintf("cost: %s actual (estimated at most %s) for %d requests, ", usd(actual), usd(estimated), n),
		"; prices of " + imodel.DefaultPrices().Date() + "\n",
		`cost: price unknown for 1 request (in-house-model): not counted; give their prices with --prices` + "\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, buf.String())
		}
	}
	if strings.Contains(buf.String(), "spend cap") || strings.Contains(buf.String(), "cache:") {
		t.Errorf("a run without a cap or a cache speaks of them:\n%s", buf.String())
	}
}

func TestRunPricesFromAFile(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	cfg.Endpoint.Model = "in-house-model"
	file := filepath.Join(t.TempDir(), "prices.yaml")
	if err := os.WriteFile(file, []byte("date: \"2027-02-01\"\nproviders:\n  openai:\n    models:\n      in-house-model: {input: 1, output: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prices, err := imodel.LoadPrices(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Prices = prices
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, 5))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		u := usageOf(t, r)
		if c := r.CostUSD; c.Actual == nil || !sameUSD(*c.Actual, float64(u.PromptTokens+2*u.CompletionTokens)/1e6) {
			t.Errorf("index %d: %+v", r.Index, c)
		}
	}
	if s := sum.Snapshot(); s.Priced != 5 || s.PricesDate != "2027-02-01" {
		t.Errorf("summary: %d priced, prices of %q", s.Priced, s.PricesDate)
	}
}

// costOfLines sums the actual cost of result lines.
func costOfLines(results []Result) float64 {
	total := 0.0
	for _, r := range results {
		if r.CostUSD != nil && r.CostUSD.Actual != nil {
			total += *r.CostUSD.Actual
		}
	}
	return total
}

// TestRunStopsAtTheSpendCapAndResumes: a run under a cap stops within one
// request's estimated cost of it, with a line for every request it sent,
// and says how many remain; a rerun with the same cap sends nothing, and a
// rerun with a higher cap finishes the rest, none sent twice.
func TestRunStopsAtTheSpendCapAndResumes(t *testing.T) {
	// Replies of 6 tokens against a max_tokens of 64: each request costs
	// far less than its estimate, so the room estimates hold is freed as
	// requests end, and the run goes on until what was spent leaves no
	// room for one more.
	sim, base := simtest.Start(t, simulator.Config{CompletionTokens: 6, Latency: 2 * time.Millisecond})
	const n = 200
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, `{"id":"q%d","messages":[{"role":"user","content":"Question %d, about %s."}],"max_tokens":64}`+"\n", i, i, strings.Repeat("caps ", i%7))
	}
	input := lines.String()
	price, _ := imodel.DefaultPrices().Lookup(imodel.OpenAI, "gpt-4o-mini")
	// What one request is estimated at, at most.
	est, err := imodel.NewEstimator(testConfig(base).Endpoint, nil)
	if err != nil {
		t.Fatal(err)
	}
	maxEst := 0.0
	for i := range n {
		var body map[string]any
		json.Unmarshal([]byte(strings.Split(input, "\n")[i]), &body)
		delete(body, "id")
		e, _ := est.Estimate(body)
		maxEst = max(maxEst, e.Cost())
	}
	limit := 60 * (15*price.Input + 6*price.Output) / 1e6 // about 60 requests' worth

	cfg := testConfig(base)
	cfg.Concurrency, cfg.MaxCost = 8, limit
	var out bytes.Buffer
	sum, err := Run(context.Background(), cfg, Input{R: strings.NewReader(input), Total: n}, &out, nil)
	if !errors.Is(err, ErrSpendCap) {
		t.Fatalf("Run: %v, want ErrSpendCap", err)
	}
	first := parseResults(t, out.Bytes())
	byIndex(t, first)
	spent := costOfLines(first)
	t.Logf("the cap of $%.8f stopped the run after %d of %d requests, $%.8f spent; one request is estimated at up to $%.8f", limit, len(first), n, spent, maxEst)
	if spent > limit || spent <= limit-maxEst {
		t.Errorf("spent $%.8f under a cap of $%.8f: want within one request's estimate ($%.8f) below it", spent, limit, maxEst)
	}
	for _, r := range first {
		if r.Status != "COMPLETED" {
			t.Errorf("index %d: %s %+v", r.Index, r.Status, r.Error)
		}
	}
	s := sum.Snapshot()
	if !s.SpendCapped || s.Remaining() != n-len(first) || s.Done() != len(first) || !sameUSD(s.Spent(), spent) {
		t.Errorf("summary: capped %v, %d remaining, %d done, $%.8f spent; the file has %d lines for $%.8f", s.SpendCapped, s.Remaining(), s.Done(), s.Spent(), len(first), spent)
	}
	if got := sim.Stats().Requests; got != int64(len(first)) {
		t.Errorf("the simulator served %d requests for %d lines", got, len(first))
	}
	var buf bytes.Buffer
	s.Write(&buf)
	if want := fmt.Sprintf("spend cap: %s of %s spent; stopped: %d requests remain, a rerun with a higher --max-cost continues\n", usd(spent), usd(limit), n-len(first)); !strings.Contains(buf.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, buf.String())
	}

	// The same cap again: what the file's lines cost counts, and leaves
	// no room.
	prior := readPrior(t, out.String())
	if !sameUSD(prior.Spent(), spent) {
		t.Errorf("Prior.Spent = %v, want %v", prior.Spent(), spent)
	}
	again, _, sum2, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input), Prior: prior, Total: n}, nil)
	if !errors.Is(err, ErrSpendCap) || len(again) != 0 || sim.Stats().Requests != int64(len(first)) {
		t.Fatalf("rerun with the same cap: %v, %d lines, %d served", err, len(again), sim.Stats().Requests)
	}
	if s2 := sum2.Snapshot(); s2.Remaining() != n-len(first) || !sameUSD(s2.SpentBefore, spent) || s2.Skipped != len(first) {
		t.Errorf("rerun summary: %d remaining, $%v before, %d skipped", s2.Remaining(), s2.SpentBefore, s2.Skipped)
	}

	// A higher cap continues where the run stopped.
	cfg.MaxCost = 100 * limit
	second, _, sum3, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input), Prior: prior, Total: n}, nil)
	if err != nil {
		t.Fatalf("rerun with a higher cap: %v", err)
	}
	all := append(first, second...)
	ids := map[string]bool{}
	for _, r := range all {
		if ids[string(r.ID)] {
			t.Errorf("id %s has two lines", r.ID)
		}
		ids[string(r.ID)] = true
	}
	if len(ids) != n || sim.Stats().Requests != n {
		t.Errorf("%d requests have lines, the simulator served %d; want %d each", len(ids), sim.Stats().Requests, n)
	}
	if s3 := sum3.Snapshot(); s3.Remaining() != 0 || s3.SpendCapped || !sameUSD(s3.Spent(), costOfLines(all)) {
		t.Errorf("final summary: %d remaining, capped %v, $%v spent", s3.Remaining(), s3.SpendCapped, s3.Spent())
	}
}

// Under a cap, a request of unknown price cannot be counted: it fails, and
// the others run.
func TestRunSpendCapFailsRequestsOfUnknownPrice(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	cfg.MaxCost = 1
	input := jsonl(t, 3) + `{"model":"in-house-model","messages":[{"role":"user","content":"Hi"}]}` + "\n"
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := wantIndices(t, results, seq(0, 4))
	if r := got[3]; r.Status != "FAILED" || r.Error.Kind != "price_unknown" || !strings.Contains(r.Error.Message, `"in-house-model"`) || !strings.Contains(r.Error.Message, "--prices") {
		t.Errorf("unpriced line: %s %+v", r.Status, r.Error)
	}
	if s := sum.Snapshot(); s.Completed != 3 || s.InvalidInput != 1 {
		t.Errorf("summary %+v", s)
	}
}

// A run with a cache answers the requests whose replies it holds: COMPLETED,
// cached, at no cost, with no call; by default only those at temperature 0.
func TestRunAnswersFromTheCache(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	cache, err := imodel.NewFileCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(base)
	cfg.Cache = cache
	var lines strings.Builder
	for i := range 20 {
		temp := "0"
		if i%4 == 3 {
			temp = "0.7" // not deterministic: sent every time
		}
		fmt.Fprintf(&lines, `{"id":"c%d","messages":[{"role":"user","content":"Grade answer %d."}],"max_tokens":8,"temperature":%s}`+"\n", i, i, temp)
	}
	input := lines.String()
	first, _, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range first {
		if r.Cached {
			t.Fatalf("index %d cached on the first run", r.Index)
		}
	}
	// Another results file: every request runs again.
	second, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	firstBy := byIndex(t, first)
	for _, r := range second {
		deterministic := r.Index%4 != 3
		if r.Cached != deterministic || r.Status != "COMPLETED" {
			t.Errorf("index %d: cached %v %s", r.Index, r.Cached, r.Status)
		}
		if !deterministic {
			continue
		}
		if c := r.CostUSD; c == nil || c.Actual == nil || *c.Actual != 0 || r.Tokens.Actual != nil || r.Attempts != 0 {
			t.Errorf("index %d: cost %+v tokens %+v attempts %d, want no cost, no tokens, no call", r.Index, c, r.Tokens, r.Attempts)
		}
		if !bytes.Equal(r.Response, firstBy[r.Index].Response) {
			t.Errorf("index %d: another response than the first run's", r.Index)
		}
	}
	if got := sim.Stats().Requests; got != 20+5 {
		t.Errorf("the simulator served %d requests, want 25 (the 5 not deterministic twice)", got)
	}
	s := sum.Snapshot()
	if s.Cached != 15 || s.Completed != 20 || s.Priced != 5 {
		t.Errorf("summary: %d cached, %d completed, %d priced", s.Cached, s.Completed, s.Priced)
	}
	var buf bytes.Buffer
	s.Write(&buf)
	for _, want := range []string{"cache: 15 requests answered from the cache, at no cost\n", "over the 5 requests that reported usage\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, buf.String())
		}
	}
	// CacheAll answers the rest too.
	cfg.CacheMode = imodel.CacheAll
	third, _, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range third {
		if !r.Cached {
			t.Errorf("index %d not cached with CacheAll", r.Index)
		}
	}
	if got := sim.Stats().Requests; got != 25 {
		t.Errorf("the simulator served %d requests, want 25", got)
	}
}

func TestConfigValidateMaxCost(t *testing.T) {
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1)} {
		cfg := testConfig("http://127.0.0.1:1/v1")
		cfg.MaxCost = bad
		var ce *messages.ConfigError
		if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "MaxCost" {
			t.Errorf("MaxCost %v: %v", bad, err)
		}
	}
}

func TestRunServesCostMetrics(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cache, err := imodel.NewFileCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(base)
	cfg.Cache, cfg.MaxCost = cache, 1
	var lines strings.Builder
	for i := range 10 {
		temp := ""
		if i < 6 {
			temp = `,"temperature":0`
		}
		fmt.Fprintf(&lines, `{"messages":[{"role":"user","content":"Line %d."}],"max_tokens":8%s}`+"\n", i, temp)
	}
	if _, _, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(lines.String())}, nil); err != nil {
		t.Fatal(err)
	}
	cfg.MetricsAddr = "127.0.0.1:0"
	client := newLocalClient(t)
	var out bytes.Buffer
	r := newRunner(cfg, Input{R: strings.NewReader(lines.String())}, &out, nil)
	probe := &metricsProbe{r: r, after: 10, scrape: func(addr string) string {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Errorf("GET /metrics: %v", err)
			return "failed"
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return b.String()
	}}
	r.progress = probe
	sum, err := r.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := sum.Snapshot()
	if s.Cached != 6 || s.Priced != 4 {
		t.Fatalf("summary: %d cached, %d priced", s.Cached, s.Priced)
	}
	var cost float64
	for _, line := range strings.Split(probe.body, "\n") {
		if v, ok := strings.CutPrefix(line, `lionactor_cost_usd_total{model="gpt-4o-mini"} `); ok {
			fmt.Sscan(v, &cost)
		}
	}
	if !sameUSD(cost, s.CostActual) || cost == 0 {
		t.Errorf("lionactor_cost_usd_total %v, the summary says %v:\n%s", cost, s.CostActual, probe.body)
	}
	for _, want := range []string{"lionactor_cache_hits_total 6\n", "lionactor_spend_cap_usd 1\n", "lionactor_spend_committed_usd "} {
		if !strings.Contains(probe.body, want) {
			t.Errorf("metrics lack %q:\n%s", want, probe.body)
		}
	}
}

func TestProgressShowsSpend(t *testing.T) {
	s := fixedSnapshot()
	s.Priced, s.CostActual = 3, 0.012
	want := "progress: 4/8 done (2 ok, 1 failed, 1 invalid), 3 retries, 12 rpm / 600, 600 tpm / 10000, $0.012000 spent ($0.012000/min), ETA 1m0s"
	if got := progressLine(s); got != want {
		t.Errorf("progressLine:\n%s\nwant\n%s", got, want)
	}
	if got := usd(12.345); got != "$12.35" {
		t.Errorf("usd(12.345) = %s", got)
	}
	if got := usd(0.5); got != "$0.5000" {
		t.Errorf("usd(0.5) = %s", got)
	}
}

// priced is a request of tokens priced at a dollar per token, estimated at
// twice what it costs.
func pricedScript(tokens int, created time.Time) *script {
	s := &script{l: messages.NewLifecycle(uuid.New(), &messages.Request{Tokens: tokens, Pricing: perToken(1), EstimatedCost: float64(2 * tokens)}, created)}
	s.add(created, s.l.Pending(created))
	s.add(created, s.l.Queue(created, 1, ""))
	return s
}

type perToken float64

func (p perToken) Cost(u messages.Usage) float64 { return float64(p) * float64(u.TotalTokens) }

func TestReportShowsSpend(t *testing.T) {
	cached := &script{l: messages.NewLifecycle(uuid.New(), &messages.Request{Tokens: 3}, at(0))}
	cached.add(at(0.1), cached.l.Pending(at(0.1)))
	cached.add(at(0.1), cached.l.CompleteFromCache(at(0.1), messages.Result{StatusCode: 200}))
	rec := play(ReportInfo{RPM: 120, Concurrency: 4, Provider: "openai", Model: "gpt-4o-mini"},
		pricedScript(10, at(0)).call(0.2).complete(0.5, 10),
		pricedScript(20, at(0)).call(0.4).complete(1.0, 20),
		newScript(5, at(0)).call(0.6).complete(0.9, 5), // no price
		cached,
	)
	tl := rec.timeline(at(60))
	if tl.lat.n != 3 {
		t.Errorf("%d latencies: the cached answer must not count", tl.lat.n)
	}
	v := tl.view()
	var spent *tile
	for i := range v.Tiles {
		if v.Tiles[i].Label == "spent" {
			spent = &v.Tiles[i]
		}
	}
	if spent == nil || spent.Value != "$30.00" || spent.Note != "$30.00 a minute" {
		t.Errorf("spent tile %+v", spent)
	}
	rows := map[string]fact{}
	for _, f := range v.Table {
		rows[f.Name] = f
	}
	if r := rows["cost"]; r.Value != "$30.00, $30.00 a minute" || !strings.Contains(r.Note, "by the usage 2 requests reported; estimated at most $60.00") {
		t.Errorf("cost row %+v", r)
	}
	if r := rows["price unknown"]; r.Value != "1 request" {
		t.Errorf("price unknown row %+v", r)
	}
	if r := rows["answered from the cache"]; r.Value != "1 request" {
		t.Errorf("cache row %+v", r)
	}
	if last := v.Table[len(v.Table)-1]; last.Name != "wall time" {
		t.Errorf("the table ends with %q, want the wall time", last.Name)
	}
}
