package imodel

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/lionactor/lionactor/messages"
)

// Price is what one model costs, in US dollars per million tokens. It
// implements messages.Pricing: a request priced by it carries its cost in
// its snapshots (messages.Event.Cost).
type Price struct {
	// Input is the price of each input token not read from or written to
	// the prompt cache.
	Input float64
	// CachedInput is the price of each input token read from the prompt
	// cache (messages.Usage.CachedInputTokens).
	CachedInput float64
	// CacheWrite is the price of each input token written to the prompt
	// cache (messages.Usage.CacheWriteTokens).
	CacheWrite float64
	// Output is the price of each output token, reasoning included.
	Output float64
	// LongContext, if set, are the prices of a request whose input is
	// more than LongContext.Above tokens: they then apply to all of its
	// tokens.
	LongContext *LongContextPrice
	// BatchDiscount is the share the provider's batch API takes off every
	// price (0.5: half price); see BatchCost.
	BatchDiscount float64
	// Note says where the figures come from, when not from the provider's
	// own price list.
	Note string
}

// LongContextPrice is what a model costs for a request whose input is more
// than Above tokens, in US dollars per million tokens.
type LongContextPrice struct {
	Above                                  int
	Input, CachedInput, CacheWrite, Output float64
}

// perMillion is the unit of every price.
const perMillion = 1e6

// Cost returns what u costs at p, in US dollars: each input token at the
// price of its kind (cached, written to the cache, or neither), each output
// token at the output price, all at the long-context prices when the input
// passes their threshold.
func (p Price) Cost(u messages.Usage) float64 {
	in, cachedIn, write, out := p.Input, p.CachedInput, p.CacheWrite, p.Output
	if lc := p.LongContext; lc != nil && u.InputTokens > lc.Above {
		in, cachedIn, write, out = lc.Input, lc.CachedInput, lc.CacheWrite, lc.Output
	}
	cached := min(max(u.CachedInputTokens, 0), max(u.InputTokens, 0))
	written := min(max(u.CacheWriteTokens, 0), max(u.InputTokens, 0)-cached)
	plain := max(u.InputTokens, 0) - cached - written
	return (float64(plain)*in + float64(cached)*cachedIn + float64(written)*write + float64(max(u.OutputTokens, 0))*out) / perMillion
}

// BatchCost returns what u costs at p through the provider's batch API: Cost
// less the provider's batch discount.
func (p Price) BatchCost(u messages.Usage) float64 {
	return p.Cost(u) * (1 - p.BatchDiscount)
}

// Batch returns the price through the provider's batch API: every price of
// p less the batch discount, and no discount left to take, so that
// p.Batch().Cost(u) is p.BatchCost(u). A request sent in a batch carries it
// as its messages.Pricing.
func (p Price) Batch() Price {
	f := 1 - p.BatchDiscount
	b := p
	b.Input, b.CachedInput, b.CacheWrite, b.Output = f*p.Input, f*p.CachedInput, f*p.CacheWrite, f*p.Output
	if lc := p.LongContext; lc != nil {
		l := *lc
		l.Input, l.CachedInput, l.CacheWrite, l.Output = f*lc.Input, f*lc.CachedInput, f*lc.CacheWrite, f*lc.Output
		b.LongContext = &l
	}
	b.BatchDiscount = 0
	return b
}

// Estimate returns what a request of input tokens and output tokens costs
// at p, none of them cached: the amount a request's estimate is priced at.
func (p Price) Estimate(input, output int) float64 {
	return p.Cost(messages.Usage{InputTokens: input, OutputTokens: output, TotalTokens: input + output})
}

// Prices is a price table: per provider, the price of each model and the
// batch discount. DefaultPrices is the table lionactor embeds; LoadPrices
// adds a file's entries to it. A Prices is never changed once made, so one
// may be shared.
type Prices struct {
	date      string
	providers map[Provider]providerPrices
}

type providerPrices struct {
	source        string
	batchDiscount float64
	models        map[string]Price
}

