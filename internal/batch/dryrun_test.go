package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lionactor/lionactor/batchapi"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/imodel/tokens"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

// dryInput is a batch with every kind of line: requests with and without
// max_tokens, of a priced and of an unknown model, a line that is not JSON,
// one that is not an object, a request larger than the token limit, and a
// blank line.
func dryInput(n int) string {
	var b strings.Builder
	for i := range n {
		switch {
		case i == 7:
			b.WriteString("{not json\n")
		case i == 11:
			b.WriteString("[1, 2]\n")
		case i == 13:
			b.WriteString("\n")
		case i == 17:
			fmt.Fprintf(&b, `{"messages":[{"role":"user","content":%q}],"max_tokens":10}`+"\n", strings.Repeat("huge ", 3000))
		case i == 19:
			fmt.Fprintf(&b, `{"model":"in-house-model","messages":[{"role":"user","content":"Line %d."}],"max_tokens":9}`+"\n", i)
		case i%5 == 0:
			fmt.Fprintf(&b, `{"id":"r%d","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Line %d: %s"}]}`+"\n", i, i, strings.Repeat("word ", i%9))
		default:
			fmt.Fprintf(&b, `{"id":"r%d","messages":[{"role":"user","content":"Line %d: %s"}],"max_tokens":%d}`+"\n", i, i, strings.Repeat("word ", i%9), 8+i%24)
		}
	}
	return b.String()
}

// TestDryRunMatchesTheRun: the dry run of an input with invalid lines
// says what the run then does: the same lines failed unsent, for the same
// reasons; the same tokens, to the token; and a cost in its range.
func TestDryRunMatchesTheRun(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{CompletionTokens: 12})
	cfg := testConfig(base)
	cfg.TPM = 2000 // the huge line exceeds it
	const n = 60
	input := dryInput(n)
	f, err := DryRun(cfg, Input{R: strings.NewReader(input)}, DryRunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(input)}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// The same lines fail unsent, for the same reasons.
	var runInvalid []InvalidLine
	var estimated, promptTokens int64
	var actualCost, estimatedCost float64
	sent := 0
	for _, r := range results {
		if r.Status == "FAILED" && r.Attempts == 0 {
			msg := strings.TrimPrefix(r.Error.Message, fmt.Sprintf("line %d: ", r.Index+1))
			runInvalid = append(runInvalid, InvalidLine{Line: r.Index + 1, Kind: r.Error.Kind, Reason: msg})
			continue
		}
		if r.Status != "COMPLETED" {
			t.Fatalf("index %d: %s %+v", r.Index, r.Status, r.Error)
		}
		sent++
		estimated += int64(r.Tokens.Estimated)
		promptTokens += int64(usageOf(t, r).PromptTokens)
		if c := r.CostUSD; c.Actual != nil {
			actualCost += *c.Actual
			estimatedCost += *c.Estimated
		}
	}
	byLine := func(ls []InvalidLine) map[int]InvalidLine {
		m := map[int]InvalidLine{}
		for _, l := range ls {
			m[l.Line] = l
		}
		return m
	}
	dry, run := byLine(f.Invalid), byLine(runInvalid)
	if len(dry) != 3 || len(dry) != len(run) {
		t.Errorf("dry run: %d invalid lines %v; the run failed %d unsent %v", len(dry), f.Invalid, len(run), runInvalid)
	}
	for line, d := range dry {
		if r := run[line]; r != d {
			t.Errorf("line %d: dry run says %+v, the run %+v", line, d, r)
		}
	}
	if f.Requests != n-1 || f.Sent != sent || f.DoneBefore != 0 || sum.Snapshot().Completed != sent {
		t.Errorf("dry run: %d requests, %d to send; the run sent %d", f.Requests, f.Sent, sent)
	}
	// Tokens, to the token: what the run charged, and the prompt tokens
	// the provider counted.
	if f.InputTokens+f.OutputTokens != estimated {
		t.Errorf("dry run: %d + %d tokens; the run estimated %d", f.InputTokens, f.OutputTokens, estimated)
	}
	if f.InputTokens != promptTokens {
		t.Errorf("dry run: %d input tokens; the simulator counted %d", f.InputTokens, promptTokens)
	}
	if want := n / 5; f.NoMaxTokens != want {
		t.Errorf("%d without max_tokens, want %d", f.NoMaxTokens, want)
	}
	// Cost: within the range, and the run's estimate is its top.
	if f.PriceUnknown != 1 || f.UnpricedModels[0] != "in-house-model" || f.Priced != sent-1 {
		t.Errorf("priced %d, unknown %d %v", f.Priced, f.PriceUnknown, f.UnpricedModels)
	}
	if actualCost < f.CostInput || actualCost > f.CostMax || math.Abs(estimatedCost-f.CostMax) > 1e-12 {
		t.Errorf("the run cost $%.8f (estimated $%.8f); the dry run said $%.8f ... $%.8f", actualCost, estimatedCost, f.CostInput, f.CostMax)
	}
	if !(f.CostInput < f.CostLikely && f.CostLikely < f.CostMax) {
		t.Errorf("likely $%.8f outside $%.8f ... $%.8f", f.CostLikely, f.CostInput, f.CostMax)
	}
	t.Logf("dry run $%.8f ... $%.8f, likely $%.8f; the run cost $%.8f", f.CostInput, f.CostMax, f.CostLikely, actualCost)

	var buf bytes.Buffer
	f.Write(&buf)
	out := buf.String()
	for _, want := range []string{
		"dry run: nothing sent\n",
		fmt.Sprintf("requests: %d in the input; 3 invalid, 0 done before; %d would be sent\n", n-1, sent),
		"  line 8: invalid_input: not a JSON object: ",
		"  line 12: invalid_input: not a JSON object: json: cannot unmarshal array",
		"  line 18: too_many_tokens: estimated ",
		fmt.Sprintf("tokens: %s input, %s max output (12 requests set no max_tokens: counted at the limiter's reservation", count(f.InputTokens), count(f.OutputTokens)),
		fmt.Sprintf("cost: %s input only ... %s with every reply at max output; likely %s, replies at 50%% of max output", usd(f.CostInput), usd(f.CostMax), usd(f.CostLikely)),
		"cost: price unknown for 1 request (in-house-model): not counted",
		"wall time: about ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Write lacks %q:\n%s", want, out)
		}
	}
}

