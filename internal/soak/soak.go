// Package soak drives a steady load of model requests through an executor
// and the imodel client against the provider simulator, with faults and
// caller panics on, for a fixed duration, and checks that the process stays
// level: every submitted request ends exactly once, and the heap, the
// goroutines and the open file descriptors do not grow without bound.
//
// The load is bounded: requests are submitted at a fixed rate, each within a
// deadline, and no more than Window are live at once.
package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/chaos"
	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// Options configure a Run. The zero value of a field means its default.
type Options struct {
	// Duration is how long the load runs; default 10 minutes.
	Duration time.Duration
	// Every is the interval between samples; default 10 s.
	Every time.Duration
	// WarmUp is the start of the run whose samples the growth checks
	// ignore; default a tenth of Duration.
	WarmUp time.Duration

	// RequestsPerSecond and RequestBurst are the executor's request limit;
	// defaults 100 and 10.
	RequestsPerSecond int
	RequestBurst      int
	// Rate is the requests submitted per second; default half of
	// RequestsPerSecond: with the retries the faults cause, and the
	// executor-wide pauses of the Anthropic 429s (whose retry-after is a
	// whole second), the attempts then run close to the executor's limit
	// without a backlog.
	Rate int
	// Concurrency is the executor's callers; default 16.
	Concurrency int
	// MaxAttempts is the attempts per request; default 4.
	MaxAttempts int
	// Timeout bounds each attempt; default 1 s.
	Timeout time.Duration
	// RequestTimeout bounds each request from its submission; default
	// 10 s. A request still running then ends CANCELLED.
	RequestTimeout time.Duration
	// Window bounds the requests live at once; a tick that finds the
	// window full submits nothing and is counted as skipped. Default
	// Rate × RequestTimeout in seconds.
	Window int

	// Faults are the simulator's random faults; the zero value means
	// chaos.DefaultFaults. Set NoFaults to run without any.
	Faults   chaos.Faults
	NoFaults bool
	// PanicRate is the probability that an attempt of a chat or
	// embeddings request panics inside its caller; default 0.01, negative
	// for none.
	PanicRate float64
	// Latency is the simulator's latency, jittered by half of it; default
	// 2 ms.
	Latency time.Duration
	// Seed seeds the simulator; 0 picks one from the clock.
	Seed int64

	// Out, if set, receives one line per sample as it is taken.
	Out io.Writer
}

func (o Options) withDefaults() (Options, error) {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Duration, 10*time.Minute)
	def(&o.Every, 10*time.Second)
	def(&o.WarmUp, o.Duration/10)
	def(&o.Timeout, time.Second)
	def(&o.RequestTimeout, 10*time.Second)
	def(&o.Latency, 2*time.Millisecond)
	defInt(&o.RequestsPerSecond, 100)
	defInt(&o.RequestBurst, 10)
	defInt(&o.Rate, max(1, o.RequestsPerSecond/2))
	defInt(&o.Concurrency, 16)
	defInt(&o.MaxAttempts, 4)
	defInt(&o.Window, max(1, o.Rate*int(o.RequestTimeout.Seconds())))
	if o.PanicRate == 0 {
		o.PanicRate = 0.01
	}
	if o.Seed == 0 {
		o.Seed = time.Now().UnixNano()
	}
	if o.NoFaults {
		o.Faults = chaos.Faults{}
	} else if o.Faults == (chaos.Faults{}) {
		o.Faults = chaos.DefaultFaults()
	}
	bad := func(field, reason string) error {
		return &messages.ConfigError{Field: "soak." + field, Reason: reason}
	}
	switch {
	case o.Duration < 0, o.Every < 0, o.WarmUp < 0, o.Timeout < 0, o.RequestTimeout < 0, o.Latency < 0:
		return o, bad("Options", "durations must not be negative")
	case o.RequestsPerSecond < 0, o.RequestBurst < 0, o.Rate < 0, o.Concurrency < 0, o.MaxAttempts < 0, o.Window < 0:
		return o, bad("Options", "counts must not be negative")
	case o.PanicRate > 1:
		return o, bad("PanicRate", "must be at most 1")
	case o.WarmUp >= o.Duration:
		return o, bad("WarmUp", "must be shorter than Duration")
	}
	return o, nil
}

