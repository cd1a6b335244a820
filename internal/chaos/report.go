package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/simulator"
)

// Report is what a run did and what it found.
type Report struct {
	// Seed is the seed of the run's plan: pass it back in Options.Seed to
	// replay the same requests, forced faults and panics.
	Seed int64
	// The limits the run drove against.
	Concurrency       int
	RequestsPerSecond int
	RequestBurst      int
	MaxAttempts       int

	// Requests is the number of requests driven; Submitted were accepted
	// by the executor, Refused were not (after a stop: ErrStopped).
	Requests  int
	Submitted int
	Refused   int
	// ByKind counts the submitted requests by kind.
	ByKind map[string]int
	// ByStatus counts the submitted requests by terminal status, and
	// ByError the failed and cancelled ones by error kind.
	ByStatus map[string]int
	ByError  map[string]int
	// Lost counts submitted requests without exactly one terminal
	// snapshot. It must be 0.
	Lost int

	// Faults counts the faults injected, by kind: the simulator's counts
	// for its error statuses ("429", "500", "503", "529") and resets, the
	// client's for the rest ("slow" attempts cut by their timeout,
	// "truncate" bodies broken off, "malformed" replies), and the run's
	// own "panic" count.
	Faults map[string]int64
	// AttemptErrors counts the errors that the attempts of the wrapped
	// (chat and embeddings) calls met, by kind.
	AttemptErrors map[string]int64
	// Forced is the number of requests with a forced fault; each one's
	// outcome is checked.
	Forced int
	// Attempts is the HTTP attempts the client made; SimRequests those the
	// simulator received.
	Attempts    int64
	SimRequests int64
	Retries     int64
	Restarts    int64
	Panics      int64

	// MaxInFlight is the most attempts the simulator was serving at once
	// while their client still held them (see watch); SimMaxInFlight is
	// the simulator's own count, which also holds responses the client
	// had given up on (timeouts, streams abandoned at a malformed event)
	// until their handlers return; Abandoned counts those at the
	// simulator.
	MaxInFlight    int
	SimMaxInFlight int
	Abandoned      int64
	// Bursts are the most arrivals the simulator saw within each window,
	// with what the executor's request bucket allows there.
	Bursts []Burst

	// The stop in the middle of the run, if any.
	Stop         StopMode
	StopAfter    int
	StopDuration time.Duration
	StopErr      error
	// InFlightAtStop is the HTTP attempts open when the stop began, and
	// InFlightAfterStop those still open when it returned; StoppedAttempts those whose context the stop cancelled
	// (cause ErrStopped), StoppedStreams the streams among them.
	InFlightAtStop    int64
	InFlightAfterStop int64
	StoppedAttempts   int64
	StoppedStreams    int
	// FinalStop is how long the graceful Stop at the end of the run took
	// (at once when a stop in the middle or a restart storm came first).
	FinalStop time.Duration
	// PostStopSubmit is what Submit returned after the executor stopped.
	PostStopSubmit error
	// ExecutorErr is why the executor stopped by itself, if it did.
	ExecutorErr error

	Duration time.Duration
	// Violations lists every broken invariant; a sound run has none.
	Violations []string
}

// Burst is the most arrivals within any window of one length.
type Burst struct {
	Window  time.Duration
	Max     int
	Allowed int
}

// Err returns the violations as one error, or nil.
func (r Report) Err() error {
	if len(r.Violations) == 0 {
		return nil
	}
	return errors.New("chaos: " + strings.Join(r.Violations, "; "))
}

// String summarises the report in a few lines.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d requests driven, %d submitted, %d refused, %d lost, in %v\n",
		r.Seed, r.Requests, r.Submitted, r.Refused, r.Lost, r.Duration.Round(time.Millisecond))
	fmt.Fprintf(&b, "limits: concurrency %d, %d requests/s (burst %d), %d attempts\n",
		r.Concurrency, r.RequestsPerSecond, r.RequestBurst, r.MaxAttempts)
	fmt.Fprintf(&b, "kinds: %s\n", formatCounts(r.ByKind))
	fmt.Fprintf(&b, "terminal: %s; errors: %s\n", formatCounts(r.ByStatus), formatCounts(r.ByError))
	fmt.Fprintf(&b, "faults injected: %s\n", formatCounts(r.Faults))
	fmt.Fprintf(&b, "attempts: %d by the client, %d at the simulator; %d retries, %d panics, %d restarts, %d forced\n",
		r.Attempts, r.SimRequests, r.Retries, r.Panics, r.Restarts, r.Forced)
	fmt.Fprintf(&b, "simulator: max in flight %d of %d (its own count %d, %d abandoned by the client)",
		r.MaxInFlight, r.Concurrency, r.SimMaxInFlight, r.Abandoned)
	for _, bu := range r.Bursts {
		fmt.Fprintf(&b, "; %d arrivals within %v (allowed %d)", bu.Max, bu.Window, bu.Allowed)
	}
	b.WriteString("\n")
	if r.Stop != NoStop {
		fmt.Fprintf(&b, "stop: %v after %d submitted, took %v (err %v); %d HTTP attempts open at it, %d cancelled by it (%d streams), %d open after it\n",
			r.Stop, r.StopAfter, r.StopDuration.Round(time.Millisecond), r.StopErr, r.InFlightAtStop, r.StoppedAttempts, r.StoppedStreams, r.InFlightAfterStop)
	}
	if r.ExecutorErr != nil {
		fmt.Fprintf(&b, "executor stopped by itself: %v\n", r.ExecutorErr)
	}
	fmt.Fprintf(&b, "final stop took %v; submit after it: %v\n", r.FinalStop.Round(time.Millisecond), r.PostStopSubmit)
	fmt.Fprintf(&b, "violations: %d", len(r.Violations))
	for _, v := range r.Violations {
		b.WriteString("\n  " + v)
	}
	return b.String()
}

