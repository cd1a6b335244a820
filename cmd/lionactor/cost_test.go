package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/internal/batch"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

// spent sums the actual cost of result lines.
func spent(results []batch.Result) float64 {
	total := 0.0
	for _, r := range results {
		if r.CostUSD != nil && r.CostUSD.Actual != nil {
			total += *r.CostUSD.Actual
		}
	}
	return total
}

// TestBatchMaxCostStopsWithItsOwnCodeAndResumes: --max-cost stops the run
// with exit 3, saying how many requests remain; the same command with a
// higher cap finishes them, none sent twice.
func TestBatchMaxCostStopsWithItsOwnCodeAndResumes(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{CompletionTokens: 4})
	dir := t.TempDir()
	const n = 120
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	// About 40 requests' worth at gpt-4o-mini's prices: each is some 14
	// input and 4 output tokens.
	limit := 40 * (14*0.15 + 4*0.60) / 1e6
	args := []string{"batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "600000", "--concurrency", "4"}
	c := newCLI()
	if code := c.run(t, context.Background(), append(args, "--max-cost", fmt.Sprint(limit))...); code != exitSpendCap {
		t.Fatalf("exit %d, want %d", code, exitSpendCap)
	}
	first := readResults(t, out)
	if s := spent(first); s > limit || len(first) == 0 || len(first) == n {
		t.Fatalf("%d lines for $%.8f under a cap of $%.8f", len(first), s, limit)
	}
	stderr := c.stderr.String()
	for _, want := range []string{
		fmt.Sprintf("lionactor: stopped at --max-cost $%g", limit),
		fmt.Sprintf("%d requests remain; rerun with a higher --max-cost to continue", n-len(first)),
		"spend cap: ",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if s := parseSummary(t, stderr); s.remaining != n-len(first) || s.completed != len(first) {
		t.Errorf("summary %+v", s)
	}

	c = newCLI()
	if code := c.run(t, context.Background(), append(args, "--max-cost", fmt.Sprint(10*limit))...); code != exitOK {
		t.Fatalf("rerun with a higher cap: exit %d", code)
	}
	checkEachOnce(t, readResults(t, out), n)
	if got := sim.Stats().Requests; got != n {
		t.Errorf("the simulator served %d requests, want %d: none twice", got, n)
	}
}

// TestBatchDryRunSendsNothingAndNeedsNoKey: a dry run reads the whole file,
// needs no key, writes no file and sends nothing; the run after it charges
// the tokens it said, within the cost range it gave.
func TestBatchDryRunSendsNothingAndNeedsNoKey(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{CompletionTokens: 5})
	dir := t.TempDir()
	const n = 50
	var lines strings.Builder
	for i := range n {
		switch i {
		case 9:
			lines.WriteString("not json\n")
		case 23:
			lines.WriteString(`{"messages":[{"role":"user","content":"no limit on this reply"}]}` + "\n")
		default:
			lines.WriteString(requestLine(i) + "\n")
		}
	}
	in, out := filepath.Join(dir, "requests.jsonl"), filepath.Join(dir, "results.jsonl")
	if err := os.WriteFile(in, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	c.env = map[string]string{} // no key anywhere
	args := []string{"batch", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "6000", "--tpm", "100000", "--concurrency", "8"}
	if code := c.run(t, context.Background(), append(args, "--dry-run", "--output-share", "0.25", "--call-latency", "1s")...); code != exitOK {
		t.Fatalf("dry run: exit %d", code)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("the dry run created %s", out)
	}
	if sim.Stats().Requests != 0 {
		t.Errorf("the dry run sent %d requests", sim.Stats().Requests)
	}
	forecast := c.stdout.String()
	for _, want := range []string{
		"dry run: nothing sent\n",
		fmt.Sprintf("requests: %d in the input; 1 invalid, 0 done before; %d would be sent\n", n, n-1),
		"  line 10: invalid_input: not a JSON object",
		"(1 request set no max_tokens",
		"replies at 25% of max output (--output-share)",
		"wall time: about ",
		"--rpm 6000: 1.5s;", // 48 intervals of 10 ms, then a call of 1 s
		"--concurrency 8 at 1s a call (--call-latency): 7s (binds)", // 7 rounds of 8 calls
	} {
		if !strings.Contains(forecast, want) {
			t.Errorf("forecast lacks %q:\n%s", want, forecast)
		}
	}
	var input, maxOutput int64
	if _, err := fmt.Sscanf(forecast[strings.Index(forecast, "tokens: "):], "tokens: %d input, %d max output", &input, &maxOutput); err != nil {
		t.Fatalf("tokens line: %v", err)
	}

	// The run it forecast.
	c = newCLI()
	if code := c.run(t, context.Background(), args...); code != exitOK {
		t.Fatalf("run: exit %d", code)
	}
	var estimated, prompt int64
	for _, r := range readResults(t, out) {
		if r.Status != "COMPLETED" {
			continue
		}
		estimated += int64(r.Tokens.Estimated)
		var body struct {
			Usage struct {
				PromptTokens int64 `json:"prompt_tokens"`
			} `json:"usage"`
		}
		json.Unmarshal(r.Response, &body)
		prompt += body.Usage.PromptTokens
	}
	if estimated != input+maxOutput || prompt != input {
		t.Errorf("the dry run said %d input + %d output tokens; the run charged %d, the provider counted %d input", input, maxOutput, estimated, prompt)
	}

	// With the results there, the dry run skips what is done.
	c = newCLI()
	if code := c.run(t, context.Background(), append(args, "--dry-run")...); code != exitOK {
		t.Fatalf("second dry run: exit %d", code)
	}
	if want := fmt.Sprintf("requests: %d in the input; 0 invalid, %d done before; 0 would be sent\n", n, n); !strings.Contains(c.stdout.String(), want) {
		t.Errorf("second forecast lacks %q:\n%s", want, c.stdout.String())
	}
}

func TestBatchCacheDir(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	const n = 12
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, `{"id":"t%d","messages":[{"role":"user","content":"Grade %d."}],"max_tokens":6,"temperature":0}`+"\n", i, i)
	}
	in := filepath.Join(dir, "requests.jsonl")
	if err := os.WriteFile(in, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(dir, "cache")
	run := func(out string) []batch.Result {
		t.Helper()
		c := newCLI()
		if code := c.run(t, context.Background(), "batch", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "600000", "--cache-dir", cacheDir); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		return readResults(t, out)
	}
	for _, r := range run(filepath.Join(dir, "first.jsonl")) {
		if r.Cached {
			t.Errorf("index %d cached on the first run", r.Index)
		}
	}
	for _, r := range run(filepath.Join(dir, "second.jsonl")) {
		if !r.Cached || r.Status != "COMPLETED" || r.CostUSD == nil || r.CostUSD.Actual == nil || *r.CostUSD.Actual != 0 {
			t.Errorf("index %d: cached %v %s cost %+v", r.Index, r.Cached, r.Status, r.CostUSD)
		}
	}
	if got := sim.Stats().Requests; got != n {
		t.Errorf("the simulator served %d requests, want %d", got, n)
	}
}