// Validate reports whether o is usable, as Run would.
func (o Options) Validate() error {
	_, err := o.withDefaults()
	return err
}

// Sample is the state of the process at one moment of the run.
type Sample struct {
	Elapsed    time.Duration
	Heap       uint64 // HeapAlloc after a GC
	Goroutines int
	FDs        int // open file descriptors; -1 when they cannot be counted
	Submitted  int64
	Completed  int64
	Failed     int64
	Cancelled  int64
	Refused    int64 // Submit returned an error
	InFlight   int64 // submitted and not yet ended
}

// Ended is the number of requests that reached a terminal status.
func (s Sample) Ended() int64 { return s.Completed + s.Failed + s.Cancelled }

// String formats s as one line.
func (s Sample) String() string {
	return fmt.Sprintf("t=%s heap=%.1fMiB goroutines=%d fds=%d submitted=%d completed=%d failed=%d cancelled=%d refused=%d in_flight=%d",
		s.Elapsed.Round(time.Second), float64(s.Heap)/(1<<20), s.Goroutines, s.FDs,
		s.Submitted, s.Completed, s.Failed, s.Cancelled, s.Refused, s.InFlight)
}

// Check is one verdict of a run.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// Report is what a run did and what it found.
type Report struct {
	Options Options
	// Before is taken before the load starts, Samples every Every while it
	// runs (the last at its end), and After once every request ended and
	// the executor and the simulator stopped.
	Before  Sample
	Samples []Sample
	After   Sample
	// Terminals is the number of terminal snapshots the executor's
	// Observer saw; Duplicates those beyond the first of a request;
	// Lost the submitted requests without exactly one.
	Terminals  int64
	Duplicates int64
	Lost       int64
	Skipped    int64 // ticks that found the window full
	Restarts   int64
	Checks     []Check
}

// Err returns an error naming the failed checks, or nil.
func (r Report) Err() error {
	var failed []string
	for _, c := range r.Checks {
		if !c.OK {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return errors.New("soak: failed checks: " + strings.Join(failed, "; "))
}

// runner is one run in progress.
type runner struct {
	o     Options
	sim   *simulator.Server
	ex    *runtime.Executor
	tr    *http.Transport
	chat  [2]*imodel.Model // OpenAI, Anthropic
	embed *imodel.Model

	submitted, refused, skipped  atomic.Int64
	completed, failed, cancelled atomic.Int64
	terminals, duplicates, lost  atomic.Int64
	live                         atomic.Int64

	mu   sync.Mutex
	seen map[uuid.UUID]int // terminal snapshots of the requests not yet retired
}

// Run drives the load for opts.Duration and returns what it saw. It returns
// an error when it could not set up the run or ctx ended it early; a failed
// check is in the Report (see Report.Err).
func Run(ctx context.Context, opts Options) (Report, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return Report{}, err
	}
	r := &runner{o: o, seen: map[uuid.UUID]int{}}
	rep := Report{Options: o}
	if err := r.start(); err != nil {
		r.close()
		return rep, err
	}
	start := time.Now()
	rep.Before = r.sample(0)
	r.print(rep.Before)

	loadCtx, cancelLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.load(loadCtx, ctx, &wg) })
	sampler := time.NewTicker(o.Every)
	end := time.NewTimer(o.Duration)
	interrupted := error(nil)
loop:
	for {
		select {
		case <-sampler.C:
			s := r.sample(time.Since(start))
			rep.Samples = append(rep.Samples, s)
			r.print(s)
		case <-end.C:
			break loop
		case <-ctx.Done():
			interrupted = ctx.Err()
			break loop
		}
	}
	sampler.Stop()
	end.Stop()
	cancelLoad()
	if interrupted == nil {
		s := r.sample(time.Since(start))
		if n := len(rep.Samples); n == 0 || s.Elapsed-rep.Samples[n-1].Elapsed >= o.Every/2 {
			rep.Samples = append(rep.Samples, s)
			r.print(s)
		}
	}
	// Every request ends within its RequestTimeout, or at once when ctx
	// ended the run.
	wg.Wait()
	rep.Restarts = int64(r.ex.Stats().Restarts)
	r.close()
	rep.After = r.sample(time.Since(start))
	if o.Out != nil {
		fmt.Fprintln(o.Out, "after stop:", rep.After)
	}
	r.mu.Lock()
	leftover := len(r.seen)
	r.mu.Unlock()
	rep.Terminals, rep.Duplicates, rep.Lost, rep.Skipped = r.terminals.Load(), r.duplicates.Load(), r.lost.Load(), r.skipped.Load()
	rep.Duplicates += int64(leftover)
	rep.Checks = checks(rep)
	return rep, interrupted
}

