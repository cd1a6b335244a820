package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

// routerKeys are three made-up keys the simulator holds to their own
// limits, as lionactor sim --key-limits does.
var routerKeys = []struct {
	name, env, key string
	rpm            int
}{
	{"key-a", "ROUTER_KEY_A", "sk-test-router-aaaa", 6000},
	{"key-b", "ROUTER_KEY_B", "sk-test-router-bbbb", 12000},
	{"key-c", "ROUTER_KEY_C", "sk-test-router-cccc", 18000},
}

// routerYAML is a config file of the three keys at base, with extra
// settings after.
func routerYAML(base, extra string) string {
	var b strings.Builder
	b.WriteString("deployments:\n")
	for _, k := range routerKeys {
		fmt.Fprintf(&b, "  - name: %s\n    model: gpt-4o-mini\n    provider: openai\n    url: %s\n    upstream_model: gpt-4o-mini-2024-07-18\n    api_key_env: %s\n    rpm: %d\n    concurrency: 16\n    weight: 1\n",
			k.name, base, k.env, k.rpm)
	}
	b.WriteString(extra)
	return b.String()
}

func routerEnv(c *cli) {
	for _, k := range routerKeys {
		c.env[k.env] = k.key
	}
}

// lionactor batch --config router.yaml runs a file over three keys of one
// model, over loopback HTTP: every line ends COMPLETED once with the
// deployment that served it, no key is refused, no key starts more than
// its pace allows over the run (its bucket's first, then one per
// interval), and so each is used in proportion to its limit; the summary
// breaks the run down by deployment, and no key is shown.
func TestBatchOverDeploymentsFromConfig(t *testing.T) {
	limits := map[string]simulator.Limits{}
	for _, k := range routerKeys {
		limits[k.key] = simulator.Limits{RequestsPerMinute: k.rpm, RequestBurst: k.rpm / 60}
	}
	sim, base := simtest.Start(t, simulator.Config{KeyLimits: limits, Keys: []string{"sk-none"}})
	dir := t.TempDir()
	const n = 600
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	config := filepath.Join(dir, "router.yaml")
	if err := os.WriteFile(config, []byte(routerYAML(base, fmt.Sprintf("out: %s\nmax-attempts: 3\n", out))), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	routerEnv(c)
	if code := c.run(t, context.Background(), "batch", "--config", config, in); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results := readResults(t, out)
	checkEachOnce(t, results, n)
	by := map[string]int{}
	var first, last time.Time
	for _, r := range results {
		by[r.Deployment]++
		if r.Attempts != 1 {
			t.Errorf("line %d took %d attempts", r.Index, r.Attempts)
		}
		start := r.Timings.Created.Add(time.Duration((r.Timings.QueueMS + r.Timings.WaitMS) * float64(time.Millisecond)))
		if first.IsZero() || start.Before(first) {
			first = start
		}
		if start.After(last) {
			last = start
		}
	}
	st := sim.Stats()
	span := last.Sub(first)
	t.Logf("%d lines over %v of calls: %v; simulator: %v 429s", n, span, by, st.ByStatus[429])
	if st.ByStatus[429] != 0 {
		t.Errorf("%d requests answered 429", st.ByStatus[429])
	}
	// A key's bucket lets its first call go at once, then one per
	// interval; the call starts the results give are within a millisecond.
	most := func(rpm int) int { return 1 + int(float64(rpm)/60*(span+2*time.Millisecond).Seconds()) }
	for _, k := range routerKeys {
		least := n
		for _, o := range routerKeys {
			if o != k {
				least -= most(o.rpm)
			}
		}
		if got := by[k.name]; got != int(st.ByKey[k.key].Admitted) || got > most(k.rpm) || got < least {
			t.Errorf("%s served %d (simulator: %d), want [%d, %d]", k.name, got, st.ByKey[k.key].Admitted, least, most(k.rpm))
		}
	}
	stderr := c.stderr.String()
	for _, k := range routerKeys {
		if !strings.Contains(stderr, fmt.Sprintf("deployment %s (gpt-4o-mini as gpt-4o-mini-2024-07-18): %d calls, %d completed, 0 failed, 0 429 responses", k.name, by[k.name], by[k.name])) {
			t.Errorf("the summary lacks %s's line:\n%s", k.name, stderr)
		}
		if strings.Contains(stderr, k.key) {
			t.Errorf("stderr shows the key of %s", k.name)
		}
	}
	if !strings.Contains(stderr, "(limit 36000, ") {
		t.Errorf("the summary's rate is not against the sum of the limits:\n%s", stderr)
	}
	data, _ := os.ReadFile(out)
	for _, k := range routerKeys {
		if strings.Contains(string(data), k.key) {
			t.Errorf("the results show the key of %s", k.name)
		}
	}
}

// What a config file of deployments may get wrong is named as the file
// spells it, with its line; nothing is sent.
func TestBatchRouterConfigErrors(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	one := func(settings string) string {
		return "deployments:\n  - name: a\n    model: m\n    url: " + base + "\n    api_key_env: ROUTER_KEY_A\n    rpm: 60\n" + settings
	}
	for _, c := range []struct {
		name, yaml string
		args       []string
		want       string
	}{
		{"not a list", "deployments: {name: a}\n", nil, "deployments (line 1): want a list of deployments"},
		{"not a mapping", "deployments:\n  - a\n", nil, "deployments[0] (line 2): want a mapping"},
		{"unknown setting", one("    rpmm: 5\n"), nil, `deployments[0] (line 7): unknown setting "rpmm" (known: api_key_env, api_version, burst`},
		{"not a number", one("    tpm: lots\n"), nil, "deployments[0].tpm (line 7): want a whole number"},
		{"not text", one("    upstream_model: [a]\n"), nil, "deployments[0].upstream_model (line 7): want text"},
		{"bad headers", one("    headers: [nocolon]\n"), nil, "deployments[0].headers (line 7): header 1: want 'Name: value'"},
		{"bad header name", one("    headers: {'bad name': x}\n"), nil, "deployments[0].headers (line 7): header 1: the name must be a header name"},
		{"missing key", strings.Replace(one(""), "ROUTER_KEY_A", "ROUTER_KEY_NONE", 1), nil, `deployments[0].api_key_env: missing API key of deployment "a": set ROUTER_KEY_NONE`},
		{"bad rpm", strings.Replace(one(""), "rpm: 60", "rpm: 0", 1), nil, "deployments[0].rpm: must be positive"},
		{"bad url", strings.Replace(one(""), "url: "+base, "url: ftp://x", 1), nil, "deployments[0].url: must be an absolute http or https URL"},
		{"no model", strings.Replace(one(""), "    model: m\n", "", 1), nil, "deployments[0].model: required"},
		{"twice", one("  - name: a\n    model: m\n    url: " + base + "\n    api_key_env: ROUTER_KEY_A\n    rpm: 60\n"), nil, `deployments[1].name: "a" names another deployment too`},
		{"fallback nowhere", one("fallbacks: {m: [claude]}\n"), nil, "fallbacks.m: no deployment serves claude"},
		{"fallbacks not a mapping", one("fallbacks: [m]\n"), nil, "fallbacks (line 7): want a model's fallbacks"},
		{"fallbacks alone", "fallbacks: {m: [n]}\n", nil, "fallbacks: there are no deployments"},
		{"a flag of the sole endpoint", one(""), []string{"--rpm", "100"}, "--rpm: a run over deployments"},
		{"the same in the file", one("url: " + base + "\n"), nil, "--url: a run over deployments"},
		{"a cache", one(""), []string{"--cache-dir", filepath.Join(dir, "cache")}, "--cache-dir: not with deployments"},
		{"a cap without a price", one(""), []string{"--max-cost", "1"}, `--max-cost: no price for openai model "m" (deployment "a")`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cl := newCLI()
			cl.stdin = strings.NewReader(requestLine(0) + "\n")
			cl.env["ROUTER_KEY_A"] = "sk-test-router-aaaa"
			if code := cl.run(t, context.Background(), append([]string{"batch", "--config", path}, c.args...)...); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(cl.stderr.String(), c.want) {
				t.Errorf("stderr lacks %q:\n%s", c.want, cl.stderr.String())
			}
			if strings.Contains(cl.stderr.String(), "sk-test-router") {
				t.Error("stderr shows the key")
			}
		})
	}
	if sim.Stats().Requests != 0 {
		t.Error("requests were sent")
	}
}