// Requests with a result already are skipped, as the run skips them; under
// a spend cap a request of unknown price is invalid, as the run fails it.
func TestDryRunSkipsWhatIsDoneAndNeedsPricesUnderACap(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1/v1")
	cfg.Endpoint.APIKey = "" // a dry run needs no key
	input := jsonl(t, 10) + `{"model":"in-house-model","messages":[{"role":"user","content":"Hi"}]}` + "\n"
	prior := readPrior(t, resultLines(t, input, "COMPLETED", 0, 1, 2))
	cfg.MaxCost = 5
	f, err := DryRun(cfg, Input{R: strings.NewReader(input), Prior: prior}, DryRunOptions{OutputShare: 0.25, CallLatency: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if f.Requests != 11 || f.DoneBefore != 3 || f.Sent != 7 || len(f.Invalid) != 1 || f.Invalid[0].Kind != "price_unknown" || f.Invalid[0].Line != 11 {
		t.Errorf("forecast %+v", f)
	}
	if f.OutputShare != 0.25 || f.CallLatency != time.Second {
		t.Errorf("assumptions %v %v", f.OutputShare, f.CallLatency)
	}
	// Likely: input and a quarter of the output.
	if want := f.InputTokens + int64(math.Round(0.25*float64(f.OutputTokens))); f.LikelyTokens() != want {
		t.Errorf("likely tokens %d, want %d", f.LikelyTokens(), want)
	}
}

func TestDryRunWallTime(t *testing.T) {
	f := &Forecast{Sent: 1201, RPM: 600, Burst: 1, TPM: 100_000, Concurrency: 10, CallLatency: 2 * time.Second,
		InputTokens: 150_000, OutputTokens: 100_000, OutputShare: 0.5}
	times := f.WallTimes()
	// 1,200 intervals of 100 ms, then the last call; 200,000 likely tokens
	// less the bucket's first minute at 100,000 a minute; 121 rounds of
	// 10 calls of 2 s.
	if times[boundRPM] != 2*time.Minute+2*time.Second || times[boundTPM] != time.Minute+2*time.Second || times[boundConcurrency] != 242*time.Second {
		t.Errorf("wall times %v", times)
	}
	if d, b := f.WallTime(); d != 242*time.Second || b != boundConcurrency {
		t.Errorf("WallTime = %v %s, want the concurrency cap's", d, b)
	}
	var buf bytes.Buffer
	f.Write(&buf)
	if want := "wall time: about 4m2s, at the concurrency limit; --rpm 600: 2m2s; --tpm 100000: 1m2s for 200,000 likely tokens; --concurrency 10 at 2s a call (--call-latency): 4m2s (binds)\n"; !strings.Contains(buf.String(), want) {
		t.Errorf("Write lacks %q:\n%s", want, buf.String())
	}
	f.Concurrency = 100
	if _, b := f.WallTime(); b != boundRPM {
		t.Errorf("binding: %s, want rpm", b)
	}
	f.TPM, f.InputTokens = 10_000, 1_000_000
	if _, b := f.WallTime(); b != boundTPM {
		t.Errorf("binding: %s, want tpm", b)
	}
	empty := &Forecast{RPM: 600, Concurrency: 4}
	buf.Reset()
	empty.Write(&buf)
	if !strings.Contains(buf.String(), "wall time: nothing to send\n") || strings.Contains(buf.String(), "cost:") {
		t.Errorf("empty forecast:\n%s", buf.String())
	}
	if roundWall(90*time.Minute+20*time.Second) != 90*time.Minute {
		t.Errorf("roundWall")
	}
}

func TestDryRunRefusesBadSettings(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1/v1")
	for _, tc := range []struct {
		opts  DryRunOptions
		field string
	}{{DryRunOptions{OutputShare: 1.5}, "OutputShare"}, {DryRunOptions{OutputShare: math.NaN()}, "OutputShare"}, {DryRunOptions{CallLatency: -time.Second}, "CallLatency"}} {
		var ce *messages.ConfigError
		if _, err := DryRun(cfg, Input{R: strings.NewReader("")}, tc.opts); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%+v: %v", tc.opts, err)
		}
	}
	bad := cfg
	bad.RPM = 0
	if _, err := DryRun(bad, Input{R: strings.NewReader("")}, DryRunOptions{}); err == nil {
		t.Error("an invalid config was accepted")
	}
	bad = cfg
	bad.Endpoint.Provider = "nope"
	if _, err := DryRun(bad, Input{R: strings.NewReader("")}, DryRunOptions{}); err == nil {
		t.Error("an invalid endpoint was accepted")
	}
	_, err := DryRun(cfg, Input{R: iotest.TimeoutReader(strings.NewReader(jsonl(t, 2000)))}, DryRunOptions{})
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("read error: %v", err)
	}
}