// formatCounts writes a count map in key order.
func formatCounts[V int | int64](m map[string]V) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// violations collects broken invariants, listing the first few of each
// kind and counting the rest.
type violations struct {
	list  []string
	count map[string]int
}

func (v *violations) add(key, format string, args ...any) {
	if v.count == nil {
		v.count = map[string]int{}
	}
	v.count[key]++
	if v.count[key] <= 5 {
		v.list = append(v.list, fmt.Sprintf(format, args...))
	}
}

func (v *violations) result() []string {
	out := slices.Clone(v.list)
	for _, k := range slices.Sorted(maps.Keys(v.count)) {
		if n := v.count[k]; n > 5 {
			out = append(out, fmt.Sprintf("%s: %d more like the above", k, n-5))
		}
	}
	return out
}

// faultKinds are the error kinds that the simulator's faults (and the
// panics) cause.
var faultKinds = map[string]bool{
	"rate_limited": true, "server": true, "connection": true, "timeout": true,
	"malformed_response": true, "stream_broken": true, "caller_crashed": true,
}

// burstWindows are the windows over which arrivals are checked.
var burstWindows = []time.Duration{250 * time.Millisecond, time.Second, 5 * time.Second}

// finish stops what is left, releases the run's resources and checks every
// invariant. An interrupted run may have requests cancelled, or refused,
// by its context.
func (d *driver) finish(start time.Time, interrupted bool) Report {
	o := d.o
	rep := Report{
		Seed: o.Seed, Concurrency: o.Concurrency, RequestsPerSecond: o.RequestsPerSecond, RequestBurst: o.RequestBurst,
		MaxAttempts: o.MaxAttempts, Requests: len(d.plans), Stop: o.Stop, StopAfter: o.StopAfter,
		ByKind: map[string]int{}, ByStatus: map[string]int{}, ByError: map[string]int{},
	}
	var v violations

	// The run is over: stop gracefully (nothing should be left), and check
	// that a submit is now refused.
	ctx, cancel := context.WithTimeout(context.Background(), o.StopTimeout)
	stopStart := time.Now()
	if err := d.ex.Stop(ctx); err != nil {
		v.add("final stop", "the final graceful Stop failed: %v", err)
	}
	rep.FinalStop = time.Since(stopStart)
	cancel()
	if req, err := d.chat[openAIChat].NewChatRequest(chatRequest(-1)); err == nil {
		if h, err := d.ex.Submit(context.Background(), req); err == nil {
			v.add("submit after stop", "Submit after stop accepted request %s", h.ID())
		} else {
			rep.PostStopSubmit = err
			if !errors.Is(err, messages.ErrStopped) {
				v.add("submit after stop", "Submit after stop: %v, want ErrStopped", err)
			}
		}
	}
	st := d.ex.Stats()
	rep.Retries, rep.Restarts, rep.ExecutorErr = st.Retries, st.Restarts, d.ex.Err()
	if st.Queued != 0 || st.InFlight != 0 {
		v.add("left over", "after the stop: %d queued, %d in flight", st.Queued, st.InFlight)
	}
	for _, m := range d.chat {
		m.Close()
	}
	d.embed.Close()
	d.tr.base.CloseIdleConnections()
	if err := d.sim.Close(); err != nil {
		v.add("simulator", "simulator Close: %v", err)
	}
	d.watch.close()
	rep.Duration = time.Since(start)

	storm := rep.ExecutorErr != nil
	if storm && !errors.Is(rep.ExecutorErr, messages.ErrRestartStorm) {
		v.add("executor", "executor stopped by itself: %v", rep.ExecutorErr)
	}
	stopped := o.Stop != NoStop && d.stopBegan.Load()
	if stopped {
		rep.StopDuration, rep.StopErr = d.stopDuration, d.stopErr
		rep.InFlightAtStop, rep.InFlightAfterStop = d.inFlightAtStop, d.inFlightAfterStp
		rep.StoppedAttempts = d.tr.stopped.Load()
		if d.stopErr != nil {
			v.add("stop", "%v stop returned %v", o.Stop, d.stopErr)
		}
		if d.inFlightAfterStp != 0 {
			v.add("stop", "%d HTTP attempts still open when the %v stop returned", d.inFlightAfterStp, o.Stop)
		}
	} else if o.Stop != NoStop && !storm && !interrupted {
		v.add("stop", "the %v stop never came: %d submitted, StopAfter %d", o.Stop, d.submitted.Load(), o.StopAfter)
	}

	d.checkRequests(&rep, &v, stopped, storm, interrupted)
	d.checkSimulator(&rep, &v)
	d.checkPanics(&rep, &v, stopped || interrupted, storm)

	d.obsMu.Lock()
	for _, msg := range d.obsBad {
		v.add("snapshot", "%s", msg)
	}
	if d.obsMore > 0 {
		v.add("snapshot", "%d more broken snapshots", d.obsMore)
	}
	d.obsMu.Unlock()

	rep.Violations = v.result()
	return rep
}

