package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

const testAzureKey = "azure-test-cli-5e6f"

// TestBatchAzure runs a batch against the simulator's Azure OpenAI paths,
// with the key from AZURE_OPENAI_API_KEY.
func TestBatchAzure(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{Keys: []string{testAzureKey}})
	resource := strings.TrimSuffix(base, "/v1")
	const n = 12
	var sb strings.Builder
	for i := range n {
		sb.WriteString(requestLine(i) + "\n")
	}
	c := newCLI()
	c.env = map[string]string{"AZURE_OPENAI_API_KEY": testAzureKey}
	c.stdin = strings.NewReader(sb.String())
	if code := c.run(t, context.Background(), "batch", "--provider", "azure", "--url", resource,
		"--deployment", "gpt-4o-mini-batch", "--api-version", "2024-10-21", "--rpm", "60000"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results, _ := parseResults(t, []byte(c.stdout.String()), false)
	checkEachOnce(t, results, n)
	for _, r := range results {
		var reply struct{ Model string }
		if err := json.Unmarshal(r.Response, &reply); err != nil || reply.Model != "gpt-4o-mini-batch" {
			t.Fatalf("reply %s: the deployment did not answer", r.Response)
		}
		if r.Tokens.Estimated == 0 || r.Tokens.Actual == nil {
			t.Fatalf("tokens %+v", r.Tokens)
		}
	}
	if st := sim.Stats(); st.ByKey[testAzureKey].Requests != n || st.ByStatus[200] != n {
		t.Errorf("simulator stats %+v", st)
	}
	if strings.Contains(c.stdout.String()+c.stderr.String(), testAzureKey) {
		t.Error("the output shows the key")
	}
}

// TestBatchAzureUsageErrors: what Azure needs is asked for before anything
// is sent, naming what is missing.
func TestBatchAzureUsageErrors(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	resource := strings.TrimSuffix(base, "/v1")
	azure := []string{"batch", "--provider", "azure", "--url", resource}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no deployment", map[string]string{"AZURE_OPENAI_API_KEY": testAzureKey}, []string{"--api-version", "2024-10-21"}, "deployment"},
		{"no api-version", map[string]string{"AZURE_OPENAI_API_KEY": testAzureKey}, []string{"--deployment", "d"}, "api"},
		{"no key", map[string]string{"OPENAI_API_KEY": testKey}, []string{"--deployment", "d", "--api-version", "2024-10-21"}, "AZURE_OPENAI_API_KEY"},
		{"deployment for openai", map[string]string{"OPENAI_API_KEY": testKey}, []string{"--provider", "openai", "--deployment", "d"}, "deployment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI()
			c.env = tc.env
			c.stdin = strings.NewReader(requestLine(0) + "\n")
			if code := c.run(t, context.Background(), append(append([]string{}, azure...), tc.args...)...); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(strings.ToLower(c.stderr.String()), strings.ToLower(tc.want)) {
				t.Errorf("stderr does not name %s:\n%s", tc.want, c.stderr.String())
			}
		})
	}
	if st := sim.Stats(); st.Requests != 0 {
		t.Errorf("%d requests sent", st.Requests)
	}
}
