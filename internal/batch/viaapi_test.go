package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/batchapi"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

const testAnthropicKey = "sk-ant-test-batch-0001"

// apiConfig is testConfig for provider p, run through the batch API with a
// journal in dir and polls every 2 ms (the simulator's batch clock is moved
// by the tests).
func apiConfig(t *testing.T, p imodel.Provider, baseURL, dir string) Config {
	cfg := testConfig(baseURL)
	if p == imodel.Anthropic {
		cfg.Endpoint.Provider, cfg.Endpoint.APIKey, cfg.Endpoint.Model = imodel.Anthropic, testAnthropicKey, "claude-sonnet-4-5"
	}
	cfg.BatchAPI = &batchapi.Config{Journal: filepath.Join(dir, "results.jsonl.batches.jsonl"), Poll: 2 * time.Millisecond}
	cfg.client = newLocalClient(t)
	return cfg
}

// creates counts the batch creates a client sends, and tells of each
// that succeeded.
type creates struct {
	base http.RoundTripper
	done chan struct{}
}

func (c *creates) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusOK && r.Method == http.MethodPost &&
		(strings.HasSuffix(r.URL.Path, "/batches") && !strings.Contains(r.URL.Path, "/cancel")) {
		c.done <- struct{}{}
	}
	return resp, err
}

// counting makes cfg's client tell of each batch created.
func counting(cfg *Config) *creates {
	c := &creates{base: cfg.client.Transport, done: make(chan struct{}, 100)}
	cfg.client = &http.Client{Transport: c}
	return c
}

// simBatches is how many batches the simulator created.
func simBatches(sim *simulator.Server) int64 {
	st := sim.Stats().Batches
	return st.OpenAIBatches + st.AnthropicBatches
}

var apiProviders = []imodel.Provider{imodel.OpenAI, imodel.Anthropic}

