package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// APIKey is the made-up key a run's models send; the simulator accepts any.
const APIKey = "sk-chaos-test-key-7d41"

// metaIndex is the snapshot metadata naming a request's index in the run.
const metaIndex = "chaos.index"

// The models of a run.
const (
	openAIModel    = "gpt-4o-mini"
	anthropicModel = "claude-sonnet-4-5"
	embedModel     = "text-embedding-3-small"
)

// kind is a kind of request.
type kind int

const (
	openAIChat kind = iota
	anthropicChat
	embeddings
	openAIStream
	anthropicStream
	numKinds
)

var kindNames = [numKinds]string{"openai_chat", "anthropic_chat", "embeddings", "openai_stream", "anthropic_stream"}

func (k kind) String() string { return kindNames[k] }

func (k kind) stream() bool { return k == openAIStream || k == anthropicStream }

// openAI reports whether the kind goes to an OpenAI endpoint, whose 429s
// ask for a retry in milliseconds rather than a whole second.
func (k kind) openAI() bool { return k == openAIChat || k == embeddings || k == openAIStream }

// plan is what a run decides for a request before it starts.
type plan struct {
	kind kind
	// forced is the X-Sim-Fault value the request carries for its first
	// times attempts; "" for none.
	forced string
	times  int
	// want is the outcome a forced fault makes certain.
	wantStatus   messages.RequestStatus
	wantKind     string // the terminal error's kind, for FAILED
	wantAttempts int
	// panics has bit a set when attempt a panics; panicAfter when it
	// panics after its HTTP call rather than before.
	panics, panicAfter uint32
}

// outcome is what became of a request.
type outcome struct {
	id          uuid.UUID
	submitted   bool
	refused     error
	lost        bool
	status      messages.RequestStatus
	err         error
	errKind     string
	attempts    int
	fromCalling bool // CANCELLED while its call ran
	finished    time.Time
	problem     string // a completed request whose reply did not check out
}

// errorKind names the class of a terminal error the way its snapshot does.
func errorKind(ev messages.Event) string {
	if info, ok := ev.Failure(); ok {
		return info.Kind
	}
	return ""
}

// driver is one run in progress.
type driver struct {
	o      Options
	sim    *simulator.Server
	watch  *watch
	ex     *runtime.Executor
	tr     *transport
	client *http.Client
	chat   map[kind]*imodel.Model
	embed  *imodel.Model

	plans []plan
	outs  []outcome

	panics     atomic.Int64
	firstPanic atomic.Int64 // unix nanoseconds

	errMu       sync.Mutex
	attemptErrs map[string]int64

	obsMu   sync.Mutex
	seen    map[uuid.UUID]*seenRequest
	obsBad  []string
	obsMore int

	submitted  atomic.Int64
	stopSignal chan struct{} // closed when StopAfter requests were submitted
	stopOnce   sync.Once
	stopBegan  atomic.Bool
	stopDone   chan struct{} // closed when the mid-run stop returned
	halted     chan struct{} // closed when the executor was stopped after an interruption

	stopDuration     time.Duration
	stopErr          error
	inFlightAtStop   int64
	inFlightAfterStp int64
}

// seenRequest is what the run's own observer knows of a request.
type seenRequest struct {
	seq       uint64
	terminals int
}

// Run drives opts.Requests requests against a simulator it starts on
// 127.0.0.1 and returns what happened. It returns an error only when it
// could not set up the run or ctx ended it early; a broken invariant is a
// violation in the Report (see Report.Err).
func Run(ctx context.Context, opts Options) (Report, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return Report{}, err
	}
	d := &driver{
		o:           o,
		attemptErrs: map[string]int64{},
		seen:        map[uuid.UUID]*seenRequest{},
		stopSignal:  make(chan struct{}),
		stopDone:    make(chan struct{}),
		halted:      make(chan struct{}),
	}
	if err := d.start(); err != nil {
		d.close()
		return Report{Seed: o.Seed}, err
	}
	d.makePlans()
	start := time.Now()
	interrupted := d.drive(ctx)
	rep := d.finish(start, interrupted != nil)
	if interrupted != nil {
		return rep, interrupted
	}
	return rep, nil
}

