package imodel

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

func sameUSD(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestDefaultPricesAreDatedSourcedAndWhole(t *testing.T) {
	p := DefaultPrices()
	if !regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`).MatchString(p.Date()) {
		t.Errorf("date %q", p.Date())
	}
	for _, prov := range []Provider{OpenAI, Anthropic} {
		pp := p.providers[prov]
		if !strings.HasPrefix(p.Source(prov), "https://") || pp.batchDiscount != 0.5 || len(pp.models) < 10 {
			t.Errorf("%s: source %q, batch discount %v, %d models", prov, p.Source(prov), pp.batchDiscount, len(pp.models))
		}
		for name, m := range pp.models {
			chat := !strings.Contains(name, "embedding")
			if !(m.Input > 0) || chat && !(m.Output > 0) || m.CachedInput > m.Input || m.LongContext != nil && m.LongContext.Input <= m.Input {
				t.Errorf("%s %s: %+v", prov, name, m)
			}
		}
	}
}

func TestLookupFindsSnapshotsNeverGuesses(t *testing.T) {
	p := DefaultPrices()
	cases := []struct {
		provider Provider
		model    string
		input    float64
		ok       bool
	}{
		{OpenAI, "gpt-4o-mini", 0.15, true},
		{OpenAI, "gpt-4o-mini-2024-07-18", 0.15, true},
		{OpenAI, " GPT-4o ", 2.50, true},
		{OpenAI, "text-embedding-3-small", 0.02, true},
		{Anthropic, "claude-haiku-4-5-20251001", 1, true},
		{Anthropic, "claude-sonnet-4-20250514", 3, true},
		{OpenAI, "gpt-4o-mini-turbo", 0, false}, // not a snapshot of gpt-4o-mini
		{OpenAI, "ft:gpt-4o-mini:org::abc", 0, false},
		{OpenAI, "claude-haiku-4-5", 0, false}, // another provider's model
		{Azure, "gpt-4o-mini", 0, false},       // Azure's prices are not in the table
		{OpenAICompatible, "llama-3.3-70b", 0, false},
		{Provider("nope"), "gpt-4o", 0, false},
	}
	for _, tc := range cases {
		price, ok := p.Lookup(tc.provider, tc.model)
		if ok != tc.ok || price.Input != tc.input {
			t.Errorf("Lookup(%s, %q) = %+v, %v; want input %v, %v", tc.provider, tc.model, price, ok, tc.input, tc.ok)
		}
		if ok && price.BatchDiscount != 0.5 {
			t.Errorf("%s: batch discount %v", tc.model, price.BatchDiscount)
		}
	}
}

func TestPriceCostCountsEveryKindOfToken(t *testing.T) {
	p := DefaultPrices()
	mini, _ := p.Lookup(OpenAI, "gpt-4o-mini")
	sonnet, _ := p.Lookup(Anthropic, "claude-sonnet-4-5")
	haiku, _ := p.Lookup(Anthropic, "claude-haiku-5-5")
	cases := []struct {
		name  string
		price Price
		u     messages.Usage
		want  float64
	}{
		{"plain", mini, messages.Usage{InputTokens: 1000, OutputTokens: 500},
			(1000*0.15 + 500*0.60) / 1e6},
		// OpenAI: cached tokens are within prompt_tokens, reasoning
		// within completion_tokens (billed as output).
		{"cached and reasoning", mini, messages.Usage{InputTokens: 2000, CachedInputTokens: 1024, OutputTokens: 500, ReasoningTokens: 300},
			(976*0.15 + 1024*0.075 + 500*0.60) / 1e6},
		// Anthropic: writes and reads at their prices, the rest at input.
		{"cache write and read", sonnet, messages.Usage{InputTokens: 3600, CacheWriteTokens: 2000, CachedInputTokens: 1500, OutputTokens: 50},
			(100*3 + 2000*3.75 + 1500*0.30 + 50*15) / 1e6},
		{"under the long-context threshold", haiku, messages.Usage{InputTokens: 100000, OutputTokens: 1000},
			(100000*0.10 + 1000*0.50) / 1e6},
		{"over it: every token at the long prices", haiku, messages.Usage{InputTokens: 100001, CachedInputTokens: 1, OutputTokens: 1000},
			(100000*0.50 + 1*0.05 + 1000*2.50) / 1e6},
		{"counts that do not add up are bounded", mini, messages.Usage{InputTokens: 10, CachedInputTokens: 50, CacheWriteTokens: 50, OutputTokens: -3},
			10 * 0.075 / 1e6},
	}
	for _, tc := range cases {
		if got := tc.price.Cost(tc.u); !sameUSD(got, tc.want) {
			t.Errorf("%s: Cost = %.10f, want %.10f", tc.name, got, tc.want)
		}
		if got := tc.price.BatchCost(tc.u); !sameUSD(got, tc.want/2) {
			t.Errorf("%s: BatchCost = %.10f, want half of %.10f", tc.name, got, tc.want)
		}
		if got := tc.price.Batch().Cost(tc.u); !sameUSD(got, tc.want/2) || tc.price.Batch().BatchDiscount != 0 {
			t.Errorf("%s: Batch().Cost = %.10f, want half of %.10f, with no discount left", tc.name, got, tc.want)
		}
	}
	if got, want := mini.Estimate(1000, 200), (1000*0.15+200*0.60)/1e6; !sameUSD(got, want) {
		t.Errorf("Estimate = %v, want %v", got, want)
	}
	var pricing messages.Pricing = mini // a Price prices requests
	_ = pricing
}

func TestParsePricesRefusesWhatItCannotRead(t *testing.T) {
	cases := []struct {
		name, file, want string
	}{
		{"syntax", "providers: [", "line"},
		{"unknown field", "providers:\n  openai:\n    models:\n      m: {input: 1, ouput: 2}\n", "ouput"},
		{"unknown provider", "providers:\n  opneai:\n    models:\n      m: {input: 1}\n", `"opneai"`},
		{"negative price", "providers:\n  openai:\n    models:\n      m: {input: 1, output: -2}\n", "openai: m: output"},
		{"no input", "providers:\n  openai:\n    models:\n      m: {output: 2}\n", "m: input: required"},
		{"discount", "providers:\n  openai:\n    batch_discount: 1.5\n", "batch_discount"},
		{"currency", "currency: EUR\n", "EUR"},
		{"unit", "unit: per token\n", "per token"},
		{"long context without a threshold", "providers:\n  anthropic:\n    models:\n      m: {input: 1, long_context: {input: 2}}\n", "above"},
		{"long context without input", "providers:\n  anthropic:\n    models:\n      m: {input: 1, long_context: {above: 5, output: 2}}\n", "long_context: input"},
	}
	for _, tc := range cases {
		_, err := ParsePrices([]byte(tc.file))
		if !errors.Is(err, ErrInvalidPrices) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidPrices naming %q", tc.name, err, tc.want)
		}
	}
	if p, err := ParsePrices(nil); err != nil || len(p.providers) != 0 {
		t.Errorf("an empty file: %v", err)
	}
}

func TestLoadPricesOverridesAndExtendsTheTable(t *testing.T) {
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "prices.yaml")
	writeFile(t, yamlFile, `
date: "2027-01-15"
providers:
  openai:
    models:
      gpt-4o-mini: {input: 0.10, output: 0.40}   # a negotiated price
      my-finetune: {input: 0.30, cached_input: 0.15, output: 1.20}
  azure:
    batch_discount: 0.5
    models:
      prod-gpt4o-mini: {input: 0.165, cached_input: 0.083, output: 0.66}
  openai-compatible:
    source: https://groq.example/pricing
    models:
      llama-3.3-70b-versatile: {input: 0.59, output: 0.79}
`)
	p, err := LoadPrices(yamlFile)
	if err != nil {
		t.Fatal(err)
	}
	if p.Date() != "2027-01-15" || p.Source(OpenAI) != DefaultPrices().Source(OpenAI) || p.Source(OpenAICompatible) != "https://groq.example/pricing" {
		t.Errorf("date %q, sources %q %q", p.Date(), p.Source(OpenAI), p.Source(OpenAICompatible))
	}
	if m, _ := p.Lookup(OpenAI, "gpt-4o-mini"); m.Input != 0.10 || m.CachedInput != 0.10 || m.Output != 0.40 || m.BatchDiscount != 0.5 {
		t.Errorf("overridden model %+v: a cached price left out is the input price", m)
	}
	if m, ok := p.Lookup(OpenAI, "gpt-4o"); !ok || m.Input != 2.50 {
		t.Errorf("a model the file does not name keeps its price: %+v %v", m, ok)
	}
	for _, tc := range []struct {
		prov  Provider
		model string
		input float64
	}{{OpenAI, "my-finetune", 0.30}, {Azure, "prod-gpt4o-mini", 0.165}, {OpenAICompatible, "llama-3.3-70b-versatile", 0.59}} {
		if m, ok := p.Lookup(tc.prov, tc.model); !ok || m.Input != tc.input {
			t.Errorf("added %s %s: %+v %v", tc.prov, tc.model, m, ok)
		}
	}
	if m, _ := p.Lookup(OpenAICompatible, "llama-3.3-70b-versatile"); m.BatchDiscount != 0 {
		t.Errorf("no batch discount given: %v", m.BatchDiscount)
	}
	if _, ok := DefaultPrices().Lookup(OpenAI, "my-finetune"); ok {
		t.Error("LoadPrices changed the embedded table")
	}
	if m, _ := DefaultPrices().Lookup(OpenAI, "gpt-4o-mini"); m.Input != 0.15 {
		t.Errorf("LoadPrices changed the embedded table: %+v", m)
	}

	jsonFile := filepath.Join(dir, "prices.json")
	writeFile(t, jsonFile, `{"providers": {"anthropic": {"models": {"claude-next": {"input": 2, "cache_write": 2.5, "cached_input": 0.2, "output": 10}}}}}`)
	p, err = LoadPrices(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := p.Lookup(Anthropic, "claude-next-20270101"); !ok || m.CacheWrite != 2.5 || p.Date() != DefaultPrices().Date() {
		t.Errorf("JSON file: %+v %v, date %q", m, ok, p.Date())
	}

	writeFile(t, yamlFile, "providers:\n  openai:\n    models:\n      x: {input: -1}\n")
	if _, err := LoadPrices(yamlFile); !errors.Is(err, ErrInvalidPrices) || !strings.Contains(err.Error(), yamlFile) {
		t.Errorf("bad file: %v, want ErrInvalidPrices naming the file", err)
	}
	if _, err := LoadPrices(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