func (r *runner) print(s Sample) {
	if r.o.Out != nil {
		fmt.Fprintln(r.o.Out, s)
	}
}

// start starts the simulator, the executor and the models.
func (r *runner) start() error {
	o, f := r.o, r.o.Faults
	sim, err := simulator.New(simulator.Config{
		Seed:              o.Seed,
		RequestsPerMinute: 2 * o.RequestsPerSecond * 60,
		RequestBurst:      2 * o.RequestsPerSecond,
		// The simulator enforces twice the executor's limit: it stays out
		// of the way of a correct executor and catches a runaway one.
		Latency:       o.Latency,
		LatencyJitter: o.Latency / 2,
		Faults: simulator.Faults{
			RateLimit: f.RateLimit, ServerError: f.ServerError, Unavailable: f.Unavailable,
			Overloaded: f.Overloaded, Reset: f.Reset, Slow: f.Slow, Malformed: f.Malformed, Truncate: f.Truncate,
		},
		SlowDelay:       2 * o.Timeout,
		FaultRetryAfter: 20 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	r.sim = sim
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		return err
	}

	rc := runtime.DefaultConfig()
	rc.QueueCapacity = o.Window + o.Concurrency
	rc.WaitForRoom = true
	rc.Concurrency = o.Concurrency
	rc.RequestsPerInterval, rc.RequestInterval, rc.RequestBurst = o.RequestsPerSecond, time.Second, o.RequestBurst
	rc.CallTimeout = o.Timeout
	rc.MaxRestarts, rc.RestartWindow = 1_000_000, 10*time.Second
	rc.Observer = r.observe
	ex, err := runtime.Start(rc)
	if err != nil {
		return err
	}
	r.ex = ex

	r.tr = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        max(100, o.Concurrency),
		MaxIdleConnsPerHost: max(2, o.Concurrency),
		IdleConnTimeout:     30 * time.Second,
	}
	client := &http.Client{Transport: r.tr}
	retry := runtime.Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond, Retryable: imodel.Retryable}
	newModel := func(p imodel.Provider, model, path string) (*imodel.Model, error) {
		return imodel.New(ex, imodel.EndpointConfig{
			Provider: p, BaseURL: base + "/v1", Path: path, APIKey: chaos.APIKey, Model: model, MaxAttempts: o.MaxAttempts, Retry: retry,
		}, imodel.WithHTTPClient(client))
	}
	if r.chat[0], err = newModel(imodel.OpenAI, "gpt-4o-mini", ""); err != nil {
		return err
	}
	if r.chat[1], err = newModel(imodel.Anthropic, "claude-sonnet-4-5", ""); err != nil {
		return err
	}
	r.embed, err = newModel(imodel.OpenAI, "text-embedding-3-small", "/embeddings")
	return err
}

// close releases what start made, in reverse order; it is safe after a
// partial start.
func (r *runner) close() {
	for _, m := range []*imodel.Model{r.chat[0], r.chat[1], r.embed} {
		if m != nil {
			m.Close()
		}
	}
	if r.ex != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if r.ex.Stop(ctx) != nil {
			_ = r.ex.StopNow(ctx)
		}
		cancel()
	}
	if r.tr != nil {
		r.tr.CloseIdleConnections()
	}
	if r.sim != nil {
		r.sim.Close()
	}
}

// observe is the executor's Observer: it counts terminal snapshots per
// request.
func (r *runner) observe(ev messages.Event) {
	if !ev.Status.Terminal() {
		return
	}
	r.terminals.Add(1)
	r.mu.Lock()
	r.seen[ev.ID]++
	if r.seen[ev.ID] > 1 {
		r.duplicates.Add(1)
	}
	r.mu.Unlock()
}