// The same file run online and through the batch API gives the same
// result lines: the same keys, indices, ids, metadata, statuses and usage;
// the batch's lines name their batch.
func TestViaBatchAPIMatchesOnline(t *testing.T) {
	for _, p := range apiProviders {
		t.Run(string(p), func(t *testing.T) {
			_, base := simtest.Start(t, simulator.Config{Seed: 3, CompletionTokens: 6})
			const n = 300
			in := jsonl(t, n) + "\n" + "not json\n"
			cfg := apiConfig(t, p, base, t.TempDir())
			cfg.BatchAPI.MaxRequests = 120
			batched, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(in), Total: n + 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			online := cfg
			online.BatchAPI = nil
			direct, _, _, err := runInput(t, context.Background(), online, Input{R: strings.NewReader(in), Total: n + 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, o := byIndex(t, batched), byIndex(t, direct)
			if len(b) != n+1 || len(o) != n+1 {
				t.Fatalf("%d lines through batches, %d online, want %d", len(b), len(o), n+1)
			}
			batches := map[string]int{}
			price, ok := imodel.DefaultPrices().Lookup(p, cfg.modelOf(map[string]any{}))
			if !ok || price.BatchDiscount <= 0 {
				t.Fatalf("%s: no batch discount in the price table: %+v", p, price)
			}
			var batchCost, onlineCost float64
			for i, want := range o {
				got := b[i]
				if got.Key != want.Key || got.ContentHash != want.ContentHash || string(got.ID) != string(want.ID) || got.Status != want.Status ||
					!sameJSON(t, orNull(got.Metadata), orNull(want.Metadata)) || got.Tokens.Estimated != want.Tokens.Estimated ||
					(want.Tokens.Actual == nil) != (got.Tokens.Actual == nil) || want.Tokens.Actual != nil && *got.Tokens.Actual != *want.Tokens.Actual {
					t.Fatalf("index %d: batch %+v, online %+v", i, got, want)
				}
				if want.Error != nil && (got.Error == nil || got.Error.Kind != want.Error.Kind) {
					t.Errorf("index %d: batch error %+v, online %+v", i, got.Error, want.Error)
				}
				if got.Status == "COMPLETED" {
					if got.ProviderBatch == nil || got.ProviderBatch.ID == "" || got.ProviderBatch.CustomID == "" || got.Attempts != 1 || got.RequestID == "" {
						t.Fatalf("index %d: %+v", i, got)
					}
					batches[got.ProviderBatch.ID]++
					// The same usage at the batch price.
					gc, wc := got.CostUSD, want.CostUSD
					if gc == nil || wc == nil || gc.Actual == nil || wc.Actual == nil || gc.Estimated == nil ||
						!sameUSD(*gc.Actual, *wc.Actual*(1-price.BatchDiscount)) || !sameUSD(*gc.Estimated, *wc.Estimated*(1-price.BatchDiscount)) {
						t.Fatalf("index %d: cost through a batch %+v, online %+v: want the batch price, %v off", i, gc, wc, price.BatchDiscount)
					}
					batchCost += *gc.Actual
					onlineCost += *wc.Actual
					// The simulator's text depends on the request only; the
					// answers' IDs and times differ.
					if g, w := replyText(t, got.Response), replyText(t, want.Response); g == "" || g != w {
						t.Errorf("index %d: batch answered %q, online %q", i, g, w)
					}
				}
			}
			if len(batches) != 3 {
				t.Errorf("%d batches answered, want 3 (120 requests each at most)", len(batches))
			}
			s := sum.Snapshot()
			if s.Completed != n || s.InvalidInput != 1 || s.Batches == nil || s.Batches.Created != 3 || s.Calls != 0 {
				t.Errorf("summary %+v, batches %+v", s, s.Batches)
			}
			var w bytes.Buffer
			s.Write(&w)
			out := w.String()
			if !sameUSD(s.CostActual, batchCost) || !sameUSD(s.BatchCost, batchCost) || math.Abs(s.BatchCostOnline-onlineCost) > 1e-9 {
				t.Errorf("summary: $%v spent, $%v at the batch price, $%v online; the lines say $%v, and $%v online",
					s.CostActual, s.BatchCost, s.BatchCostOnline, batchCost, onlineCost)
			}
			if want := fmt.Sprintf("batch price: the batches' answers cost %s; the same usage online would have cost %s\n", usd(batchCost), usd(onlineCost)); !strings.Contains(out, want) {
				t.Errorf("summary lacks %q:\n%s", want, out)
			}
			if !strings.Contains(out, "provider batches: 3 created, 0 resumed, 3 ended; 0 requests redone in a new batch, 0 sent online") ||
				strings.Contains(out, "rate:") || strings.Contains(out, "call latency") {
				t.Errorf("summary:\n%s", out)
			}
		})
	}
}

// replyText is the text of a chat answer of either provider.
func replyText(t *testing.T, body []byte) string {
	var r struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Content []struct{ Text string } `json:"content"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	if len(r.Choices) > 0 {
		return r.Choices[0].Message.Content
	}
	if len(r.Content) > 0 {
		return r.Content[0].Text
	}
	return ""
}

func orNull(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

// A 10,000-line file goes into several batches, each within the size
// given, and every request has one result.
func TestViaBatchAPITenThousandLines(t *testing.T) {
	for _, p := range apiProviders {
		t.Run(string(p), func(t *testing.T) {
			sim, base := simtest.Start(t, simulator.Config{Seed: 5, CompletionTokens: 2})
			const n = 10_000
			cfg := apiConfig(t, p, base, t.TempDir())
			cfg.BatchAPI.MaxRequests = 3000
			results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n)), Total: n}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := wantIndices(t, results, seq(0, n))
			per := map[string]int{}
			for _, r := range got {
				if r.Status != "COMPLETED" || r.ProviderBatch == nil {
					t.Fatalf("index %d: %+v", r.Index, r)
				}
				per[r.ProviderBatch.ID]++
			}
			if len(per) != 4 || simBatches(sim) != 4 {
				t.Errorf("%d batches answered, %d created at the simulator; want 4", len(per), simBatches(sim))
			}
			for id, k := range per {
				if k > 3000 {
					t.Errorf("batch %s answered %d requests", id, k)
				}
			}
			if s := sum.Snapshot(); s.Completed != n || s.Batches.Created != 4 {
				t.Errorf("summary %+v", s)
			}
		})
	}
}

// A run interrupted once its batches were created leaves them running; the
// rerun with the same results file and journal polls them, creates none,
// and writes each request's line once.
func TestViaBatchAPIResumes(t *testing.T) {
	for _, p := range apiProviders {
		t.Run(string(p), func(t *testing.T) {
			sim, base := simtest.Start(t, simulator.Config{Seed: 5, BatchDelay: time.Hour})
			dir := t.TempDir()
			const n = 500
			in := jsonl(t, n)
			cfg := apiConfig(t, p, base, dir)
			cfg.BatchAPI.MaxRequests = 150
			c := counting(&cfg)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				for range 4 {
					<-c.done
				}
				cancel()
			}()
			var out, progress bytes.Buffer
			sum, err := Run(ctx, cfg, Input{R: strings.NewReader(in), Total: n}, &out, &Lines{W: &progress})
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("Run: %v", err)
			}
			if !strings.Contains(progress.String(), "0/500 done (0 ok, 0 failed, 0 invalid), 0 retries, provider batches: 4 running, 0 ended, ETA -") {
				t.Errorf("progress:\n%s", progress.String())
			}
			s := sum.Snapshot()
			if out.Len() != 0 || s.Remaining() != n || s.Batches.Running != 4 || s.Batches.Created != 4 {
				t.Fatalf("interrupted: %d bytes written, %d remaining, batches %+v", out.Len(), s.Remaining(), s.Batches)
			}
			var w bytes.Buffer
			s.Write(&w)
			if !strings.Contains(w.String(), "4 left running (a rerun with the same results file collects their answers)") {
				t.Errorf("summary:\n%s", w.String())
			}

			sim.AdvanceBatches(time.Hour)
			prior := readPrior(t, out.String())
			sum, err = Run(context.Background(), cfg, Input{R: strings.NewReader(in), Prior: prior, Total: n}, &out, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantIndices(t, parseResults(t, out.Bytes()), seq(0, n))
			if got := simBatches(sim); got != 4 {
				t.Errorf("the simulator created %d batches, want the 4 of the first run", got)
			}
			if b := sum.Snapshot().Batches; b.Resumed != 4 || b.Created != 0 {
				t.Errorf("rerun batches %+v", b)
			}

			// A third run has nothing to do: it creates nothing and writes
			// nothing.
			before := out.Len()
			sum, err = Run(context.Background(), cfg, Input{R: strings.NewReader(in), Prior: readPrior(t, out.String()), Total: n}, &out, nil)
			if err != nil || out.Len() != before || simBatches(sim) != 4 || sum.Snapshot().Skipped != n {
				t.Errorf("third run: %v, %d bytes more, %d batches, summary %+v", err, out.Len()-before, simBatches(sim), sum.Snapshot())
			}
		})
	}
}

// Requests whose batch expired or errored are redone, in new batches or,
// with FallbackOnline, online, whose lines are those of online requests.
func TestViaBatchAPIRedoesExpiredAndFailed(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		for _, p := range apiProviders {
			t.Run(fmt.Sprintf("%s/fallback=%v", p, fallback), func(t *testing.T) {
				faults := simulator.BatchFaults{Expired: 0.15, ServerError: 0.1}
				_, base := simtest.Start(t, simulator.Config{Seed: 9, BatchFaults: faults})
				const n = 200
				cfg := apiConfig(t, p, base, t.TempDir())
				cfg.MaxAttempts = 30
				cfg.BatchAPI.FallbackOnline = fallback
				var report bytes.Buffer
				cfg.Report = &report
				results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n)), Total: n}, nil)
				if err != nil {
					t.Fatal(err)
				}
				got := wantIndices(t, results, seq(0, n))
				redone := 0
				for _, r := range got {
					if r.Status != "COMPLETED" {
						t.Fatalf("index %d: %+v", r.Index, r.Error)
					}
					if r.Attempts > 1 {
						redone++
						if fallback && r.ProviderBatch != nil {
							t.Errorf("index %d answered online names a batch", r.Index)
						}
					}
				}
				s := sum.Snapshot()
				b := s.Batches
				if fallback {
					if b.Online == 0 || b.Online != redone || b.Resubmitted != 0 || s.Calls != b.Online {
						t.Errorf("batches %+v, %d calls, %d redone", b, s.Calls, redone)
					}
				} else if b.Resubmitted == 0 || b.Online != 0 || redone == 0 || s.Calls != 0 {
					t.Errorf("batches %+v, %d calls, %d redone", b, s.Calls, redone)
				}
				if !bytes.Contains(report.Bytes(), []byte("provider batches")) {
					t.Error("the report has no row of provider batches")
				}
				var w bytes.Buffer
				s.Write(&w)
				if strings.Contains(w.String(), "rate:") != fallback {
					t.Errorf("summary:\n%s", w.String())
				}
			})
		}
	}
}

// Ordered, the lines come in input order, blank and done lines skipped.
func TestViaBatchAPIOrdered(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Seed: 2, BatchFaults: simulator.BatchFaults{Expired: 0.2}})
	const n = 120
	in := jsonl(t, n)
	lines := strings.SplitAfter(in, "\n")
	in = strings.Join(lines[:50], "") + "\n" + strings.Join(lines[50:], "")
	prior := readPrior(t, resultLines(t, in, "COMPLETED", 3, 4, 5))
	cfg := apiConfig(t, imodel.OpenAI, base, t.TempDir())
	cfg.Ordered = true
	cfg.MaxAttempts = 20
	cfg.BatchAPI.MaxRequests = 25
	results, _, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(in), Prior: prior}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var idx []int
	for _, r := range results {
		idx = append(idx, r.Index)
	}
	if !slices.IsSorted(idx) || len(idx) != n-3 || slices.Contains(idx, 50) || slices.Contains(idx, 4) {
		t.Errorf("indices %v", idx)
	}
}

// A request whose last result came from a batch and failed, rerun with
// RetryFailed, goes into a new batch even though the journal still holds
// its old one unsettled.
func TestViaBatchAPIRetryFailedMakesANewBatch(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{Seed: 4})
	dir := t.TempDir()
	in := jsonl(t, 3) + `{"id":"bad","messages":[{"role":"user","content":"hi"}],"stream":true}` + "\n"
	cfg := apiConfig(t, imodel.OpenAI, base, dir)
	_, out, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(in)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var first Result
	for _, r := range parseResults(t, out) {
		if string(r.ID) == `"bad"` {
			first = r
		}
	}
	if first.Status != "FAILED" || first.Error.Kind != "bad_request" || first.ProviderBatch == nil {
		t.Fatalf("the streamed request: %+v", first)
	}
	// The journal is made to look as if the run had crashed before it
	// recorded the batch settled.
	journal := cfg.BatchAPI.Journal
	data, _ := os.ReadFile(journal)
	var kept []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if !strings.Contains(l, `"event":"settled"`) {
			kept = append(kept, l)
		}
	}
	os.WriteFile(journal, []byte(strings.Join(kept, "\n")+"\n"), 0o600)

	cfg.RetryFailed = true
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(in), Prior: readPrior(t, string(out))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].ProviderBatch == nil || results[0].ProviderBatch.ID == first.ProviderBatch.ID {
		t.Errorf("rerun: %+v", results)
	}
	if b := sum.Snapshot().Batches; b.Resumed != 1 || b.Created != 1 || simBatches(sim) != 2 {
		t.Errorf("rerun batches %+v", b)
	}
}

func TestViaBatchAPISetupErrors(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1/v1")
	cfg.BatchAPI = &batchapi.Config{Poll: -time.Second}
	var ce *messages.ConfigError
	if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "BatchAPI.Poll" {
		t.Errorf("negative poll: %v", err)
	}
	cfg.BatchAPI = &batchapi.Config{}
	for _, c := range []struct {
		field string
		set   func(*Config)
	}{
		{"BatchAPI", func(c *Config) {
			c.Deployments = []Deployment{deployment("a", "m", "sk-a", "http://127.0.0.1:1/v1", 60)}
		}},
		{"MaxCost", func(c *Config) { c.MaxCost = 1 }},
		{"Cache", func(c *Config) { c.Cache = nopCache{} }},
	} {
		bad := cfg
		c.set(&bad)
		if err := bad.Validate(); !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("through the batch API with %s: %v, want a ConfigError naming it", c.field, err)
		}
	}
	cfg.Endpoint.Provider = imodel.OpenAICompatible
	if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "Provider" || !strings.Contains(ce.Reason, "openai-compatible") {
		t.Errorf("openai-compatible: %v", err)
	}
	// A journal of another endpoint's batches stops the run before
	// anything is sent.
	_, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	cfg = apiConfig(t, imodel.OpenAI, base, dir)
	os.WriteFile(cfg.BatchAPI.Journal, []byte(`{"v":1,"event":"submit","part":"p","provider":"anthropic","base_url":"https://api.anthropic.com/v1","keys":["k"]}`+"\n"), 0o600)
	if _, _, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, 2))}, nil); !errors.Is(err, batchapi.ErrForeignBatches) {
		t.Errorf("foreign journal: %v", err)
	}
}

// With Ordered, a line held back for an earlier one is not written: the
// batch that answered it is not settled until it is.
func TestViaBatchAPIOrderedSettlesOnceWritten(t *testing.T) {
	var out bytes.Buffer
	r := &runner{cfg: Config{Ordered: true}, out: &out, sum: newSummary(Config{})}
	w := &apiWriter{r: r, ord: newOrderer(true), rows: map[string]*apiRow{}, held: map[string]int{}}
	for i, k := range []string{"a", "b", "c"} {
		w.rows[k] = &apiRow{index: i, row: row{key: k}}
	}
	ended := func(key string) batchapi.Outcome {
		lc := messages.NewLifecycle(uuid.New(), &messages.Request{}, time.Now())
		lc.Pending(time.Now())
		return batchapi.Outcome{Key: key, Batch: "batch_1", CustomID: key, Event: lc.Fail(time.Now(), errors.New("no"), messages.Result{})}
	}
	w.deliver(ended("b"))
	w.deliver(ended("c"))
	if ok, err := w.durable([]string{"b", "c"}); ok || err != nil || out.Len() != 0 {
		t.Fatalf("durable %v (%v) with %d bytes written", ok, err, out.Len())
	}
	w.deliver(ended("a"))
	if ok, err := w.durable([]string{"b", "c"}); !ok || err != nil || bytes.Count(out.Bytes(), []byte("\n")) != 3 {
		t.Fatalf("durable %v (%v) once written:\n%s", ok, err, out.Bytes())
	}
	w.writeErr = errors.New("disk full")
	if _, err := w.durable([]string{"a"}); err == nil {
		t.Error("durable despite a failed write")
	}
}

// A run with Ordered whose first batch's requests are redone settles every
// batch by its end.
func TestViaBatchAPIOrderedSettlesAll(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Seed: 2, BatchFaults: simulator.BatchFaults{Expired: 0.3}})
	dir := t.TempDir()
	cfg := apiConfig(t, imodel.Anthropic, base, dir)
	cfg.Ordered, cfg.MaxAttempts = true, 20
	cfg.BatchAPI.MaxRequests = 40
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, 120))}, nil)
	if err != nil || len(results) != 120 {
		t.Fatalf("%v, %d results", err, len(results))
	}
	journal, _ := os.ReadFile(cfg.BatchAPI.Journal)
	b := sum.Snapshot().Batches
	if n := bytes.Count(journal, []byte(`"event":"settled"`)); n != b.Created || b.Resubmitted == 0 {
		t.Errorf("%d batches settled of %+v", n, b)
	}
}

// nopCache holds nothing.
type nopCache struct{}

func (nopCache) Get(string) (imodel.CachedReply, bool) { return imodel.CachedReply{}, false }
func (nopCache) Put(string, imodel.CachedReply) error  { return nil }
