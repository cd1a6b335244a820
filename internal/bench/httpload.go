package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// The endpoint of the HTTP workloads: the in-process simulator accepts any
// key.
const (
	benchKey   = "sk-bench"
	benchModel = "gpt-4o-mini"
	// replyTokens is both the requests' max_tokens and the simulator's
	// reply length, so a request's estimated cost is its real usage.
	replyTokens = simulator.DefaultCompletionTokens
	benchPrompt = "Explain in one sentence why an actor owns its state."
)

// chatRequest is the request the imodel subjects send.
func chatRequest(prompt string) imodel.ChatRequest {
	return imodel.ChatRequest{Messages: []imodel.Message{{Role: "user", Content: prompt}}, MaxTokens: replyTokens}
}

// chatFields is the same request as a field map: what imodel.Chat sends,
// byte for byte once marshalled.
func chatFields(prompt string) map[string]any {
	return map[string]any{
		"model":      benchModel,
		"messages":   []any{map[string]any{"role": "user", "content": prompt}},
		"max_tokens": replyTokens,
	}
}

// simConfigHTTP is the simulator of the throughput workload: no latency,
// no limits.
func simConfigHTTP() simulator.Config { return simulator.Config{Seed: 1} }

// startSimulator starts an in-process simulator on a free loopback port and
// returns it with its API base URL (ending in /v1).
func startSimulator(cfg simulator.Config) (*simulator.Server, string, error) {
	sim, err := simulator.New(cfg)
	if err != nil {
		return nil, "", err
	}
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	return sim, base + "/v1", nil
}

// newTransport is imodel's transport for concurrency callers, and both
// subjects use one, so that the bare client differs only in what runs
// around it. One setting differs from imodel's default: idle connections are
// dropped after 5 s, before the simulator drops them (at 10 s), so that no
// request is sent on a connection the server is closing; runs of one subject
// leave the other's pool idle for as long as a run lasts.
func newTransport(concurrency int) *http.Transport {
	t := imodel.NewTransport(concurrency)
	t.IdleConnTimeout = 5 * time.Second
	return t
}

// chatter sends one chat request and checks its reply.
type chatter interface {
	Target
	chat(ctx context.Context) error
	// begin notes the counts now and returns what checks, later, that
	// exactly n more requests were made and succeeded.
	begin() func(ctx context.Context, n int) error
}

// runClosedLoop makes n calls of one from workers goroutines, each starting
// its next call as its last ends, and returns how many succeeded and the
// first error.
func runClosedLoop(ctx context.Context, n, workers int, one func(context.Context) error) (int64, error) {
	var (
		next, ok atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		errs     []error
	)
	for range min(workers, n) {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := one(ctx); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					if ctx.Err() != nil {
						return
					}
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return ok.Load(), fmt.Errorf("%d of %d requests failed, first: %w", len(errs), n, errs[0])
	}
	return ok.Load(), nil
}

// closedLoop makes n chat requests on c from workers goroutines and checks
// the counts.
func closedLoop(ctx context.Context, c chatter, n, workers int) error {
	check := c.begin()
	if _, err := runClosedLoop(ctx, n, workers, c.chat); err != nil {
		return err
	}
	return check(ctx, n)
}

// checkServed checks that the simulator answered exactly n more requests,
// all 200, since before.
func checkServed(sim *simulator.Server, before simulator.Stats, n int) error {
	after := sim.Stats()
	got, ok := after.Requests-before.Requests, after.ByStatus[200]-before.ByStatus[200]
	if got != int64(n) || ok != int64(n) {
		return fmt.Errorf("simulator received %d requests and answered %d with 200, want %d", got, ok, n)
	}
	return nil
}

// imodelTarget sends chat requests through imodel and an executor without
// rate limits.
type imodelTarget struct {
	sim         *simulator.Server
	ex          *runtime.Executor
	client      *http.Client
	model       *imodel.Model
	req         imodel.ChatRequest
	concurrency int
	// trace, when set, records where each request's time went.
	trace *overheadTrace
}

// NewIModelTarget starts an executor with concurrency callers and no rate
// limit, and an imodel client of sim at base.
func NewIModelTarget(sim *simulator.Server, base string, concurrency int) (Target, error) {
	return newIModelTarget(sim, base, concurrency)
}

func newIModelTarget(sim *simulator.Server, base string, concurrency int) (*imodelTarget, error) {
	cfg := runtime.DefaultConfig()
	cfg.RequestsPerInterval = runtime.Unlimited
	cfg.Concurrency = concurrency
	cfg.QueueCapacity = 4096
	cfg.WaitForRoom = true
	ex, err := runtime.Start(cfg)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: newTransport(concurrency)}
	model, err := imodel.New(ex, imodel.EndpointConfig{
		Provider: imodel.OpenAI, BaseURL: base, APIKey: benchKey, Model: benchModel,
		MaxAttempts: 1,
	}, imodel.WithHTTPClient(client))
	if err != nil {
		ex.StopNow(context.Background())
		return nil, err
	}
	return &imodelTarget{sim: sim, ex: ex, client: client, model: model, req: chatRequest(benchPrompt), concurrency: concurrency}, nil
}

