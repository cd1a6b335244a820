package batch

import (
	"context"
	"net/http"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// engine is what a run submits its lines to: one model on one executor,
// or a router over several deployments (router.go).
type engine interface {
	// Submit submits one line's body.
	Submit(ctx context.Context, payload map[string]any, opts ...imodel.CallOption) (*runtime.Handle, error)
	// Stop and StopNow stop it, gracefully or at once.
	Stop(ctx context.Context) error
	StopNow(ctx context.Context) error
	// Queued and InFlight count its requests waiting and calling, for the
	// metrics; RateLimited the 429 responses it met.
	Queued() int64
	InFlight() int64
	RateLimited() int64
	// finish records its last figures in the summary, at end.
	finish(sum *Summary, end time.Time)
	// Close releases its models' connections.
	Close()
}

// single is the engine of a run against one endpoint.
type single struct {
	ex     *runtime.Executor
	model  *imodel.Model
	traced *http.Client
}

// newSingle starts the executor of cfg's limits and its endpoint's model.
func newSingle(cfg Config, observe func(messages.Event), spendCap *runtime.SpendCap) (engine, error) {
	rc := cfg.executorConfig(observe)
	rc.SpendCap = spendCap
	ex, err := runtime.Start(rc)
	if err != nil {
		return nil, err
	}
	ep := cfg.Endpoint
	ep.MaxAttempts = cfg.MaxAttempts
	opts, traced := cfg.modelOptions(cfg.Concurrency)
	model, err := imodel.New(ex, ep, opts...)
	if err != nil {
		_ = ex.StopNow(context.Background())
		return nil, err
	}
	return &single{ex: ex, model: model, traced: traced}, nil
}

// modelOptions are the options of a run's models: its logger, and its
// HTTP client when the run has one or traces its calls. A client made
// here to trace the calls (its transport sized for concurrency calls at
// once) is returned, for the run to close.
func (c Config) modelOptions(concurrency int) (opts []imodel.Option, traced *http.Client) {
	opts = c.costOptions()
	if c.Logger != nil {
		opts = append(opts, imodel.WithLogger(c.Logger))
	}
	switch {
	case c.Tracer != nil:
		base := http.RoundTripper(imodel.NewTransport(concurrency))
		if c.client != nil {
			base = c.client.Transport
		}
		traced = &http.Client{Transport: c.Tracer.Transport(base)}
		opts = append(opts, imodel.WithHTTPClient(traced))
	case c.client != nil:
		opts = append(opts, imodel.WithHTTPClient(c.client))
	}
	return opts, traced
}

// closeClient closes the idle connections of a client modelOptions made.
func closeClient(c *http.Client) {
	if c != nil {
		c.CloseIdleConnections()
	}
}

func (s *single) Submit(ctx context.Context, payload map[string]any, opts ...imodel.CallOption) (*runtime.Handle, error) {
	return s.model.Submit(ctx, payload, opts...)
}
func (s *single) Stop(ctx context.Context) error    { return s.ex.Stop(ctx) }
func (s *single) StopNow(ctx context.Context) error { return s.ex.StopNow(ctx) }
func (s *single) Queued() int64                     { return s.ex.Stats().Queued }
func (s *single) InFlight() int64                   { return s.ex.Stats().InFlight }
func (s *single) RateLimited() int64                { return s.model.Stats().RateLimited() }
func (s *single) Close() {
	s.model.Close()
	closeClient(s.traced)
}

func (s *single) finish(sum *Summary, end time.Time) {
	sum.finish(end, s.model.Stats(), s.ex.Stats().Shared)
}