// checkRequests checks each request's end against what was planned and
// what the stop allows.
func (d *driver) checkRequests(rep *Report, v *violations, stopped, storm, interrupted bool) {
	o := d.o
	d.obsMu.Lock()
	defer d.obsMu.Unlock()
	malformed := int64(0)
	for i := range d.outs {
		p, out := d.plans[i], d.outs[i]
		if !out.submitted {
			if out.refused == nil {
				if out.problem != "" {
					v.add("build", "request %d: %s", i, out.problem)
				}
				continue
			}
			rep.Refused++
			if interrupted && errors.Is(out.refused, context.Canceled) {
				continue
			}
			if !errors.Is(out.refused, messages.ErrStopped) || !(stopped || storm || interrupted) {
				v.add("refused", "request %d refused: %v", i, out.refused)
			}
			continue
		}
		rep.Submitted++
		rep.ByKind[p.kind.String()]++
		s := d.seen[out.id]
		if out.lost || s == nil || s.terminals != 1 {
			rep.Lost++
			terminals := 0
			if s != nil {
				terminals = s.terminals
			}
			v.add("lost", "request %d (%s): %d terminal snapshots, lost %v", i, out.id, terminals, out.lost)
			continue
		}
		rep.ByStatus[out.status.String()]++
		if out.errKind != "" {
			rep.ByError[out.errKind]++
		}
		if out.errKind == "malformed_response" && p.kind.stream() {
			malformed++ // never retried: the stream's end is its only trace
		}
		if out.problem != "" {
			v.add("reply", "request %d (%s): %s", i, p.kind, out.problem)
		}
		switch out.status {
		case messages.StatusCancelled:
			if interrupted && (errors.Is(out.err, messages.ErrCancelled) || errors.Is(out.err, messages.ErrStopped)) {
				break
			}
			if o.Stop != Immediate || !errors.Is(out.err, messages.ErrStopped) {
				v.add("cancelled", "request %d (%s) CANCELLED (%v) with stop mode %v", i, p.kind, out.err, o.Stop)
			}
			if p.kind.stream() && out.fromCalling {
				d.checkStoppedStream(rep, v, i)
			}
		case messages.StatusFailed:
			if !faultKinds[out.errKind] && !(storm && out.errKind == "restart_storm") {
				v.add("failed", "request %d (%s) FAILED with %s: %v", i, p.kind, out.errKind, out.err)
			}
		}
		if p.forced != "" && !(out.status == messages.StatusCancelled) && !(storm && out.errKind == "restart_storm") {
			if out.status != p.wantStatus || out.attempts != p.wantAttempts || (p.wantKind != "" && out.errKind != p.wantKind) {
				v.add("forced", "request %d (%s, fault %s ×%d): %v after %d attempts (%s: %v), want %v after %d (%s)",
					i, p.kind, p.forced, p.times, out.status, out.attempts, out.errKind, out.err, p.wantStatus, p.wantAttempts, p.wantKind)
			}
		}
		if p.forced != "" {
			rep.Forced++
		}
	}
	total := 0
	for _, n := range rep.ByStatus {
		total += n
	}
	if total+rep.Lost != rep.Submitted {
		v.add("counts", "terminal counts add up to %d, %d lost, of %d submitted", total, rep.Lost, rep.Submitted)
	}
	if len(d.seen) != rep.Submitted {
		v.add("counts", "the observer saw %d requests, %d were submitted", len(d.seen), rep.Submitted)
	}
	d.errMu.Lock()
	rep.AttemptErrors = maps.Clone(d.attemptErrs)
	d.errMu.Unlock()
	rep.Faults = map[string]int64{
		"slow":      d.tr.timeouts.Load(),
		"truncate":  d.tr.cutBodies.Load(),
		"malformed": rep.AttemptErrors["malformed_response"] + malformed,
		"panic":     d.panics.Load(),
	}
	rep.Attempts = d.tr.attempts.Load()
}

