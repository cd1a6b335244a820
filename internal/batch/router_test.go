package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// deployment is a test deployment of group on its own key at base.
func deployment(name, group, apiKey, base string, rpm int) Deployment {
	return Deployment{Name: name, Group: group, RPM: rpm, Endpoint: imodel.EndpointConfig{
		Provider: imodel.OpenAI, BaseURL: base, APIKey: apiKey,
		Retry: runtime.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond, Retryable: imodel.Retryable},
	}}
}

// perKey holds each key to its own strict per-second limit in front of the
// simulator, recording when each request of each key arrived.
type perKey map[string]*runtimetest.WindowLimit

func (p perKey) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if key == "" {
			key = r.Header.Get("X-Api-Key")
		}
		if lim := p[key]; lim == nil || lim.Admit(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// modelLine is an input line of model.
func modelLine(model string, i int) string {
	b, _ := json.Marshal(map[string]any{"model": model, "id": fmt.Sprintf("%s-%d", model, i),
		"messages": []map[string]string{{"role": "user", "content": fmt.Sprint("hello ", i)}}, "max_tokens": 8})
	return string(b) + "\n"
}

// A file mixing two models, each served by its own key at its own limit,
// run in fake time behind strict per-second limits: each model's calls
// keep to their own pace in every window of one second, nothing is
// refused, every line has its result naming the deployment that served
// it, and the summary, the metrics' figures and the report break the run
// down by deployment.
func TestRunOverDeploymentsPacesEachModelApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, err := simulator.New(simulator.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		limits := perKey{"sk-mini": {PerSecond: 20}, "sk-big": {PerSecond: 10}}
		base := "http://simulator.test/v1"
		cfg := testConfig(base)
		cfg.Deployments = []Deployment{deployment("mini", "gpt-4o-mini", "sk-mini", base, 1200), deployment("big", "gpt-4o", "sk-big", base, 600)}
		cfg.client = &http.Client{Transport: handlerTransport{limits.handler(sim.Handler())}}
		var report bytes.Buffer
		cfg.Report = &report
		var in strings.Builder
		for i := range 300 {
			model := "gpt-4o-mini"
			if i%3 == 0 {
				model = "gpt-4o"
			}
			in.WriteString(modelLine(model, i))
		}
		results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(in.String())}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantIndices(t, results, seq(0, 300))
		for _, r := range results {
			want := map[bool]string{true: "mini", false: "big"}[strings.HasPrefix(string(r.ID), `"gpt-4o-mini-`)]
			if r.Status != "COMPLETED" || r.Deployment != want {
				t.Errorf("line %d (%s): %s at %q, want COMPLETED at %s", r.Index, r.ID, r.Status, r.Deployment, want)
			}
		}
		for key, lim := range limits {
			arrivals, admitted, refused := lim.Seen()
			if w := runtimetest.MaxInWindow(arrivals, time.Second); w > lim.PerSecond+1 || refused != 0 {
				t.Errorf("%s: %d calls in one second, %d refused; want at most %d and none", key, w, refused, lim.PerSecond+1)
			}
			if want := map[string]int{"sk-mini": 200, "sk-big": 100}[key]; len(admitted) != want {
				t.Errorf("%s: %d calls, want %d", key, len(admitted), want)
			}
		}
		s := sum.Snapshot()
		if len(s.Deployments) != 2 || s.Deployments[0].Calls != 200 || s.Deployments[1].Completed != 100 || s.RPMLimit != 1800 {
			t.Errorf("summary by deployment %+v, limit %d", s.Deployments, s.RPMLimit)
		}
		if rpm := s.Deployments[1].RPM(); rpm < 0.97*600 || rpm > 600*1.0001 {
			t.Errorf("big went at %.1f requests a minute, want its limit, 600", rpm)
		}
		var out strings.Builder
		s.Write(&out)
		for _, want := range []string{
			"deployment mini (gpt-4o-mini): 200 calls, 200 completed, 0 failed, 0 429 responses; rate: 1200 requests/min (limit 1200, 100.0%); breaker closed\n",
			"deployment big (gpt-4o): 100 calls, 100 completed, 0 failed, 0 429 responses; rate: 600 requests/min (limit 600, 100.0%); breaker closed\n",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("summary lacks %q:\n%s", want, out.String())
			}
		}
		page := report.String()
		for _, want := range []string{`<table id="deployments">`, `data-deployment="mini"`, `<td>gpt-4o</td><td>100, 0 retries</td>`, "1,800 per minute"} {
			if !strings.Contains(page, want) {
				t.Errorf("report lacks %q", want)
			}
		}
	})
}

// handlerTransport is declared in pacing_test.go.

