package batch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/redistest"
	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

func TestConfigValidateBudget(t *testing.T) {
	valid := Config{RPM: 1, Concurrency: 1, MaxAttempts: 1, Queue: 1}
	for _, ok := range []func(*Config){
		func(c *Config) {}, // no budget: the members setting is unused
		func(c *Config) { c.Budget, c.BudgetMembers = "127.0.0.1:7070", 1 },
		func(c *Config) { c.Budget, c.BudgetMembers = "budget.internal:7070", 12 },
		func(c *Config) { c.Budget, c.BudgetMembers = "[::1]:7070", 2 },
		func(c *Config) { c.Budget, c.BudgetMembers, c.BudgetListen = "10.0.0.5:7070", 3, "10.0.0.9:0" },
		func(c *Config) { c.Budget, c.BudgetMembers = "redis://lion:pa55w0rd@10.0.0.5:6379/0", 3 },
		func(c *Config) { c.Budget, c.BudgetMembers = "rediss://cache.example.com:6380", 3 },
		func(c *Config) { c.Budget, c.BudgetMembers = "unix:///run/redis/redis.sock?db=1", 2 },
		func(c *Config) {
			c.Budget, c.BudgetMembers = "redis://10.0.0.5:26379?master_name=main&addr=10.0.0.6:26379", 2
		},
	} {
		c := valid
		ok(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	tests := []struct {
		name, field, want string
		set               func(*Config)
	}{
		{"no port", "Budget", "host:port", func(c *Config) { c.Budget, c.BudgetMembers = "127.0.0.1", 2 }},
		{"no host", "Budget", "host missing", func(c *Config) { c.Budget, c.BudgetMembers = ":7070", 2 }},
		{"port 0", "Budget", "port", func(c *Config) { c.Budget, c.BudgetMembers = "127.0.0.1:0", 2 }},
		{"port too large", "Budget", "port", func(c *Config) { c.Budget, c.BudgetMembers = "127.0.0.1:65536", 2 }},
		{"port not a number", "Budget", "port", func(c *Config) { c.Budget, c.BudgetMembers = "127.0.0.1:http", 2 }},
		{"a URL", "Budget", "host:port", func(c *Config) { c.Budget, c.BudgetMembers = "http://127.0.0.1:7070/", 2 }},
		{"a bad Redis URL", "Budget", "invalid database number", func(c *Config) {
			c.Budget, c.BudgetMembers = "redis://lion:pa55w0rd@10.0.0.5:6379/x", 2
		}},
		{"Redis and a listen address", "BudgetListen", "budget service only", func(c *Config) {
			c.Budget, c.BudgetMembers, c.BudgetListen = "redis://10.0.0.5:6379", 2, "127.0.0.1:0"
		}},
		{"Redis and a secret", "BudgetSecret", "user and password", func(c *Config) {
			c.Budget, c.BudgetMembers, c.BudgetSecret = "redis://10.0.0.5:6379", 2, budget.Secret("a secret of at least 16 bytes")
		}},
		{"no members", "BudgetMembers", "at least 1", func(c *Config) { c.Budget = "127.0.0.1:7070" }},
		{"negative members", "BudgetMembers", "at least 1", func(c *Config) { c.BudgetMembers = -1 }},
		{"bad listen", "BudgetListen", "host:port", func(c *Config) { c.Budget, c.BudgetMembers, c.BudgetListen = "127.0.0.1:7070", 2, "0" }},
		{"listen port too large", "BudgetListen", "port", func(c *Config) {
			c.Budget, c.BudgetMembers, c.BudgetListen = "127.0.0.1:7070", 2, "127.0.0.1:99999"
		}},
		{"short secret", "BudgetSecret", "at least 16 bytes", func(c *Config) {
			c.Budget, c.BudgetMembers, c.BudgetSecret = "127.0.0.1:7070", 2, budget.Secret("shhh")
		}},
		{"TLS without a key", "BudgetTLS.Key", "missing", func(c *Config) {
			c.Budget, c.BudgetMembers, c.BudgetTLS = "127.0.0.1:7070", 2, budget.TLSFiles{Cert: "c.pem", CA: "ca.pem"}
		}},
		{"TLS files missing", "BudgetTLS.Cert", "no such file", func(c *Config) {
			c.Budget, c.BudgetMembers, c.BudgetTLS = "127.0.0.1:7070", 2, budget.TLSFiles{Cert: "gone.pem", Key: "gone-key.pem", CA: "ca.pem"}
		}},
	}
	for _, tt := range tests {
		c := valid
		tt.set(&c)
		err := c.Validate()
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field || !strings.Contains(ce.Reason, tt.want) {
			t.Errorf("%s: Validate = %v, want a ConfigError for %q saying %q", tt.name, err, tt.field, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "pa55w0rd") {
			t.Errorf("%s: the error shows the password: %v", tt.name, err)
		}
	}
}

func TestExecutorConfigSharedBudget(t *testing.T) {
	const key = "sk-budget-secret-0001"
	c := Config{
		RPM: 3000, Concurrency: 4, MaxAttempts: 1, Queue: 4,
		Endpoint: imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: "http://127.0.0.1:8787/v1", APIKey: key},
	}
	if rc := c.executorConfig(nil); rc.SharedBudget != nil {
		t.Fatalf("no --budget, yet a shared budget: %+v", rc.SharedBudget)
	}
	c.Budget, c.BudgetMembers, c.BudgetListen = "127.0.0.1:7070", 3, "127.0.0.1:0"
	rc := c.executorConfig(nil)
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
	mc, ok := rc.SharedBudget.(budget.MemberConfig)
	if !ok {
		t.Fatalf("SharedBudget is %T, want budget.MemberConfig", rc.SharedBudget)
	}
	want := budget.MemberConfig{
		Address: "127.0.0.1:7070", Key: budget.KeyFor("http://127.0.0.1:8787/v1", key),
		ExpectedMembers: 3, ListenAddr: "127.0.0.1:0",
	}
	if !reflect.DeepEqual(mc, want) {
		t.Errorf("member config %+v, want %+v", mc, want)
	}
	if strings.Contains(mc.Key, key) || strings.Contains(mc.Key, "secret") {
		t.Errorf("the budget key %q shows the API key", mc.Key)
	}
	// The limits the budget divides are the run's own.
	if rc.RequestsPerInterval != 3000 {
		t.Errorf("rpm %d", rc.RequestsPerInterval)
	}
}

func TestBudgetKey(t *testing.T) {
	const key = "sk-budget-secret-0002"
	keyOf := func(p imodel.Provider, base, apiKey string) string {
		return Config{Endpoint: imodel.EndpointConfig{Provider: p, BaseURL: base, APIKey: apiKey}}.budgetKey()
	}
	azureKeyOf := func(base, deployment, apiKey string) string {
		return Config{Endpoint: imodel.EndpointConfig{Provider: imodel.Azure, BaseURL: base, Deployment: deployment, APIKey: apiKey}}.budgetKey()
	}
	same := []struct{ a, b string }{
		{azureKeyOf("https://RES.openai.azure.com/", "a", key), azureKeyOf("https://res.openai.azure.com", "a", key)},
		// The provider's default base URL, given or not.
		{keyOf(imodel.OpenAI, "", key), keyOf(imodel.OpenAI, "https://api.openai.com/v1", key)},
		{keyOf(imodel.Anthropic, "", key), keyOf(imodel.Anthropic, "https://api.anthropic.com/v1/", key)},
		// Case of scheme and host, a trailing slash.
		{keyOf(imodel.OpenAICompatible, "HTTP://Groq.example:443/openai/v1/", key), keyOf(imodel.OpenAICompatible, "http://groq.example:443/openai/v1", key)},
		// A query (where some gateways take a key) is left out.
		{keyOf(imodel.OpenAICompatible, "https://gw.example/v1?api-key=sk-in-url", key), keyOf(imodel.OpenAICompatible, "https://gw.example/v1", key)},
	}
	for i, s := range same {
		if s.a != s.b {
			t.Errorf("pair %d: %q != %q", i, s.a, s.b)
		}
	}
	different := []struct{ a, b string }{
		{keyOf(imodel.OpenAI, "", key), keyOf(imodel.OpenAI, "", key+"x")},
		{keyOf(imodel.OpenAI, "", key), keyOf(imodel.Anthropic, "", key)},
		{keyOf(imodel.OpenAICompatible, "http://127.0.0.1:1/v1", key), keyOf(imodel.OpenAICompatible, "http://127.0.0.1:2/v1", key)},
		// Azure limits each deployment apart.
		{azureKeyOf("https://res.openai.azure.com", "a", key), azureKeyOf("https://res.openai.azure.com", "b", key)},
	}
	for i, d := range different {
		if d.a == d.b {
			t.Errorf("pair %d: both %q", i, d.a)
		}
	}
	for _, k := range []string{keyOf(imodel.OpenAI, "", key), keyOf(imodel.OpenAICompatible, "https://gw.example/v1?api-key=sk-in-url", key)} {
		if strings.Contains(k, key) || strings.Contains(k, "sk-in-url") {
			t.Errorf("budget key %q shows a secret", k)
		}
	}
	// An unparsable URL (which imodel refuses) still names a budget, by
	// the provider, and does not copy the URL.
	if k := keyOf(imodel.OpenAICompatible, "not a url sk-in-url", key); !strings.HasPrefix(k, "openai-compatible#") {
		t.Errorf("budget key of a bad URL: %q", k)
	}
}

// TestRunSharedBudgetFallsBack runs a batch whose budget service cannot
// be reached: it says so in its log, keeps to its share of the limits, and
// completes every request. (A run with a service is tested end to end, in
// processes of their own, by cmd/lionactor: protoactor's remote.Start sets
// grpc's global logger, so two remote layers in one process race.)
func TestRunSharedBudgetFallsBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()

	sim, base := simtest.Start(t, simulator.Config{})
	const n = 30
	var log runtimetest.Buffer
	cfg := testConfig(base)
	cfg.Budget, cfg.BudgetMembers = nobody, 2
	cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantIndices(t, results, seq(0, n))
	if s := sum.Snapshot(); s.Completed != n || s.RateLimited != 0 {
		t.Errorf("summary %+v", s)
	}
	if got := sim.Stats().Requests; got != n {
		t.Errorf("the simulator served %d requests, want %d", got, n)
	}
	if l := log.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "service="+nobody) || !strings.Contains(l, "expected_members=2") {
		t.Errorf("no warning of the fallback:\n%s", l)
	}
	// The summary tells where the permits came from.
	sh := sum.Snapshot().Shared
	if sh.Mode != messages.SharedFallback || sh.Fallbacks != 1 || sh.LeasedRequests < n || !strings.Contains(sh.Reason, "no answer") {
		t.Errorf("shared budget in the summary: %+v", sh)
	}
	var buf strings.Builder
	sum.Snapshot().Write(&buf)
	if !strings.Contains(buf.String(), "shared budget: fallen back since ") || !strings.Contains(buf.String(), "1 fallbacks, 0 rejoins") {
		t.Errorf("summary:\n%s", buf.String())
	}
}

func TestRunSharedBudgetMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	cfg.Budget, cfg.BudgetMembers, cfg.MetricsAddr = nobody, 2, "127.0.0.1:0"
	client := newLocalClient(t)
	r := newRunner(cfg, Input{R: strings.NewReader(jsonl(t, 20))}, io.Discard, nil)
	probe := &metricsProbe{r: r, after: 10, scrape: func(addr string) string {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Errorf("GET /metrics: %v", err)
			return "failed"
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
		"lionactor_budget_joined 0", "lionactor_budget_fallbacks_total 1", "lionactor_budget_rejoins_total 0",
		"lionactor_budget_leases_total", "lionactor_budget_leased_requests_total", "lionactor_budget_held_requests",
		"lionactor_budget_held_tokens", "lionactor_budget_returned_leases_total", "lionactor_budget_returned_requests_total",
	} {
		if !strings.Contains(probe.body, want) {
			t.Errorf("metrics lack %q:\n%s", want, probe.body)
		}
	}
	if _, hash, _ := strings.Cut(cfg.budgetKey(), "#"); strings.Contains(probe.body, hash) {
		t.Error("the metrics show the key's hash")
	}
}

// TestRunOnARedisBudget runs a batch whose budget is kept in a real
// redis-server: it takes its permits from leases granted there, and says
// so in its summary. No remote layer is needed, so this runs under the race
// detector.
func TestRunOnARedisBudget(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	sim, base := simtest.Start(t, simulator.Config{})
	const n = 30
	cfg := testConfig(base)
	cfg.Budget, cfg.BudgetMembers = srv.URL(), 2
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(jsonl(t, n))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantIndices(t, results, seq(0, n))
	if got := sim.Stats().Requests; got != n {
		t.Errorf("the simulator served %d requests, want %d", got, n)
	}
	sh := sum.Snapshot().Shared
	if sh.Mode != messages.SharedJoined || sh.Fallbacks != 0 || sh.LeasedRequests < n {
		t.Errorf("shared budget in the summary: %+v", sh)
	}
	// The leases were Redis's: the budget's state is there.
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket})
	defer c.Close()
	if n, err := c.Exists(context.Background(), "lionactor:{"+cfg.budgetKey()+"}:state").Result(); err != nil || n != 1 {
		t.Errorf("no budget state in Redis (%d, %v)", n, err)
	}
	if rc := cfg.executorConfig(nil); rc.SharedBudget.(budget.MemberConfig).ListenAddr != "" {
		t.Errorf("a member on Redis with a listen address: %+v", rc.SharedBudget)
	}
}