// retire checks that request id saw exactly one terminal snapshot and
// forgets it, so that the run's memory does not grow with its length. The
// Observer may run just after the handle is done, so it waits briefly.
func (r *runner) retire(id uuid.UUID) {
	for range 200 {
		r.mu.Lock()
		n := r.seen[id]
		if n >= 1 {
			delete(r.seen, id)
		}
		r.mu.Unlock()
		if n >= 1 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.lost.Add(1)
}

// load submits Rate requests per second until ctx ends; the requests run
// within reqCtx, so that they end on their own when the load stops.
func (r *runner) load(ctx, reqCtx context.Context, wg *sync.WaitGroup) {
	tick := time.NewTicker(time.Second / time.Duration(r.o.Rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if r.live.Load() >= int64(r.o.Window) {
			r.skipped.Add(1)
			continue
		}
		r.live.Add(1)
		wg.Go(func() {
			defer r.live.Add(-1)
			r.one(reqCtx, i)
		})
	}
}

// lostAfter is how long past its deadline a request may take to end before
// it counts as lost.
const lostAfter = 30 * time.Second

// one runs request i to its end.
func (r *runner) one(ctx context.Context, i int) {
	ctx, cancel := context.WithTimeout(ctx, r.o.RequestTimeout)
	defer cancel()
	chat := imodel.ChatRequest{
		Messages:  []imodel.Message{{Role: "user", Content: fmt.Sprintf("Request %d: say hello.", i)}},
		MaxTokens: 8,
	}
	var (
		h      *runtime.Handle
		stream *imodel.Stream
		req    messages.Request
		err    error
	)
	switch k := i % 10; {
	case k < 6: // chat, OpenAI and Anthropic
		req, err = r.chat[k%2].NewChatRequest(chat)
	case k < 8:
		req, err = r.embed.NewRequest(map[string]any{"input": []string{fmt.Sprintf("Request %d.", i)}})
	default: // streams, OpenAI and Anthropic
		stream, err = r.chat[k%2].Stream(ctx, chat)
		if stream != nil {
			h = stream.Handle()
		}
	}
	if err == nil && stream == nil {
		req.Call = r.wrap(req.Call)
		h, err = r.ex.Submit(ctx, req)
	}
	if err != nil {
		r.refused.Add(1)
		return
	}
	r.submitted.Add(1)
	// A request ends within its deadline; one that has not well after it
	// is lost, and the run goes on without it.
	grace := time.NewTimer(r.o.RequestTimeout + lostAfter)
	defer grace.Stop()
	select {
	case <-h.Done():
	case <-grace.C:
		r.lost.Add(1)
		return
	}
	if stream != nil {
		for range stream.Chunks() {
		}
		_, _ = stream.Wait(context.Background())
	}
	switch h.Latest().Status {
	case messages.StatusCompleted:
		r.completed.Add(1)
	case messages.StatusFailed:
		r.failed.Add(1)
	default:
		r.cancelled.Add(1)
	}
	r.retire(h.ID())
}

// wrap makes a call that panics inside its caller, before or after its HTTP
// call, at the PanicRate.
func (r *runner) wrap(inner messages.Call) messages.Call {
	p := r.o.PanicRate
	if p <= 0 {
		return inner
	}
	return messages.CallFunc(func(ctx context.Context, attempt int) (messages.Result, error) {
		if rand.Float64() < p/2 {
			panic("soak: injected panic before the call")
		}
		res, err := inner.Do(ctx, attempt)
		if rand.Float64() < p/2 {
			panic("soak: injected panic after the call")
		}
		return res, err
	})
}

// sample measures the process now.
func (r *runner) sample(elapsed time.Duration) Sample {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	s := Sample{
		Elapsed:    elapsed,
		Heap:       ms.HeapAlloc,
		Goroutines: goruntime.NumGoroutine(),
		FDs:        countFDs("/proc/self/fd"),
		Submitted:  r.submitted.Load(),
		Completed:  r.completed.Load(),
		Failed:     r.failed.Load(),
		Cancelled:  r.cancelled.Load(),
		Refused:    r.refused.Load(),
	}
	s.InFlight = s.Submitted - s.Ended()
	return s
}

// countFDs counts the entries of dir, the process's open file descriptors;
// -1 when it cannot be read.
func countFDs(dir string) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	return len(entries)
}
