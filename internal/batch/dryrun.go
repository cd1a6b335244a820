package batch

import (
	"fmt"
	"io"
	"maps"
	"math"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lionactor/lionactor/batchapi"
	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// Defaults of a dry run's assumptions.
const (
	// DefaultOutputShare is the share of its max output tokens a reply is
	// assumed to use for the likely cost: replies often stop well before
	// max_tokens, and a half is a middle between none and all.
	DefaultOutputShare = 0.5
	// DefaultCallLatency is the latency assumed of a call for the wall
	// time at the concurrency cap.
	DefaultCallLatency = 2 * time.Second
)

// DryRunOptions are what a dry run assumes of what it cannot know.
type DryRunOptions struct {
	// OutputShare is the share, in [0, 1], of its max output tokens a
	// reply is assumed to use, for the likely cost and the tokens a minute
	// the run will spend; 0 means DefaultOutputShare.
	OutputShare float64
	// CallLatency is the time a call is assumed to take, for the wall time
	// at the concurrency cap; 0 means DefaultCallLatency.
	CallLatency time.Duration
}

// InvalidLine is an input line a run would fail without sending it.
type InvalidLine struct {
	Line   int    // 1-based
	Kind   string // as its result line would name it: invalid_input, line_too_long, invalid_request, too_many_tokens, price_unknown
	Reason string
}

// Forecast is what a dry run says of an input: what the run would send,
// how many tokens, what it would cost, and how long it would take. All
// amounts are in US dollars.
type Forecast struct {
	// Requests counts the input's requests (its non-blank lines);
	// DoneBefore those with a final result in the output already
	// (Input.Prior), which the run would skip; Invalid those it would
	// fail without sending, with why; Sent those it would send.
	Requests, DoneBefore, Sent int
	Invalid                    []InvalidLine
	// DuplicateID is the first *DuplicateIDError of the input: the
	// command refuses such an input before sending anything (Scan), so
	// the dry run of the command says it would. Run itself fails the
	// later line, and it is among Invalid.
	DuplicateID error
	// InputTokens and OutputTokens are the sent requests' estimated input
	// and most output tokens, as the run counts them (imodel.Estimator);
	// NoMaxTokens counts those that set no max_tokens, whose replies are
	// counted at tokens.DefaultMaxTokens and may be longer.
	InputTokens, OutputTokens int64
	NoMaxTokens               int
	// Priced counts the sent requests with a price. CostInput is what
	// their input costs, CostMax that with every reply at its max output
	// tokens (what the run estimates them at), CostLikely that with
	// replies at OutputShare of it: the range and the likely cost, with no
	// prompt-cache read and no batch discount.
	Priced                         int
	CostInput, CostMax, CostLikely float64
	// PriceUnknown counts the sent requests without a price, of the models
	// UnpricedModels names (the first few); they are not in the costs.
	PriceUnknown   int
	UnpricedModels []string
	PricesDate     string

	// BatchAPI says the run goes through the provider's batch API
	// (Config.BatchAPI): the costs are at the batch price, and the wall
	// time is the batches', up to BatchWindow, not the limits'.
	BatchAPI    bool
	BatchWindow time.Duration

	// What the wall time is worked out from: the run's limits and the
	// assumptions.
	RPM, Burst, TPM, Concurrency int
	OutputShare                  float64
	CallLatency                  time.Duration
}

// DryRun reads the whole input and forecasts the run cfg would make of it,
// without sending anything or needing a key: each request is counted with
// the tokenizer and the formula the run charges it with, priced as the run
// prices it, and checked as the run checks it before sending (a line that
// is not a JSON object, a duplicate id, a request larger than the token
// limit, a price unknown under a spend cap). Requests with a final result
// in in.Prior are skipped, as the run skips them.
func DryRun(cfg Config, in Input, opts DryRunOptions) (*Forecast, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case opts.OutputShare < 0 || opts.OutputShare > 1 || math.IsNaN(opts.OutputShare):
		return nil, &messages.ConfigError{Field: "OutputShare", Reason: "must be a share in [0, 1]"}
	case opts.CallLatency < 0:
		return nil, &messages.ConfigError{Field: "CallLatency", Reason: "must not be negative"}
	}
	if opts.OutputShare == 0 {
		opts.OutputShare = DefaultOutputShare
	}
	if opts.CallLatency == 0 {
		opts.CallLatency = DefaultCallLatency
	}
	est, err := newDryEstimator(cfg)
	if err != nil {
		return nil, err
	}
	f := &Forecast{
		PricesDate: cfg.prices().Date(), RPM: cfg.RPM, Burst: cfg.burst(), TPM: cfg.TPM, Concurrency: cfg.Concurrency,
		OutputShare: opts.OutputShare, CallLatency: opts.CallLatency,
	}
	if cfg.routed() {
		// The deployments' limits add up; a line goes where budget is left.
		info := cfg.routerReportInfo()
		f.RPM, f.Burst, f.TPM, f.Concurrency = info.RPM, info.Burst, info.TPM, info.Concurrency
	}
	if cfg.BatchAPI != nil {
		f.BatchAPI, f.BatchWindow = true, cfg.BatchAPI.CompletionWindow
		if f.BatchWindow == 0 {
			f.BatchWindow = batchapi.CompletionWindow24h
		}
	}
	if err := f.read(cfg, in, est); err != nil {
		return f, err
	}
	slices.SortFunc(f.Invalid, func(a, b InvalidLine) int { return a.Line - b.Line })
	return f, nil
}