// start starts the simulator, the executor and the models.
func (d *driver) start() error {
	o := d.o
	f := o.Faults
	sim, err := simulator.New(simulator.Config{
		Seed:          o.Seed,
		Latency:       o.Latency,
		LatencyJitter: o.Latency / 2,
		Faults: simulator.Faults{
			RateLimit: f.RateLimit, ServerError: f.ServerError, Unavailable: f.Unavailable,
			Overloaded: f.Overloaded, Reset: f.Reset, Slow: f.Slow, Malformed: f.Malformed, Truncate: f.Truncate,
		},
		FaultRetryAfter: 20 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	d.sim = sim
	w, base, err := serveWatched(sim.Handler())
	if err != nil {
		return err
	}
	d.watch = w

	rc := runtime.DefaultConfig()
	rc.QueueCapacity = o.Window + o.Concurrency
	rc.WaitForRoom = true
	rc.Concurrency = o.Concurrency
	rc.RequestsPerInterval, rc.RequestInterval, rc.RequestBurst = o.RequestsPerSecond, time.Second, o.RequestBurst
	rc.CallTimeout = o.Timeout
	rc.MaxRestarts, rc.RestartWindow = o.MaxRestarts, o.RestartWindow
	rc.Observer = d.observe
	rc.Logger = o.Logger
	ex, err := runtime.Start(rc)
	if err != nil {
		return err
	}
	d.ex = ex

	d.tr = newTransport(o.Concurrency)
	d.client = &http.Client{Transport: d.tr}
	modelOpts := []imodel.Option{imodel.WithHTTPClient(d.client)}
	if o.Logger != nil {
		modelOpts = append(modelOpts, imodel.WithLogger(o.Logger))
	}
	retry := runtime.Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond, Retryable: imodel.Retryable}
	newModel := func(p imodel.Provider, model, path string) (*imodel.Model, error) {
		return imodel.New(ex, imodel.EndpointConfig{
			Provider: p, BaseURL: base + "/v1", Path: path, APIKey: APIKey, Model: model, MaxAttempts: o.MaxAttempts, Retry: retry,
		}, modelOpts...)
	}
	d.chat = map[kind]*imodel.Model{}
	if d.chat[openAIChat], err = newModel(imodel.OpenAI, openAIModel, ""); err != nil {
		return err
	}
	if d.chat[anthropicChat], err = newModel(imodel.Anthropic, anthropicModel, ""); err != nil {
		return err
	}
	d.chat[openAIStream], d.chat[anthropicStream] = d.chat[openAIChat], d.chat[anthropicChat]
	if d.embed, err = newModel(imodel.OpenAI, embedModel, "/embeddings"); err != nil {
		return err
	}
	return nil
}

// close releases what start made, in reverse order; it is safe after a
// partial start.
func (d *driver) close() {
	for _, m := range []*imodel.Model{d.chat[openAIChat], d.chat[anthropicChat], d.embed} {
		if m != nil {
			m.Close()
		}
	}
	if d.ex != nil {
		ctx, cancel := context.WithTimeout(context.Background(), d.o.StopTimeout)
		defer cancel()
		_ = d.ex.StopNow(ctx)
	}
	if d.tr != nil {
		d.tr.base.CloseIdleConnections()
	}
	if d.sim != nil {
		d.sim.Close()
	}
	if d.watch != nil {
		d.watch.close()
	}
}

// forcedRetryable lists the faults a request of kind k recovers from on a
// retry. A 429 from the Anthropic endpoint pauses the whole executor for a
// second, so forced rate limits go to OpenAI endpoints only.
func forcedRetryable(k kind) []string {
	f := []string{"500", "503", "529", "reset", "slow"}
	if !k.stream() {
		f = append(f, "truncate")
	}
	if k.openAI() {
		f = append(f, "429")
	}
	return f
}

// faultKind is the error kind a forced fault ends a request with.
func faultKind(fault string, k kind) string {
	switch fault {
	case "429":
		return "rate_limited"
	case "500", "503", "529":
		return "server"
	case "reset":
		return "connection"
	case "slow":
		return "timeout"
	case "truncate":
		if k.stream() {
			return "stream_broken"
		}
		return "connection"
	case "malformed":
		return "malformed_response"
	}
	return ""
}

// makePlans decides every request's kind, forced fault and panics from the
// seed.
func (d *driver) makePlans() {
	o := d.o
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0xc4a05))
	weights := o.Mix.weights()
	total := 0.0
	for _, w := range weights {
		total += w
	}
	d.plans = make([]plan, o.Requests)
	d.outs = make([]outcome, o.Requests)
	for i := range d.plans {
		p := &d.plans[i]
		x := rng.Float64() * total
		p.kind = numKinds - 1
		for k, w := range weights {
			if x < w {
				p.kind = kind(k)
				break
			}
			x -= w
		}
		if rng.Float64() < o.ForcedRate {
			d.force(p, rng)
			continue
		}
		if p.kind.stream() {
			continue // a stream's call is the model's own: nothing to wrap
		}
		for a := 1; a <= o.MaxAttempts; a++ {
			if rng.Float64() < o.PanicRate {
				p.panics |= 1 << a
				if rng.IntN(2) == 0 {
					p.panicAfter |= 1 << a
				}
			}
		}
	}
}