// Lines of a model whose deployment fails go to its fallback, on another
// provider: the result names the deployment that served it, and holds
// that provider's reply. A line of a model no deployment serves fails at
// once, naming it.
func TestRunOverDeploymentsFallsBack(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	if err := sim.SetFaults("sk-sick", simulator.Faults{ServerError: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(base)
	claude := deployment("claude", "claude-haiku", "sk-claude", base, 60000)
	claude.Endpoint.Provider = imodel.Anthropic
	claude.Endpoint.Model = "claude-3-5-haiku-latest"
	cfg.Deployments = []Deployment{deployment("openai", "gpt-4o", "sk-sick", base, 60000), claude}
	cfg.Fallbacks = map[string][]string{"gpt-4o": {"claude-haiku"}}
	cfg.Ordered = true
	in := modelLine("gpt-4o", 1) + modelLine("gpt-4o", 2) + modelLine("gpt-5", 3)
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(in)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results[:2] {
		if r.Status != "COMPLETED" || r.Deployment != "claude" || r.Attempts != 2 || !bytes.Contains(r.Response, []byte(`"type":"message"`)) {
			t.Errorf("line %d: %s at %q after %d attempts: %s", r.Index, r.Status, r.Deployment, r.Attempts, r.Response)
		}
	}
	if r := results[2]; r.Status != "FAILED" || r.Error.Kind != "invalid_request" || !strings.Contains(r.Error.Message, `line 3: lionactor: no deployment serves this model: "gpt-5"`) {
		t.Errorf("the line of an unknown model: %+v", r.Error)
	}
	if s := sum.Snapshot(); s.Deployments[0].Failed != 0 || s.Deployments[0].Calls != 2 || s.Deployments[1].Completed != 2 || s.Retries != 2 || s.RateLimited != 0 {
		t.Errorf("summary %+v", s)
	}
}

// A run over deployments serves its figures by deployment.
func TestRunOverDeploymentsServesMetrics(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.Deployments = []Deployment{deployment("a", "gpt-4o-mini", "sk-a", base, 60000), deployment("b", "gpt-4o-mini", "sk-b", base, 60000)}
	client := newLocalClient(t)
	var out bytes.Buffer
	r := newRunner(cfg, Input{R: strings.NewReader(jsonl(t, 40))}, &out, nil)
	probe := &metricsProbe{r: r, after: 10, scrape: func(addr string) string {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Errorf("GET /metrics: %v", err)
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}}
	r.progress = probe
	if _, err := r.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`lionactor_deployment_calls_total{deployment="a",model="gpt-4o-mini"}`, `lionactor_deployment_completed_total{deployment="b",model="gpt-4o-mini"}`,
		`lionactor_deployment_failed_total{deployment="a"`, `lionactor_deployment_rate_limited_total{deployment="b",model="gpt-4o-mini"} 0`,
		`lionactor_deployment_breaker_open{deployment="a",model="gpt-4o-mini"} 0`, `lionactor_deployment_in_flight{deployment="b"`,
		`lionactor_deployment_queue_depth{deployment="a"`, `lionactor_deployment_breaker_openings_total{deployment="a",model="gpt-4o-mini"} 0`,
		"lionactor_queue_depth", "lionactor_in_flight", "lionactor_rate_limited_total 0",
	} {
		if !strings.Contains(probe.body, want) {
			t.Errorf("metrics lack %s:\n%s", want, probe.body)
		}
	}
}

// Each deployment's key joins the shared budget under its own budget key;
// the process's TLS goes to the first, which starts the remote layer.
func TestRouterConfigOfTheDeployments(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1/v1")
	cfg.Burst, cfg.Concurrency, cfg.Timeout = 2, 5, time.Second
	a := deployment("a", "m", "sk-a", "http://127.0.0.1:1/v1", 600)
	a.TPM, a.Burst, a.Concurrency, a.Weight = 90000, 4, 7, 3
	a.Endpoint.Model = "m-2025"
	b := deployment("b", "m", "sk-b", "http://127.0.0.1:1/v1", 1200)
	cfg.Deployments = []Deployment{a, b}
	cfg.Budget, cfg.BudgetMembers = "127.0.0.1:7070", 2
	cfg.BudgetTLS = budget.TLSFiles{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}
	rc := cfg.routerConfig(nil)
	da, db := rc.Deployments[0], rc.Deployments[1]
	if da.Model != "m-2025" || da.Weight != 3 || da.Config.Concurrency != 7 || da.Config.RequestBurst != 4 || da.Config.TokensPerInterval != 90000 ||
		db.Config.Concurrency != 5 || db.Config.RequestBurst != 2 || db.Config.TokensPerInterval != 0 || db.Config.CallTimeout != time.Second {
		t.Errorf("deployments %+v\n%+v", da, db)
	}
	ma, mb := da.Config.SharedBudget.(budget.MemberConfig), db.Config.SharedBudget.(budget.MemberConfig)
	if ma.Key == mb.Key || ma.Key != budget.KeyFor(a.Endpoint.LimitScope(), "sk-a") || !ma.TLS.Enabled() || mb.TLS.Enabled() {
		t.Errorf("budget members %+v, %+v", ma, mb)
	}
	if rc.QueueCapacity != cfg.Queue+cfg.Concurrency || rc.MaxAttempts != cfg.MaxAttempts {
		t.Errorf("router config %+v", rc)
	}
	if info := cfg.routerReportInfo(); info.RPM != 1800 || info.Burst != 6 || info.Concurrency != 12 || info.windowBound() != (10+4)+(20+2) || info.Model != "m" {
		t.Errorf("report info %+v", info)
	}
}

// Every invalid deployment setting is named by its place.
func TestConfigValidateDeployments(t *testing.T) {
	ok := func() Config {
		c := testConfig("http://127.0.0.1:1/v1")
		c.RPM = 0 // unused over deployments
		c.Deployments = []Deployment{deployment("a", "m", "sk-a", "http://127.0.0.1:1/v1", 60), deployment("b", "n", "sk-b", "http://127.0.0.1:1/v1", 60)}
		c.Fallbacks = map[string][]string{"m": {"n"}}
		return c
	}
	if err := ok().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field string
		edit  func(*Config)
	}{
		{"Deployments[1].Name", func(c *Config) { c.Deployments[1].Name = "" }},
		{"Deployments[1].Name", func(c *Config) { c.Deployments[1].Name = "a" }},
		{"Deployments[0].Group", func(c *Config) { c.Deployments[0].Group = "" }},
		{"Deployments[0].RPM", func(c *Config) { c.Deployments[0].RPM = 0 }},
		{"Deployments[0].TPM", func(c *Config) { c.Deployments[0].TPM = -1 }},
		{"Deployments[0].Burst", func(c *Config) { c.Deployments[0].Burst = -1 }},
		{"Deployments[0].Concurrency", func(c *Config) { c.Deployments[0].Concurrency = -1 }},
		{"Deployments[0].Weight", func(c *Config) { c.Deployments[0].Weight = -1 }},
		{"Deployments[1].Endpoint.BaseURL", func(c *Config) { c.Deployments[1].Endpoint.BaseURL = "ftp://x" }},
		{"Fallbacks.x", func(c *Config) { c.Fallbacks["x"] = []string{"m"} }},
		{"Fallbacks.m", func(c *Config) { c.Fallbacks["m"] = []string{"y"} }},
		{"Fallbacks.m", func(c *Config) { c.Fallbacks["m"] = []string{"m"} }},
		{"Fallbacks", func(c *Config) { c.Deployments = nil; c.RPM = 60 }},
	} {
		cfg := ok()
		c.edit(&cfg)
		var ce *messages.ConfigError
		if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%s: %v", c.field, err)
		}
	}
}