// ErrInvalidPrices is wrapped by the errors of a price file that cannot be
// read: a syntax error, an unknown field or provider, a negative price.
var ErrInvalidPrices = errors.New("imodel: invalid prices")

//go:embed prices.yaml
var embeddedPrices []byte

var defaultPrices = sync.OnceValue(func() *Prices {
	p, err := ParsePrices(embeddedPrices)
	if err != nil {
		panic("imodel: the embedded price table: " + err.Error()) // a test reads it
	}
	return p
})

// DefaultPrices returns the price table embedded in lionactor, dated (Date)
// and with its sources, in prices.yaml of this package.
func DefaultPrices() *Prices { return defaultPrices() }

// Date is the date of the table's prices, as its file gives it.
func (p *Prices) Date() string { return p.date }

// Source is where the prices of provider p come from, as the file says.
func (p *Prices) Source(provider Provider) string { return p.providers[provider].source }

// Lookup returns the price of model at provider, and whether there is one.
// A model is found by its name, or by its name without a date suffix
// ("gpt-4o-mini-2024-07-18", "claude-haiku-4-5-20251001"); letter case
// does not matter. An Azure deployment is looked up under provider azure by
// the name of the model its request names, or else of the deployment.
func (p *Prices) Lookup(provider Provider, model string) (Price, bool) {
	pp, ok := p.providers[provider]
	if !ok {
		return Price{}, false
	}
	name := strings.ToLower(strings.TrimSpace(model))
	price, ok := pp.models[name]
	if !ok {
		if base := dateSuffix.ReplaceAllString(name, ""); base != name {
			price, ok = pp.models[base]
		}
	}
	if !ok {
		return Price{}, false
	}
	price.BatchDiscount = pp.batchDiscount
	return price, true
}

// dateSuffix is the date a snapshot's name ends in: -2024-07-18 (OpenAI) or
// -20251001 (Anthropic).
var dateSuffix = regexp.MustCompile(`-(\d{4}-\d{2}-\d{2}|\d{8})$`)

// Merge returns a table of p's entries with over's on top: a model over
// names replaces p's entry of that name, a batch discount or a source it
// gives replaces p's, and its date, if it has one, becomes the table's.
func (p *Prices) Merge(over *Prices) *Prices {
	out := &Prices{date: p.date, providers: make(map[Provider]providerPrices, len(p.providers)+len(over.providers))}
	for name, pp := range p.providers {
		pp.models = maps.Clone(pp.models)
		out.providers[name] = pp
	}
	if over.date != "" {
		out.date = over.date
	}
	for name, o := range over.providers {
		pp := out.providers[name]
		if pp.models == nil {
			pp.models = map[string]Price{}
		}
		if o.source != "" {
			pp.source = o.source
		}
		if o.batchDiscount != 0 {
			pp.batchDiscount = o.batchDiscount
		}
		maps.Copy(pp.models, o.models)
		out.providers[name] = pp
	}
	return out
}

// LoadPrices returns the embedded table with the entries of the price file
// at path on top (see Merge): the models it adds, and its prices for the
// models both have. The file has the form of the embedded prices.yaml, in
// YAML or JSON; an error names the file and what is wrong with it, and
// matches ErrInvalidPrices unless the file could not be read.
func LoadPrices(path string) (*Prices, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("imodel: prices: %w", err)
	}
	over, err := ParsePrices(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return DefaultPrices().Merge(over), nil
}

// priceFile is the form of a price file.
type priceFile struct {
	Date      string                  `yaml:"date"`
	Currency  string                  `yaml:"currency"`
	Unit      string                  `yaml:"unit"`
	Providers map[string]providerFile `yaml:"providers"`
}

type providerFile struct {
	Source        string               `yaml:"source"`
	BatchDiscount *float64             `yaml:"batch_discount"`
	Models        map[string]modelFile `yaml:"models"`
}