// force gives p a forced fault and the outcome it must have: a retryable
// fault fewer times than the attempts completes; the same fault on every
// attempt fails with its kind; a fault that is never retried fails at once.
func (d *driver) force(p *plan, rng *rand.Rand) {
	max := d.o.MaxAttempts
	retryable := forcedRetryable(p.kind)
	x := rng.Float64()
	switch {
	case x < 0.7 && max > 1:
		p.forced = retryable[rng.IntN(len(retryable))]
		p.times = 1 + rng.IntN(max-1)
		p.wantStatus, p.wantAttempts = messages.StatusCompleted, p.times+1
	case x < 0.85:
		// Every attempt faulted; not a slow fault, which would hold a
		// caller for MaxAttempts timeouts, nor a 429, which pauses.
		p.forced = []string{"500", "503", "529", "reset"}[rng.IntN(4)]
		p.times = max
		p.wantStatus, p.wantKind, p.wantAttempts = messages.StatusFailed, faultKind(p.forced, p.kind), max
	default:
		p.forced = "malformed"
		if p.kind.stream() && rng.IntN(2) == 0 {
			p.forced = "truncate"
		}
		p.times = 1
		p.wantStatus, p.wantKind, p.wantAttempts = messages.StatusFailed, faultKind(p.forced, p.kind), 1
	}
}

// observe is the executor's Observer: it checks that each request's Seq
// grows by one and that nothing follows its terminal snapshot.
func (d *driver) observe(ev messages.Event) {
	d.obsMu.Lock()
	s := d.seen[ev.ID]
	if s == nil {
		s = &seenRequest{}
		d.seen[ev.ID] = s
	}
	if s.terminals > 0 {
		d.badSnapshot(fmt.Sprintf("request %s: %v after its terminal snapshot", ev.ID, ev.Status))
	}
	if ev.Seq != s.seq+1 {
		d.badSnapshot(fmt.Sprintf("request %s: seq %d after %d", ev.ID, ev.Seq, s.seq))
	}
	s.seq = ev.Seq
	if ev.Status.Terminal() {
		s.terminals++
	}
	d.obsMu.Unlock()
	if d.o.Observer != nil {
		d.o.Observer(ev)
	}
}

// badSnapshot records a broken snapshot invariant; obsMu is held.
func (d *driver) badSnapshot(msg string) {
	if len(d.obsBad) < maxListed {
		d.obsBad = append(d.obsBad, msg)
	} else {
		d.obsMore++
	}
}