func TestBatchCostFlagErrors(t *testing.T) {
	dir := t.TempDir()
	in := writeRequests(t, dir, 3)
	badPrices := filepath.Join(dir, "prices.yaml")
	if err := os.WriteFile(badPrices, []byte("providers:\n  openai:\n    models:\n      m: {input: -1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	goodPrices := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(goodPrices, []byte("providers:\n  openai:\n    models:\n      in-house: {input: 1, output: 2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte("max-cost: -2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"batch", in, "--url", "http://127.0.0.1:1/v1", "--model", testModel}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--prices", badPrices}, "--prices: " + badPrices},
		{[]string{"--prices", filepath.Join(dir, "missing.yaml")}, "--prices: "},
		{[]string{"--max-cost", "-1"}, "--max-cost: must be an amount of US dollars"},
		{[]string{"--config", config}, "--max-cost: must be an amount of US dollars"},
		{[]string{"--max-cost", "1", "--model", "in-house"}, `--max-cost: no price for openai model "in-house"`},
		{[]string{"--cache-all"}, "--cache-all: needs --cache-dir"},
		{[]string{"--dry-run", "--output-share", "2"}, "--output-share: must be a share in [0, 1]"},
		{[]string{"--dry-run", "--call-latency", "-1s"}, "--call-latency: must not be negative"},
		{[]string{"--dry-run", "--max-cost", "1", "--model", "in-house"}, `--max-cost: no price for openai model "in-house"`},
	}
	for _, tc := range cases {
		c := newCLI()
		if code := c.run(t, context.Background(), append(base, tc.args...)...); code != exitUsage || !strings.Contains(c.stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 with %q", tc.args, code, c.stderr.String(), tc.want)
		}
	}
	// A price file names the model the cap needs.
	c := newCLI()
	if code := c.run(t, context.Background(), append(base, "--dry-run", "--max-cost", "1", "--model", "in-house", "--prices", goodPrices, "--cache-dir", filepath.Join(dir, "cache"))...); code != exitOK {
		t.Errorf("--prices giving the model's price: exit %d", code)
	}
	if out := c.stdout.String(); !strings.Contains(out, "3 would be sent") || !strings.Contains(out, "(--cache-dir: the requests the cache would answer are counted as sent)") {
		t.Errorf("forecast:\n%s", out)
	}
}

// The command refuses an input with two lines of one id; its dry run says
// what it found and refuses it too.
func TestBatchDryRunRefusesDuplicateIDs(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "requests.jsonl")
	if err := os.WriteFile(in, []byte(requestLine(0)+"\n"+requestLine(1)+"\n"+requestLine(0)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	code := c.run(t, context.Background(), "batch", in, "--dry-run", "--model", testModel)
	if code != exitUsage || !strings.Contains(c.stderr.String(), `input: lines 1 and 3 have the same id "row-0"`) {
		t.Errorf("exit %d, stderr %q", code, c.stderr.String())
	}
	if !strings.Contains(c.stdout.String(), "  line 3: invalid_input: lines 1 and 3 have the same id") {
		t.Errorf("forecast:\n%s", c.stdout.String())
	}
}