// A deployment's settings reach its endpoint: Azure's, headers, a server
// that takes no key, its own path.
func TestBatchRouterDeploymentSettings(t *testing.T) {
	rec := simtest.StartRecording(t, simulator.Config{}, nil)
	dir := t.TempDir()
	yaml := fmt.Sprintf(`deployments:
  - name: azure-east
    model: gpt-4o
    provider: azure
    url: %[1]s
    deployment: gpt4o-east
    api_version: 2024-10-21
    api_key_env: AZURE_KEY
    rpm: 6000
    burst: 2
    headers: {X-Team: evals}
  - name: local
    model: mini
    provider: openai-compatible
    url: %[1]s/v1
    api_key_env: ''
    endpoint: /chat/completions
    rpm: 6000
    headers: ['X-Team: local']
fallbacks:
  gpt-4o: [mini]
ordered: true
`, rec.URL)
	config := filepath.Join(dir, "router.yaml")
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	c.env["AZURE_KEY"] = "sk-test-router-azure"
	c.stdin = strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":4}` + "\n" +
		`{"model":"mini","messages":[{"role":"user","content":"hi"}],"max_tokens":4}` + "\n")
	if code := c.run(t, context.Background(), "batch", "--config", config); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results, _ := parseResults(t, []byte(c.stdout.String()), false)
	if len(results) != 2 || results[0].Deployment != "azure-east" || results[1].Deployment != "local" {
		t.Fatalf("results %+v", results)
	}
	reqs := rec.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	az, local := reqs[0], reqs[1]
	if strings.HasPrefix(local.Path, "/openai/") {
		az, local = local, az // they went at once
	}
	if az.Path != "/openai/deployments/gpt4o-east/chat/completions" || az.Query != "api-version=2024-10-21" || az.Header.Get("Api-Key") != "sk-test-router-azure" || az.Header.Get("X-Team") != "evals" {
		t.Errorf("Azure request %s?%s %v", az.Path, az.Query, az.Header)
	}
	if local.Path != "/v1/chat/completions" || local.Header.Get("Authorization") != "" || local.Header.Get("X-Team") != "local" || local.Fields(t)["model"] != "mini" {
		t.Errorf("local request %s %v %s", local.Path, local.Header, local.Body)
	}
}