// maxListed bounds the violations listed one by one.
const maxListed = 20

// drive runs every planned request, at most Window at once, stopping the
// executor in the middle when the options say so. It returns ctx's error
// if ctx ended the run.
func (d *driver) drive(ctx context.Context) error {
	go d.stopper()
	sem := make(chan struct{}, d.o.Window)
	var wg sync.WaitGroup
	var interrupted error
launch:
	for i := range d.plans {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			interrupted = ctx.Err()
			break launch
		}
		wg.Go(func() {
			defer func() { <-sem }()
			d.one(ctx, i)
		})
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-all:
	case <-ctx.Done():
		// Requests are bound to ctx and end CANCELLED; one that does not
		// is lost, and the stop below releases its waiter.
		interrupted = ctx.Err()
		sctx, cancel := context.WithTimeout(context.Background(), d.o.StopTimeout)
		_ = d.ex.StopNow(sctx)
		cancel()
		close(d.halted)
		<-all
	}
	d.stopOnce.Do(func() { close(d.stopSignal) }) // wakes the stopper if no stop came
	<-d.stopDone
	return interrupted
}

// stopper stops the executor once stopSignal is closed, if the options ask
// for a stop in the middle of the run.
func (d *driver) stopper() {
	defer close(d.stopDone)
	<-d.stopSignal
	if d.o.Stop == NoStop || int(d.submitted.Load()) < d.o.StopAfter {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.o.StopTimeout)
	defer cancel()
	d.stopBegan.Store(true)
	d.inFlightAtStop = d.tr.inFlight.Load()
	start := time.Now()
	if d.o.Stop == Graceful {
		d.stopErr = d.ex.Stop(ctx)
	} else {
		d.stopErr = d.ex.StopNow(ctx)
	}
	d.stopDuration = time.Since(start)
	d.inFlightAfterStp = d.tr.inFlight.Load()
}

// chatRequest is the chat request of request i.
func chatRequest(i int) imodel.ChatRequest {
	return imodel.ChatRequest{
		Messages:  []imodel.Message{{Role: "user", Content: fmt.Sprintf("Request %d: say hello.", i)}},
		MaxTokens: 8,
	}
}

// one runs request i to its end.
func (d *driver) one(ctx context.Context, i int) {
	p, out := d.plans[i], &d.outs[i]
	opts := []imodel.CallOption{
		imodel.WithMetadata(map[string]string{metaIndex: strconv.Itoa(i)}),
		imodel.WithHeader(headerIndex, strconv.Itoa(i)),
	}
	if p.forced != "" {
		opts = append(opts,
			imodel.WithHeader(simulator.HeaderFault, p.forced),
			imodel.WithHeader(simulator.HeaderFaultTimes, strconv.Itoa(p.times)),
			imodel.WithHeader(simulator.HeaderRequestID, fmt.Sprintf("chaos-%d-%d", d.o.Seed, i)))
	}
	var (
		h      *runtime.Handle
		stream *imodel.Stream
		err    error
	)
	switch p.kind {
	case openAIChat, anthropicChat, embeddings:
		var req messages.Request
		if p.kind == embeddings {
			req, err = d.embed.NewRequest(map[string]any{"input": []string{fmt.Sprintf("Request %d.", i)}}, opts...)
		} else {
			req, err = d.chat[p.kind].NewChatRequest(chatRequest(i), opts...)
		}
		if err != nil {
			out.problem = "building the request: " + err.Error()
			return
		}
		req.Call = d.wrap(i, req.Call)
		h, err = d.ex.Submit(ctx, req)
	default:
		opts = append(opts, imodel.WithHeader(simulator.HeaderLatency, d.o.StreamLatency.String()))
		stream, err = d.chat[p.kind].Stream(ctx, chatRequest(i), opts...)
		if stream != nil {
			h = stream.Handle()
		}
	}
	if err != nil {
		out.refused = err
		return
	}
	out.submitted, out.id = true, h.ID()
	if int(d.submitted.Add(1)) == d.o.StopAfter && d.o.Stop != NoStop {
		d.stopOnce.Do(func() { close(d.stopSignal) })
	}
	select {
	case <-h.Done():
	case <-d.halted:
		select {
		case <-h.Done():
		default:
			out.lost = true
			return
		}
	}
	ev := h.Latest()
	out.status, out.err, out.errKind, out.attempts, out.finished = ev.Status, ev.Err(), errorKind(ev), ev.Attempt, ev.Timings().Finished
	if log := ev.Log(); ev.Status == messages.StatusCancelled && len(log) >= 2 && log[len(log)-2].Status == messages.StatusCalling {
		out.fromCalling = true
	}
	if ev.Status != messages.StatusCompleted {
		if stream != nil {
			// Wait returns at once for an ended stream; its partial text
			// must not be mistaken for a reply.
			if _, werr := stream.Wait(context.Background()); werr == nil {
				out.problem = "a stream that did not complete reports no error"
			}
		}
		return
	}
	out.problem = checkReply(p.kind, ev, stream)
}

