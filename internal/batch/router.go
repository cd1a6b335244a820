package batch

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// Deployment is one place a run over several (Config.Deployments) sends
// the lines of a model: an endpoint, with its key, at its own limits.
type Deployment struct {
	// Name is unique among the run's deployments; result lines, the
	// summary, the metrics and the report name it.
	Name string
	// Group is the model it serves: the lines whose "model" says it.
	Group string
	// Endpoint is where and how; its API key must already be set. Its
	// Model is what the deployment calls the model (by default Group).
	Endpoint imodel.EndpointConfig
	// RPM and TPM are its limits per minute; TPM 0 means none.
	RPM, TPM int
	// Burst and Concurrency are its own; 0 means Config's.
	Burst, Concurrency int
	// Weight breaks ties between deployments that could start a line as
	// soon as each other; 0 means 1.
	Weight int
}

// routed reports whether the run goes over several deployments.
func (c Config) routed() bool { return len(c.Deployments) > 0 }

// validateDeployments reports the first invalid deployment setting, named
// by its place ("Deployments[1].RPM").
func (c Config) validateDeployments() error {
	groups := map[string]bool{}
	names := map[string]bool{}
	for i, d := range c.Deployments {
		bad := func(field, format string, args ...any) error {
			return &messages.ConfigError{Field: fmt.Sprintf("Deployments[%d].%s", i, field), Reason: fmt.Sprintf(format, args...)}
		}
		switch {
		case d.Name == "":
			return bad("Name", "required")
		case names[d.Name]:
			return bad("Name", "%q names another deployment too", d.Name)
		case d.Group == "":
			return bad("Group", "required: the model its lines name")
		case d.RPM <= 0:
			return bad("RPM", "must be positive")
		case d.TPM < 0:
			return bad("TPM", "must not be negative")
		case d.Burst < 0:
			return bad("Burst", "must not be negative")
		case d.Concurrency < 0:
			return bad("Concurrency", "must not be negative")
		case d.Weight < 0:
			return bad("Weight", "must not be negative")
		}
		if err := d.Endpoint.Validate(); err != nil {
			if ce, ok := err.(*messages.ConfigError); ok {
				return bad("Endpoint."+ce.Field, "%s", ce.Reason)
			}
			return err
		}
		names[d.Name], groups[d.Group] = true, true
	}
	for _, g := range slices.Sorted(maps.Keys(c.Fallbacks)) {
		bad := func(format string, args ...any) error {
			return &messages.ConfigError{Field: "Fallbacks." + g, Reason: fmt.Sprintf(format, args...)}
		}
		if !groups[g] {
			return bad("no deployment serves %s", g)
		}
		for _, f := range c.Fallbacks[g] {
			switch {
			case !groups[f]:
				return bad("no deployment serves %s", f)
			case f == g:
				return bad("%s falls back to itself", g)
			}
		}
	}
	return nil
}

// burst is the request bucket's capacity of d: its own, the run's, or 1.
func (c Config) burstOf(d Deployment) int {
	if d.Burst > 0 {
		return d.Burst
	}
	return c.burst()
}

func (c Config) concurrencyOf(d Deployment) int {
	if d.Concurrency > 0 {
		return d.Concurrency
	}
	return c.Concurrency
}