type modelFile struct {
	rates       `yaml:",inline"`
	LongContext *longContextFile `yaml:"long_context"`
	Note        string           `yaml:"note"`
}

type rates struct {
	Input       *float64 `yaml:"input"`
	CachedInput *float64 `yaml:"cached_input"`
	CacheWrite  *float64 `yaml:"cache_write"`
	Output      *float64 `yaml:"output"`
}

type longContextFile struct {
	Above int `yaml:"above"`
	rates `yaml:",inline"`
}

// ParsePrices reads a price table in the form of the embedded prices.yaml,
// YAML or JSON, on its own (LoadPrices adds a file to the embedded table).
// Its errors match ErrInvalidPrices and name the provider, model and field
// at fault, or the line of a syntax error.
func ParsePrices(data []byte) (*Prices, error) {
	var f priceFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPrices, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidPrices, fmt.Sprintf(format, args...))
	}
	if f.Currency != "" && !strings.EqualFold(f.Currency, "USD") {
		return nil, bad("currency %q: prices are in USD", f.Currency)
	}
	if f.Unit != "" && f.Unit != "per million tokens" {
		return nil, bad("unit %q: prices are per million tokens", f.Unit)
	}
	p := &Prices{date: f.Date, providers: make(map[Provider]providerPrices, len(f.Providers))}
	for _, name := range slices.Sorted(maps.Keys(f.Providers)) {
		pf := f.Providers[name]
		prov := Provider(name)
		if _, known := providers[prov]; !known {
			return nil, bad("unknown provider %q (openai, anthropic, azure, openai-compatible or generic)", name)
		}
		pp := providerPrices{source: pf.Source, models: make(map[string]Price, len(pf.Models))}
		if d := pf.BatchDiscount; d != nil {
			if !(*d >= 0 && *d < 1) {
				return nil, bad("%s: batch_discount %v: a share in [0, 1)", name, *d)
			}
			pp.batchDiscount = *d
		}
		for _, model := range slices.Sorted(maps.Keys(pf.Models)) {
			price, err := pf.Models[model].price()
			if err != nil {
				return nil, bad("%s: %s: %v", name, model, err)
			}
			pp.models[strings.ToLower(strings.TrimSpace(model))] = price
		}
		p.providers[prov] = pp
	}
	return p, nil
}

// price resolves a model's entry: a cached-input or cache-write price left
// out is the input price.
func (m modelFile) price() (Price, error) {
	in, cachedIn, write, out, err := m.rates.resolve()
	if err != nil {
		return Price{}, err
	}
	p := Price{Input: in, CachedInput: cachedIn, CacheWrite: write, Output: out, Note: m.Note}
	if lc := m.LongContext; lc != nil {
		if lc.Above <= 0 {
			return Price{}, fmt.Errorf("long_context: above must be a positive number of input tokens")
		}
		in, cachedIn, write, out, err := lc.rates.resolve()
		if err != nil {
			return Price{}, fmt.Errorf("long_context: %w", err)
		}
		p.LongContext = &LongContextPrice{Above: lc.Above, Input: in, CachedInput: cachedIn, CacheWrite: write, Output: out}
	}
	return p, nil
}

func (r rates) resolve() (in, cachedIn, write, out float64, err error) {
	if r.Input == nil {
		return 0, 0, 0, 0, errors.New("input: required")
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"input", r.Input}, {"cached_input", r.CachedInput}, {"cache_write", r.CacheWrite}, {"output", r.Output}} {
		if f.v != nil && !(*f.v >= 0 && !math.IsInf(*f.v, 1)) {
			return 0, 0, 0, 0, fmt.Errorf("%s: %v is not a price", f.name, *f.v)
		}
	}
	in, cachedIn, write = *r.Input, *r.Input, *r.Input
	if r.CachedInput != nil {
		cachedIn = *r.CachedInput
	}
	if r.CacheWrite != nil {
		write = *r.CacheWrite
	}
	if r.Output != nil {
		out = *r.Output
	}
	return in, cachedIn, write, out, nil
}