// checkReply checks the reply of a completed request.
func checkReply(k kind, ev messages.Event, stream *imodel.Stream) string {
	switch {
	case stream != nil:
		var chunks strings.Builder
		for c := range stream.Chunks() {
			chunks.WriteString(c)
		}
		resp, err := stream.Wait(context.Background())
		switch {
		case err != nil:
			return "a completed stream reports " + err.Error()
		case resp.Text == "" || resp.Text != chunks.String():
			return fmt.Sprintf("stream text %q differs from its chunks %q", resp.Text, chunks.String())
		}
	case k == embeddings:
		resp, _ := ev.Response()
		var body struct {
			Data []struct {
				Embedding []float64 `json:"embedding"`
			} `json:"data"`
		}
		if err := json.Unmarshal(resp.Body, &body); err != nil || len(body.Data) != 1 || len(body.Data[0].Embedding) == 0 {
			return fmt.Sprintf("embeddings reply %q does not hold one vector", resp.Body)
		}
	default:
		cr, err := imodel.ChatResult(ev)
		if err != nil || cr.Text == "" {
			return fmt.Sprintf("chat reply has no text (%v)", err)
		}
	}
	return ""
}

// wrap makes a call that panics inside the caller on the attempts the plan
// says, before or after the model's HTTP call, and counts the errors the
// attempts meet.
func (d *driver) wrap(i int, inner messages.Call) messages.Call {
	p := d.plans[i]
	return messages.CallFunc(func(ctx context.Context, attempt int) (messages.Result, error) {
		bit := uint32(1) << uint(min(attempt, 31))
		if p.panics&bit != 0 && p.panicAfter&bit == 0 {
			d.injectPanic(i, attempt)
		}
		res, err := inner.Do(ctx, attempt)
		d.countAttemptError(err)
		if p.panics&bit != 0 {
			d.injectPanic(i, attempt)
		}
		return res, err
	})
}

// injectPanic panics inside the running caller.
func (d *driver) injectPanic(i, attempt int) {
	d.panics.Add(1)
	d.firstPanic.CompareAndSwap(0, time.Now().UnixNano())
	panic(fmt.Sprintf("chaos: injected panic in request %d, attempt %d", i, attempt))
}

// countAttemptError counts an attempt's error by its kind; server errors
// by status.
func (d *driver) countAttemptError(err error) {
	if err == nil {
		return
	}
	name := "other"
	if api, ok := errors.AsType[*imodel.APIError](err); ok {
		name = api.Kind()
		if name == "server" || name == "rate_limited" {
			name += "_" + strconv.Itoa(api.StatusCode)
		}
	}
	d.errMu.Lock()
	d.attemptErrs[name]++
	d.errMu.Unlock()
}