// dryJob is a line to estimate; dryTally what the estimates of a worker's
// lines add up to.
type dryJob struct {
	index int
	body  map[string]any
}

type dryTally struct {
	sent, noMax, priced, unpriced  int
	in, out                        int64
	costInput, costMax, costLikely float64
	unpricedModels                 []string
	invalid                        []InvalidLine
}

// read identifies the lines in order, as the run does (identities and
// duplicate ids depend on the lines before), and estimates the requests
// that would run on every core: the tokenizer is most of the work.
func (f *Forecast) read(cfg Config, in Input, est *dryEstimator) error {
	jobs := make(chan []dryJob, 4)
	workers := max(1, goruntime.GOMAXPROCS(0))
	tallies := make([]dryTally, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			t := &tallies[w]
			for batch := range jobs {
				for _, j := range batch {
					t.estimate(cfg, est, j, f.OutputShare, f.BatchAPI)
				}
			}
		})
	}
	var invalid []InvalidLine
	readErr := func() error {
		defer close(jobs)
		lr := newLineReader(in.R, cfg.maxLineBytes())
		ids := newIdentifier()
		const batchSize = 64
		pending := make([]dryJob, 0, batchSize)
		for index := 0; ; index++ {
			raw, err := lr.next()
			if !raw.blank() {
				f.Requests++
				ln := ids.take(index, raw)
				switch {
				case !cfg.verdict(in.Prior, ln.id, index).runs():
					f.DoneBefore++
				case ln.invalid != nil:
					invalid = append(invalid, InvalidLine{Line: index + 1, Kind: inputKind(ln.invalid), Reason: ln.invalid.Error()})
				case ln.dupID != nil:
					invalid = append(invalid, InvalidLine{Line: index + 1, Kind: "invalid_input", Reason: ln.dupID.Error()})
					if f.DuplicateID == nil {
						f.DuplicateID = ln.dupID
					}
				default:
					pending = append(pending, dryJob{index: index, body: ln.parsed.body})
					if len(pending) == batchSize {
						jobs <- pending
						pending = make([]dryJob, 0, batchSize)
					}
				}
			}
			if err == io.EOF {
				if len(pending) > 0 {
					jobs <- pending
				}
				return nil
			}
			if err != nil {
				return fmt.Errorf("batch: reading input: %w", err)
			}
		}
	}()
	wg.Wait()
	f.Invalid = invalid
	for _, t := range tallies {
		f.Sent += t.sent
		f.NoMaxTokens += t.noMax
		f.Priced += t.priced
		f.PriceUnknown += t.unpriced
		f.InputTokens += t.in
		f.OutputTokens += t.out
		f.CostInput += t.costInput
		f.CostMax += t.costMax
		f.CostLikely += t.costLikely
		f.Invalid = append(f.Invalid, t.invalid...)
		for _, m := range t.unpricedModels {
			if !slices.Contains(f.UnpricedModels, m) && len(f.UnpricedModels) < maxUnpriced {
				f.UnpricedModels = append(f.UnpricedModels, m)
			}
		}
	}
	return readErr
}