// routerConfig is the runtime router of the deployments: each an executor
// at its limits, as executorConfig makes the one of a single endpoint,
// whose key joins the shared budget under its own budget key.
func (c Config) routerConfig(observe func(messages.Event)) runtime.RouterConfig {
	var deps []runtime.Deployment
	for i, d := range c.Deployments {
		ec := runtime.DefaultConfig()
		ec.RequestsPerInterval, ec.RequestInterval = d.RPM, time.Minute
		ec.RequestBurst = c.burstOf(d)
		if d.TPM > 0 {
			ec.TokensPerInterval, ec.TokenInterval = d.TPM, time.Minute
		}
		ec.Concurrency = c.concurrencyOf(d)
		ec.CallTimeout = c.Timeout
		if c.Budget != "" {
			m := budget.MemberConfig{
				Address: c.Budget, Key: budget.KeyFor(d.Endpoint.LimitScope(), d.Endpoint.APIKey),
				ExpectedMembers: c.BudgetMembers, ListenAddr: c.BudgetListen, Secret: c.BudgetSecret,
			}
			if i == 0 {
				// The first deployment starts the remote layer its
				// brokers share, with the TLS of the process.
				m.TLS = c.BudgetTLS
			}
			ec.SharedBudget = m
		}
		deps = append(deps, runtime.Deployment{Name: d.Name, Group: d.Group, Model: d.Endpoint.Model, Weight: d.Weight, Config: ec})
	}
	rc := runtime.DefaultRouterConfig(deps...)
	rc.Fallbacks = c.Fallbacks
	// As the executor's queue of a single endpoint: room for the runner's
	// whole window, so that it never refuses a line.
	rc.QueueCapacity = c.Queue + c.Concurrency
	rc.MaxAttempts = c.MaxAttempts
	rc.Observer = observe
	rc.Logger = c.Logger
	if c.Tracer != nil {
		c.Tracer.InstrumentRouter(&rc)
	}
	return rc
}

// routedEngine is the engine of a run over several deployments.
type routedEngine struct {
	rt     *runtime.Router
	r      *imodel.Router
	traced interface{ CloseIdleConnections() }
}

// newRouted starts the router of cfg's deployments and binds each to its
// endpoint.
func newRouted(cfg Config, observe func(messages.Event), spendCap *runtime.SpendCap) (engine, error) {
	rc := cfg.routerConfig(observe)
	rc.SpendCap = spendCap
	rt, err := runtime.StartRouter(rc)
	if err != nil {
		return nil, err
	}
	eps := map[string]imodel.EndpointConfig{}
	total := 0
	for _, d := range cfg.Deployments {
		ep := d.Endpoint
		ep.MaxAttempts = cfg.MaxAttempts
		eps[d.Name] = ep
		total += cfg.concurrencyOf(d)
	}
	opts, traced := cfg.modelOptions(total)
	r, err := imodel.NewRouter(rt, eps, opts...)
	if err != nil {
		_ = rt.StopNow(context.Background())
		return nil, err
	}
	e := &routedEngine{rt: rt, r: r}
	if traced != nil {
		e.traced = traced
	}
	return e, nil
}

func (e *routedEngine) Submit(ctx context.Context, payload map[string]any, opts ...imodel.CallOption) (*runtime.Handle, error) {
	return e.r.Submit(ctx, payload, opts...)
}
func (e *routedEngine) Stop(ctx context.Context) error    { return e.rt.Stop(ctx) }
func (e *routedEngine) StopNow(ctx context.Context) error { return e.rt.StopNow(ctx) }

// Queued counts the requests waiting in the router and in the queues of
// its deployments.
func (e *routedEngine) Queued() int64 {
	st := e.rt.Stats()
	n := st.Queued
	for _, d := range st.Deployments {
		n += d.Executor.Queued
	}
	return n
}

// InFlight counts the requests holding a caller at a deployment.
func (e *routedEngine) InFlight() int64 {
	var n int64
	for _, d := range e.rt.Stats().Deployments {
		n += d.Executor.InFlight
	}
	return n
}

func (e *routedEngine) RateLimited() int64 {
	var n int64
	for _, s := range e.r.Stats().HTTP {
		n += s.RateLimited()
	}
	return n
}

func (e *routedEngine) Close() {
	e.r.Close()
	if e.traced != nil {
		e.traced.CloseIdleConnections()
	}
}

func (e *routedEngine) finish(sum *Summary, end time.Time) {
	st := e.r.Stats()
	sum.finish(end, imodel.Stats{ByStatus: map[int]int64{429: e.RateLimited()}}, messages.SharedStats{})
	sum.update(func(s *Snapshot) {
		for i, d := range st.Deployments {
			ds := &s.Deployments[i]
			ds.RateLimited = st.HTTP[d.Name].RateLimited()
			ds.Breaker, ds.Openings = d.Breaker, d.Openings
			ds.Shared = d.Executor.Shared
		}
	})
}