// checkStoppedStream checks that a stream cancelled by an immediate stop
// while its call ran had its HTTP request's context cancelled by the stop,
// or had already finished its attempt as the stop came.
func (d *driver) checkStoppedStream(rep *Report, v *violations, i int) {
	a, ok := d.tr.lastAttempt(i)
	switch {
	case !ok || !a.ended:
		v.add("stream", "stream %d cancelled while calling: its HTTP attempt did not end", i)
	case a.cause != nil && errors.Is(a.cause, messages.ErrStopped):
		rep.StoppedStreams++
	case a.cause != nil:
		v.add("stream", "stream %d cancelled while calling: its HTTP attempt ended by %v", i, a.cause)
	}
}

// checkSimulator reads the simulator's side: concurrency, arrivals within
// the request bucket's allowance, faults by status.
func (d *driver) checkSimulator(rep *Report, v *violations) {
	o := d.o
	st := d.sim.Stats()
	rep.SimRequests, rep.SimMaxInFlight, rep.Abandoned = st.Requests, st.MaxInFlight, st.Abandoned
	rep.MaxInFlight = d.watch.maxHeld(d.tr.closedAt())
	for _, code := range []int{429, 500, 503, 529} {
		rep.Faults[fmt.Sprint(code)] = st.ByStatus[code]
	}
	rep.Faults["reset"] = st.Resets
	if rep.MaxInFlight > o.Concurrency {
		v.add("concurrency", "the simulator served %d attempts at once that their client held, the cap is %d", rep.MaxInFlight, o.Concurrency)
	}
	if st.InFlight != 0 {
		v.add("concurrency", "%d requests in flight at the simulator after the run", st.InFlight)
	}
	arrivals := d.sim.Arrivals()
	slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
	if int64(len(arrivals)) < min(st.Requests, simulator.MaxArrivals) {
		v.add("arrivals", "%d arrivals kept for %d requests", len(arrivals), st.Requests)
	}
	for _, w := range burstWindows {
		b := Burst{Window: w, Max: simulator.MaxBurst(arrivals, w),
			Allowed: o.RequestBurst + int(math.Ceil(float64(o.RequestsPerSecond)*(w+o.ArrivalSkew).Seconds()))}
		rep.Bursts = append(rep.Bursts, b)
		if b.Max > b.Allowed {
			v.add("rate", "%d arrivals within %v; the request bucket allows %d", b.Max, w, b.Allowed)
		}
	}
}

// checkPanics checks that each injected panic failed its request with
// ErrCallerCrashed, that every panic restarted a caller, and that the
// executor kept serving afterwards.
func (d *driver) checkPanics(rep *Report, v *violations, stopped, storm bool) {
	rep.Panics = d.panics.Load()
	completedAfter := 0
	first := time.Unix(0, d.firstPanic.Load())
	for i, out := range d.outs {
		p := d.plans[i]
		if !out.submitted || out.lost {
			continue
		}
		if out.status == messages.StatusCompleted && rep.Panics > 0 && out.finished.After(first) {
			completedAfter++
		}
		firstPanic := 0
		for a := 1; a <= d.o.MaxAttempts; a++ {
			if p.panics&(1<<a) != 0 {
				firstPanic = a
				break
			}
		}
		crashed := errors.Is(out.err, messages.ErrCallerCrashed)
		if crashed != (out.errKind == "caller_crashed") {
			v.add("panic", "request %d: error %v has kind %s", i, out.err, out.errKind)
		}
		switch {
		case crashed && (firstPanic == 0 || out.attempts != firstPanic):
			v.add("panic", "request %d failed with a caller crash on attempt %d; its first panic was planned for attempt %d", i, out.attempts, firstPanic)
		case !crashed && firstPanic != 0 && out.attempts >= firstPanic && out.status != messages.StatusCancelled &&
			!(storm && out.errKind == "restart_storm"):
			v.add("panic", "request %d reached its panicking attempt %d but ended %v (%v)", i, firstPanic, out.status, out.err)
		}
	}
	if !stopped && !storm && rep.Restarts != rep.Panics {
		v.add("restarts", "%d panics but %d caller restarts", rep.Panics, rep.Restarts)
	}
	if !stopped && !storm && rep.Panics > 0 && completedAfter == 0 {
		v.add("restarts", "no request completed after the first panic")
	}
}