// estimate counts one request: what it would cost, or why the run would
// fail it unsent (the same checks and words as submit).
func (t *dryTally) estimate(cfg Config, est *dryEstimator, j dryJob, share float64, batchPrice bool) {
	e, tpm, err := est.estimate(j.body)
	if batchPrice && e.Priced {
		e.Price = e.Price.Batch()
	}
	invalid := func(kind, format string, args ...any) {
		t.invalid = append(t.invalid, InvalidLine{Line: j.index + 1, Kind: kind, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case err != nil:
		invalid("invalid_request", "%v", err)
		return
	case tpm > 0 && e.Tokens() > tpm:
		invalid("too_many_tokens", "estimated %d tokens exceed the token limit of %d a minute (TPM): the request could never run", e.Tokens(), tpm)
		return
	case cfg.MaxCost > 0 && !e.Priced:
		invalid("price_unknown", "no price for model %q (--max-cost needs every request's price): give it with --prices", e.Model)
		return
	}
	t.sent++
	t.in += int64(e.InputTokens)
	t.out += int64(e.OutputTokens)
	if !e.MaxTokensSet {
		t.noMax++
	}
	if !e.Priced {
		t.unpriced++
		if !slices.Contains(t.unpricedModels, e.Model) && len(t.unpricedModels) < maxUnpriced {
			t.unpricedModels = append(t.unpricedModels, e.Model)
		}
		return
	}
	t.priced++
	input := e
	input.OutputTokens = 0
	likely := e
	likely.OutputTokens = int(math.Round(share * float64(e.OutputTokens)))
	t.costInput += input.Cost()
	t.costMax += e.Cost()
	t.costLikely += likely.Cost()
}

// The three bounds of a run's wall time.
const (
	boundRPM         = "rpm"
	boundTPM         = "tpm"
	boundConcurrency = "concurrency"
)

// LikelyTokens is the tokens the sent requests would spend with replies at
// OutputShare of their max output: what the token limit paces.
func (f *Forecast) LikelyTokens() int64 {
	return f.InputTokens + int64(math.Round(f.OutputShare*float64(f.OutputTokens)))
}

// WallTimes is how long the run would take at each of its limits alone:
// the request limit (requests start evenly paced, Burst at once), the
// token limit (its bucket holds a minute's worth from the start; the
// likely tokens, as each call's estimate is refunded down to its usage),
// and the concurrency cap (CallLatency a call); the first two plus one
// call's latency for the last request. The largest binds.
func (f *Forecast) WallTimes() map[string]time.Duration {
	n := float64(f.Sent)
	times := map[string]time.Duration{}
	if f.RPM > 0 {
		times[boundRPM] = time.Duration(max(0, n-float64(f.Burst))*float64(time.Minute)/float64(f.RPM)) + f.CallLatency
	}
	if f.TPM > 0 {
		times[boundTPM] = time.Duration(max(0, float64(f.LikelyTokens()-int64(f.TPM)))*float64(time.Minute)/float64(f.TPM)) + f.CallLatency
	}
	if f.Concurrency > 0 {
		times[boundConcurrency] = time.Duration(math.Ceil(n/float64(f.Concurrency)) * float64(f.CallLatency))
	}
	if f.Sent == 0 {
		clear(times)
	}
	return times
}

// WallTime is how long the run would take, and which limit binds: the
// largest of WallTimes.
func (f *Forecast) WallTime() (time.Duration, string) {
	var d time.Duration
	bound := ""
	for _, b := range []string{boundRPM, boundTPM, boundConcurrency} {
		if t, ok := f.WallTimes()[b]; ok && t > d {
			d, bound = t, b
		}
	}
	return d, bound
}

// maxInvalidShown is how many invalid lines Write lists.
const maxInvalidShown = 20

// Write prints the forecast.
func (f *Forecast) Write(w io.Writer) {
	fmt.Fprintf(w, "dry run: nothing sent\n")
	fmt.Fprintf(w, "requests: %s in the input; %s invalid, %s done before; %s would be sent\n",
		count(int64(f.Requests)), count(int64(len(f.Invalid))), count(int64(f.DoneBefore)), count(int64(f.Sent)))
	if len(f.Invalid) > 0 {
		fmt.Fprintln(w, "invalid lines (failed without a call):")
		for i, l := range f.Invalid {
			if i == maxInvalidShown {
				fmt.Fprintf(w, "  and %d more\n", len(f.Invalid)-maxInvalidShown)
				break
			}
			fmt.Fprintf(w, "  line %d: %s: %s\n", l.Line, l.Kind, l.Reason)
		}
	}
	fmt.Fprintf(w, "tokens: %s input, %s max output", count(f.InputTokens), count(f.OutputTokens))
	if f.NoMaxTokens > 0 {
		fmt.Fprintf(w, " (%s set no max_tokens: counted at the limiter's reservation; their replies may be longer)", plural(f.NoMaxTokens, "request", "requests"))
	}
	fmt.Fprintln(w)
	if f.Priced > 0 {
		discount := "no prompt-cache reads or batch discount counted"
		if f.BatchAPI {
			discount = "at the batch price (--via batch-api), no prompt-cache reads counted"
		}
		fmt.Fprintf(w, "cost: %s input only ... %s with every reply at max output; likely %s, replies at %.0f%% of max output (--output-share); prices of %s, %s\n",
			usd(f.CostInput), usd(f.CostMax), usd(f.CostLikely), 100*f.OutputShare, f.PricesDate, discount)
	}
	if f.PriceUnknown > 0 {
		fmt.Fprintf(w, "cost: price unknown for %s (%s): not counted; give their prices with --prices\n", plural(f.PriceUnknown, "request", "requests"), strings.Join(f.UnpricedModels, ", "))
	}
	d, bound := f.WallTime()
	switch {
	case bound == "":
		fmt.Fprintln(w, "wall time: nothing to send")
		return
	case f.BatchAPI:
		fmt.Fprintf(w, "wall time: as long as the provider takes with the batches, up to %v (--completion-window); the limits bind only the requests sent online\n", f.BatchWindow)
		return
	}
	times := f.WallTimes()
	parts := make([]string, 0, 3)
	for _, b := range []string{boundRPM, boundTPM, boundConcurrency} {
		t, ok := times[b]
		if !ok {
			continue
		}
		var what string
		switch b {
		case boundRPM:
			what = fmt.Sprintf("--rpm %d: %s", f.RPM, roundWall(t))
		case boundTPM:
			what = fmt.Sprintf("--tpm %d: %s for %s likely tokens", f.TPM, roundWall(t), count(f.LikelyTokens()))
		case boundConcurrency:
			what = fmt.Sprintf("--concurrency %d at %v a call (--call-latency): %s", f.Concurrency, f.CallLatency, roundWall(t))
		}
		if b == bound {
			what += " (binds)"
		}
		parts = append(parts, what)
	}
	fmt.Fprintf(w, "wall time: about %s, at the %s limit; %s\n", roundWall(d), bound, strings.Join(parts, "; "))
}

// roundWall rounds a wall time for display.
func roundWall(d time.Duration) time.Duration {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute)
	case d >= time.Minute:
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// dryEstimator estimates a line as the run would send it: to the endpoint,
// or, in a run over deployments, to the first deployment of the line's
// model, in that deployment's dialect and at its model's price.
type dryEstimator struct {
	one    *imodel.Estimator
	tpm    int                  // the token limit a request must fit
	groups map[string]*dryGroup // a routed run's, by model
	order  []string             // the groups, in the order of their first deployment
}

type dryGroup struct {
	est *imodel.Estimator
	tpm int // the largest bucket of the group's deployments; 0: one has none
}

func newDryEstimator(cfg Config) (*dryEstimator, error) {
	if !cfg.routed() {
		est, err := imodel.NewEstimator(cfg.Endpoint, cfg.prices())
		if err != nil {
			return nil, err
		}
		return &dryEstimator{one: est, tpm: cfg.TPM}, nil
	}
	d := &dryEstimator{groups: map[string]*dryGroup{}}
	for _, dep := range cfg.Deployments {
		g := d.groups[dep.Group]
		if g == nil {
			ep := dep.Endpoint
			if ep.Model == "" {
				ep.Model = dep.Group
			}
			est, err := imodel.NewEstimator(ep, cfg.prices())
			if err != nil {
				return nil, err
			}
			g = &dryGroup{est: est, tpm: dep.TPM}
			d.groups[dep.Group] = g
			d.order = append(d.order, dep.Group)
		} else if g.tpm > 0 && (dep.TPM == 0 || dep.TPM > g.tpm) {
			g.tpm = dep.TPM
		}
	}
	return d, nil
}

// estimate returns body's estimate and the token limit it must fit.
func (d *dryEstimator) estimate(body map[string]any) (imodel.RequestEstimate, int, error) {
	if d.one != nil {
		e, err := d.one.Estimate(body)
		return e, d.tpm, err
	}
	// The group and the refusals are the run's (imodel.Router), in its
	// words: a dry run's reasons are those of the result lines.
	model, _ := body["model"].(string)
	if model == "" {
		if len(d.order) != 1 {
			return imodel.RequestEstimate{}, 0, fmt.Errorf("%w: no model: say which of %v", messages.ErrInvalidRequest, d.order)
		}
		model = d.order[0]
	}
	g := d.groups[model]
	if g == nil {
		return imodel.RequestEstimate{}, 0, fmt.Errorf("%w: %q", runtime.ErrUnknownGroup, model)
	}
	// The deployment names the model as it calls it, as the run does.
	b := maps.Clone(body)
	delete(b, "model")
	e, err := g.est.Estimate(b)
	return e, g.tpm, err
}