// Over deployments, each key joins the shared budget under its own budget
// key: with the service out of reach, each falls back to its own share,
// says so, and the run completes; the summary and the metrics tell it by
// deployment.
func TestRunOverDeploymentsSharedBudgetFallsBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()
	_, base := simtest.Start(t, simulator.Config{})
	var log runtimetest.Buffer
	cfg := testConfig(base)
	cfg.Deployments = []Deployment{deployment("a", "gpt-4o-mini", "sk-budget-a", base, 60000), deployment("b", "gpt-4o-mini", "sk-budget-b", base, 60000)}
	cfg.Budget, cfg.BudgetMembers, cfg.MetricsAddr = nobody, 2, "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client := newLocalClient(t)
	var out bytes.Buffer
	r := newRunner(cfg, Input{R: strings.NewReader(jsonl(t, 30))}, &out, nil)
	probe := &metricsProbe{r: r, after: 10, scrape: func(addr string) string {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}}
	r.progress = probe
	sum, err := r.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := sum.Snapshot(); s.Completed != 30 {
		t.Errorf("completed %d", s.Completed)
	}
	warnings := strings.Count(log.String(), "level=WARN")
	if warnings < 2 || !strings.Contains(log.String(), "deployment=a") || !strings.Contains(log.String(), "deployment=b") {
		t.Errorf("no fallback warning of each deployment:\n%s", log.String())
	}
	for _, d := range sum.Snapshot().Deployments {
		if d.Shared.Mode != messages.SharedFallback || d.Shared.Fallbacks != 1 {
			t.Errorf("deployment %s's shared budget: %+v", d.Name, d.Shared)
		}
	}
	var w strings.Builder
	sum.Snapshot().Write(&w)
	if strings.Count(w.String(), "  shared budget: fallen back; ") != 2 {
		t.Errorf("summary:\n%s", w.String())
	}
	for _, want := range []string{`lionactor_deployment_budget_joined{deployment="a",model="gpt-4o-mini"} 0`, `lionactor_deployment_budget_joined{deployment="b",model="gpt-4o-mini"} 0`} {
		if !strings.Contains(probe.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(probe.body, "lionactor_budget_joined ") {
		t.Error("a run over deployments has no budget figures of a sole endpoint")
	}
}