// dryRunInput is n lines as a batch of one instruction has them: the same
// long system prompt, a question each.
func dryRunInput(n int) []byte {
	system := "You grade short answers to arithmetic questions. Reply with a grade from 0 to 10 and one sentence of reason." + strings.Repeat(" Be strict and fair about every point of the answer.", 20)
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"id":"q%d","messages":[{"role":"system","content":%q},{"role":"user","content":"Question %d: what is %d + %d? Answer: %d."}],"max_tokens":64,"metadata":{"row":%d}}`+"\n",
			i, system, i, i, 2*i, 3*i+i%3, i)
	}
	return b.Bytes()
}

// BenchmarkDryRun100k forecasts a file of 100,000 requests: what the
// figure in BENCHMARKS.md is.
func BenchmarkDryRun100k(b *testing.B) {
	input := dryRunInput(100_000)
	cfg := testConfig("http://127.0.0.1:1/v1")
	tokens.ForModel("gpt-4o-mini") // the vocabulary loads once per process
	b.SetBytes(int64(len(input)))
	for b.Loop() {
		f, err := DryRun(cfg, Input{R: bytes.NewReader(input)}, DryRunOptions{})
		if err != nil || f.Sent != 100_000 {
			b.Fatalf("%v, %d sent", err, f.Sent)
		}
	}
}

// Two lines of one id: the later is invalid, as Run fails it, and the
// forecast keeps the error the command refuses such an input with.
func TestDryRunFindsDuplicateIDs(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1/v1")
	input := requestLine(t, 0) + "\n" + requestLine(t, 1) + "\n" + requestLine(t, 0) + "\n"
	f, err := DryRun(cfg, Input{R: strings.NewReader(input)}, DryRunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var dup *DuplicateIDError
	if !errors.As(f.DuplicateID, &dup) || dup.First != 1 || dup.Second != 3 || len(f.Invalid) != 1 || f.Invalid[0].Line != 3 || f.Sent != 2 {
		t.Errorf("forecast: duplicate %v, invalid %+v, %d sent", f.DuplicateID, f.Invalid, f.Sent)
	}
}

// Through the batch API the forecast is at the batch price, and its wall
// time is the batches', not the limits'.
func TestDryRunAtTheBatchPrice(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1/v1")
	input := dryInput(40)
	online, err := DryRun(cfg, Input{R: strings.NewReader(input)}, DryRunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.BatchAPI = &batchapi.Config{}
	batched, err := DryRun(cfg, Input{R: strings.NewReader(input)}, DryRunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	price, _ := imodel.DefaultPrices().Lookup(imodel.OpenAI, "gpt-4o-mini")
	f := 1 - price.BatchDiscount
	if price.BatchDiscount <= 0 || !sameUSD(batched.CostMax, f*online.CostMax) || !sameUSD(batched.CostInput, f*online.CostInput) ||
		!sameUSD(batched.CostLikely, f*online.CostLikely) || batched.InputTokens != online.InputTokens {
		t.Errorf("batch forecast $%v ... $%v, online $%v ... $%v; want %v of it", batched.CostInput, batched.CostMax, online.CostInput, online.CostMax, f)
	}
	var buf bytes.Buffer
	batched.Write(&buf)
	for _, want := range []string{"at the batch price (--via batch-api)", "wall time: as long as the provider takes with the batches, up to 24h0m0s"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("Write lacks %q:\n%s", want, buf.String())
		}
	}
}