// DeploymentSnapshot is one deployment's part of a run over several.
type DeploymentSnapshot struct {
	Name, Group, Model string
	// RPMLimit, TPMLimit and Burst are its limits.
	RPMLimit, TPMLimit, Burst int
	// Calls counts the calls started there, retries included; FirstCall
	// and LastCall are when the first and the last started.
	Calls               int
	FirstCall, LastCall time.Time
	// Completed and Failed count the requests that ended there: served,
	// or failed on their last attempt there.
	Completed, Failed int
	// RateLimited counts its 429 responses; Breaker is its breaker's state
	// as the run ended, and Openings the times it opened.
	RateLimited int64
	Breaker     runtime.BreakerState
	Openings    int64
	// Shared is its part in a shared budget (Config.Budget), as the run
	// ended; its Mode is "" without one.
	Shared messages.SharedStats
}

// RPM is the achieved rate of its calls per minute, as Snapshot.RPM.
func (d DeploymentSnapshot) RPM() float64 {
	if d.Calls <= d.Burst {
		return 0
	}
	return perMinute(float64(d.Calls-d.Burst), d.LastCall.Sub(d.FirstCall))
}

// deploymentSnapshots are the summary's deployments before the run.
func deploymentSnapshots(c Config) []DeploymentSnapshot {
	var out []DeploymentSnapshot
	for _, d := range c.Deployments {
		model := d.Endpoint.Model
		if model == "" {
			model = d.Group
		}
		out = append(out, DeploymentSnapshot{Name: d.Name, Group: d.Group, Model: model, RPMLimit: d.RPM, TPMLimit: d.TPM, Burst: c.burstOf(d)})
	}
	return out
}

// routed counts a snapshot of a routed request for its deployment: the
// start of a call there, or the request's end there.
func (m *Summary) routed(ev messages.Event) {
	if ev.Deployment == "" || (ev.Status != messages.StatusCalling && !ev.Status.Terminal()) {
		return
	}
	m.update(func(s *Snapshot) {
		i := slices.IndexFunc(s.Deployments, func(d DeploymentSnapshot) bool { return d.Name == ev.Deployment })
		if i < 0 {
			return
		}
		d := &s.Deployments[i]
		switch ev.Status {
		case messages.StatusCalling:
			t := ev.Timings().CallStarted
			d.Calls++
			if d.FirstCall.IsZero() || t.Before(d.FirstCall) {
				d.FirstCall = t
			}
			if t.After(d.LastCall) {
				d.LastCall = t
			}
		case messages.StatusCompleted:
			d.Completed++
		case messages.StatusFailed:
			d.Failed++
		}
	})
}

// writeDeployments prints a line per deployment of a run over several.
func writeDeployments(w io.Writer, s Snapshot) {
	for _, d := range s.Deployments {
		name := d.Name
		if d.Model != d.Group {
			name += fmt.Sprintf(" (%s as %s)", d.Group, d.Model)
		} else {
			name += fmt.Sprintf(" (%s)", d.Group)
		}
		fmt.Fprintf(w, "deployment %s: %d calls, %d completed, %d failed, %d 429 responses; rate: %s; breaker %s",
			name, d.Calls, d.Completed, d.Failed, d.RateLimited, rateOf(d.RPM(), d.RPMLimit, "requests/min"), d.Breaker)
		if d.Openings > 0 {
			fmt.Fprintf(w, ", opened %d times", d.Openings)
		}
		fmt.Fprintln(w)
		if sh := d.Shared; sh.Mode != "" {
			fmt.Fprintf(w, "  shared budget: %s; %d leases for %d requests, %d returned unused; %d fallbacks, %d rejoins\n",
				sh.Mode, sh.Leases, sh.LeasedRequests, sh.Returned, sh.Fallbacks, sh.Rejoins)
		}
	}
}

// isRetry reports whether a QUEUED snapshot schedules a retry after a
// failed attempt. A router queues a request again without one when it
// takes it back from a deployment before its call.
func isRetry(ev messages.Event) bool {
	_, ok := ev.RetryFailure()
	return ok
}