func (t *imodelTarget) Name() string { return nameExecutor }

func (t *imodelTarget) chat(ctx context.Context) error {
	start := time.Now()
	resp, err := t.model.Chat(ctx, t.req)
	if err != nil {
		return err
	}
	if t.trace != nil {
		t.trace.add(start, resp.Event.Timings(), time.Now())
	}
	if resp.Text == "" || resp.Usage.TotalTokens == 0 {
		return errors.New("reply without text or usage")
	}
	return nil
}

func (t *imodelTarget) begin() func(context.Context, int) error {
	sim, ex := t.sim.Stats(), t.ex.Stats()
	return func(ctx context.Context, n int) error {
		return errors.Join(checkExecutorCounts(ctx, t.ex, ex, n), checkServed(t.sim, sim, n))
	}
}

func (t *imodelTarget) Run(ctx context.Context, n int) error {
	return closedLoop(ctx, t, n, t.concurrency)
}

func (t *imodelTarget) Close(ctx context.Context) error {
	err := errors.Join(t.ex.Stop(ctx), t.model.Close())
	t.client.CloseIdleConnections()
	return err
}

// bareTarget sends the same requests with net/http alone: marshal the body,
// post it, read and decode the reply, with at most concurrency requests in
// flight, as the executor's callers allow.
type bareTarget struct {
	sim         *simulator.Server
	client      *http.Client
	slots       chan struct{}
	url         string
	fields      map[string]any
	concurrency int
}

// NewBareTarget returns the bare net/http baseline for sim at base, with
// concurrency goroutines and the transport settings imodel uses.
func NewBareTarget(sim *simulator.Server, base string, concurrency int) Target {
	return newBareTarget(sim, base, concurrency)
}

func newBareTarget(sim *simulator.Server, base string, concurrency int) *bareTarget {
	return &bareTarget{
		sim: sim, client: &http.Client{Transport: newTransport(concurrency)}, slots: make(chan struct{}, concurrency),
		url: base + "/chat/completions", fields: chatFields(benchPrompt), concurrency: concurrency,
	}
}

func (t *bareTarget) Name() string { return nameBare }

func (t *bareTarget) chat(ctx context.Context) error {
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-t.slots }()
	body, err := json.Marshal(t.fields)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+benchKey)
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var r wire.ChatResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	if len(r.Choices) == 0 || r.Choices[0].Message.Content.String() == "" || r.Usage == nil {
		return errors.New("reply without text or usage")
	}
	return nil
}

func (t *bareTarget) begin() func(context.Context, int) error {
	before := t.sim.Stats()
	return func(_ context.Context, n int) error { return checkServed(t.sim, before, n) }
}

func (t *bareTarget) Run(ctx context.Context, n int) error {
	return closedLoop(ctx, t, n, t.concurrency)
}

func (t *bareTarget) Close(context.Context) error {
	t.client.CloseIdleConnections()
	return nil
}

// HTTPResult is workload 2.
type HTTPResult struct {
	Requests    int    `json:"requests"`
	Concurrency int    `json:"concurrency"`
	Executor    Series `json:"executor"`
	Bare        Series `json:"bare"`
}

// runHTTP is workload 2: chat requests to a zero-latency simulator without
// limits, through imodel and bare, alternated.
func runHTTP(ctx context.Context, s Sizes) (res *HTTPResult, err error) {
	sim, base, err := startSimulator(simConfigHTTP())
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	im, err := newIModelTarget(sim, base, Concurrency)
	if err != nil {
		return nil, err
	}
	targets := []Target{im, newBareTarget(sim, base, Concurrency)}
	defer func() { err = errors.Join(err, closeAll(ctx, targets)) }()
	series, err := measureAlternating(ctx, targets, s.HTTPRequests, s.Reps)
	if err != nil {
		return nil, err
	}
	return &HTTPResult{Requests: s.HTTPRequests, Concurrency: Concurrency, Executor: *series[0], Bare: *series[1]}, nil
}

// measureAlternating warms each target up with a tenth of n calls, then
// measures n calls on each, reps times, alternating.
func measureAlternating(ctx context.Context, targets []Target, n, reps int) ([]*Series, error) {
	series := make([]*Series, len(targets))
	runs := make([]func(int) error, len(targets))
	for i, t := range targets {
		series[i] = &Series{Name: t.Name()}
		if _, err := Measure(ctx, t, max(1, n/10)); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		runs[i] = func(int) error {
			m, err := Measure(ctx, t, n)
			if err != nil {
				return err
			}
			series[i].add(m)
			return nil
		}
	}
	return series, alternate(reps, runs...)
}

// closeAll closes every target, within a bound of its own so that a
// cancelled run still cleans up.
func closeAll(ctx context.Context, targets []Target) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var errs []error
	for _, t := range targets {
		if err := t.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing %s: %w", t.Name(), err))
		}
	}
	return errors.Join(errs...)
}