// deploymentMetrics registers the figures of each deployment of a run
// over several, labelled by deployment and model.
func (r *runner) deploymentMetrics(reg *prometheus.Registry) {
	e := r.eng.(*routedEngine)
	for i, d := range r.cfg.Deployments {
		labels := prometheus.Labels{"deployment": d.Name, "model": d.Group}
		stat := func(f func(runtime.DeploymentStats) float64) func() float64 {
			return func() float64 { return f(e.rt.Stats().Deployments[i]) }
		}
		snap := func(f func(DeploymentSnapshot) float64) func() float64 {
			return func() float64 { return f(r.sum.Snapshot().Deployments[i]) }
		}
		for _, m := range []struct {
			name, help string
			counter    bool
			f          func() float64
		}{
			{"deployment_calls_total", "Calls started at the deployment.", true, snap(func(d DeploymentSnapshot) float64 { return float64(d.Calls) })},
			{"deployment_completed_total", "Requests the deployment served.", true, snap(func(d DeploymentSnapshot) float64 { return float64(d.Completed) })},
			{"deployment_failed_total", "Requests that failed on their last attempt at the deployment.", true, snap(func(d DeploymentSnapshot) float64 { return float64(d.Failed) })},
			{"deployment_rate_limited_total", "429 responses of the deployment.", true, func() float64 { return float64(e.r.Stats().HTTP[d.Name].RateLimited()) }},
			{"deployment_breaker_openings_total", "Times the deployment's breaker opened.", true, stat(func(s runtime.DeploymentStats) float64 { return float64(s.Openings) })},
			{"deployment_in_flight", "Requests holding a caller at the deployment.", false, stat(func(s runtime.DeploymentStats) float64 { return float64(s.Executor.InFlight) })},
			{"deployment_queue_depth", "Requests waiting in the deployment's queue.", false, stat(func(s runtime.DeploymentStats) float64 { return float64(s.Executor.Queued) })},
			{"deployment_breaker_open", "1 while the deployment's breaker keeps it out (open), 0.5 while it lets a probe through (half-open), 0 closed.", false,
				stat(func(s runtime.DeploymentStats) float64 {
					return map[runtime.BreakerState]float64{runtime.BreakerOpen: 1, runtime.BreakerHalfOpen: 0.5}[s.Breaker]
				})},
		} {
			if m.counter {
				reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "lionactor", Name: m.name, Help: m.help, ConstLabels: labels}, m.f))
			} else {
				reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "lionactor", Name: m.name, Help: m.help, ConstLabels: labels}, m.f))
			}
		}
		if r.cfg.Budget != "" {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "lionactor", Name: "deployment_budget_joined",
				Help: "1 while the deployment's key takes its permits from the shared budget's service, 0 while it keeps to its local share.", ConstLabels: labels},
				stat(func(s runtime.DeploymentStats) float64 {
					if s.Executor.Shared.Mode == messages.SharedJoined {
						return 1
					}
					return 0
				})))
		}
	}
}

// routerReportInfo describes a run over several deployments for its
// report: their limits together, and each.
func (c Config) routerReportInfo() ReportInfo {
	var info ReportInfo
	var providers, models, hosts []string
	add := func(list *[]string, v string) {
		if v != "" && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for _, d := range c.Deployments {
		info.RPM += d.RPM
		info.TPM += d.TPM
		info.Concurrency += c.concurrencyOf(d)
		info.Burst += c.burstOf(d)
		add(&providers, string(d.Endpoint.Provider))
		add(&models, d.Group)
		base := d.Endpoint.BaseURL
		if base == "" {
			base = d.Endpoint.Provider.DefaultBaseURL()
		}
		add(&hosts, hostOf(base))
		info.Deployments = append(info.Deployments, ReportDeployment{Name: d.Name, Group: d.Group, RPM: d.RPM, Burst: c.burstOf(d)})
	}
	info.Provider, info.Model, info.Host = strings.Join(providers, ", "), strings.Join(models, ", "), strings.Join(hosts, ", ")
	return info
}
