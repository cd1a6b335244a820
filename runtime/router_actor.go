package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/internal/selftimer"
	"github.com/lionactor/lionactor/internal/stopmail"
	"github.com/lionactor/lionactor/messages"
)

// The router actor's own messages.
type (
	// routeEnqueue hands the actor a request Submit accepted: its PENDING
	// snapshot is out, and it holds a queue slot.
	routeEnqueue struct{ e *entry }
	// routeDrain asks for done to be closed once every request has ended.
	routeDrain struct{ done chan struct{} }
	// routeAbort asks for every request to end CANCELLED now, and done to
	// be closed once they have.
	routeAbort struct{ done chan struct{} }
	// attemptStarted: the attempt's call has started at its deployment.
	attemptStarted struct{ a *attempt }
	// attemptEnded: the attempt has reached its terminal snapshot there,
	// and gives its request back to the router.
	attemptEnded struct{ a *attempt }
	// routeRetry: a request's backoff is over.
	routeRetry struct{ e *entry }
	// routeTick: the time the router waited for has come.
	routeTick struct{}
)

// tickMsg is the one routeTick, so that re-arming the timer reuses it.
var tickMsg = &routeTick{}

// entryState is where a routed request is in the router's hands.
type entryState uint8

const (
	waiting    entryState = iota + 1 // in its group's queue, for a deployment
	backingOff                       // out a backoff before another round
	routed                           // an attempt is out at a deployment
	done                             // terminal snapshot published
)

// entry is one routed request. The router owns it, and its Lifecycle,
// from its enqueue to its terminal snapshot, except while an attempt is
// out at a deployment: the attempt's snapshots there move the Lifecycle
// on (PROCESSING, CALLING), on the deployment's goroutine, and its end
// gives it back (attemptEnded). One owner at a time keeps Seq gap-free.
type entry struct {
	id      uuid.UUID
	lc      *messages.Lifecycle
	handle  *Handle    // Submit's; nil for a message submit
	sender  *actor.PID // a message submit's; nil for Submit
	base    context.Context
	build   Builder
	built   []built // by deployment index
	first   messages.Request
	tokens  int      // the first build's estimate, for the deployments not built yet
	tiers   []*group // its group, then its fallbacks
	tier    int      // the tier whose queue it waits in
	tried   []bool   // by deployment index: failed it this round
	state   entryState
	attempt *attempt // while routed

	maxAttempts int
	retry       messages.RetryPolicy

	holdsSlot bool
	reserved  float64 // the spend cap's reservation, settled at the end
	received  bool    // the actor has it
	cancel    error   // a cancel asked while an attempt was out
	last      error   // the last attempt's error
	lastRes   messages.Result
	timer     selftimer.Timer // while backingOff
}

// built is a request built for one deployment, or why it could not be.
type built struct {
	done bool
	req  messages.Request
	err  error
}

// request is e's request for d: built once and kept, and checked against
// d's executor (its token bucket) as Submit would check it.
func (e *entry) request(d *deployment) (messages.Request, error) {
	b := &e.built[d.index]
	if !b.done {
		b.done = true
		b.req, b.err = e.build(d.Name)
		if b.err == nil {
			b.err = d.ex.tree.Validate(&b.req)
		}
	}
	return b.req, b.err
}

// unable records that d cannot take e at all.
func (e *entry) unable(d *deployment, err error) {
	b := &e.built[d.index]
	b.done, b.err = true, err
}

// excluded reports whether e may not go to d now: d failed it this round,
// or cannot take it.
func (e *entry) excluded(d *deployment) bool {
	if b := e.built[d.index]; b.done && b.err != nil {
		return true
	}
	return e.tried != nil && e.tried[d.index]
}

// tokensFor is e's token cost at d, as far as it is known.
func (e *entry) tokensFor(d *deployment) int {
	if b := e.built[d.index]; b.done && b.err == nil {
		return b.req.Tokens
	}
	return e.tokens
}

// attempt is one attempt of a routed request at a deployment: a request
// of one attempt there, whose handle tells the router how it goes.
type attempt struct {
	rt      *Router
	e       *entry
	d       *deployment
	h       *Handle // the deployment's handle of the attempt
	epoch   uint64  // of the deployment's breaker when it was given the attempt
	probe   bool    // it holds the breaker's half-open permit
	started bool    // the router has seen its call start
	// phase says whether the call may start: it moves once, from
	// phasePending to phaseCalling (on the deployment's goroutine, as the
	// call is about to start) or to phaseReclaimed (on the router's, taking
	// the attempt back before its call). So a call reclaimed is never
	// sent, and a call sent is never reclaimed.
	phase atomic.Int32
	// final is the attempt's terminal snapshot, set on the deployment's
	// goroutine before attemptEnded is sent; the router reads it after
	// that message, or, if the message was dropped as the router stopped,
	// once the deployment has stopped.
	final messages.Event
}

// The phases of an attempt.
const (
	phasePending   = iota // given to the deployment, its call not started
	phaseCalling          // its call started
	phaseReclaimed        // taken back before its call: it never starts
)

// errReclaimed is the cause of an attempt the router took back from a
// deployment before its call started (see routerState.reclaim).
var errReclaimed = errors.New("lionactor: attempt taken back from its deployment before its call")

// notify follows the attempt's snapshots, as its handle receives them.
func (a *attempt) notify(ev messages.Event) {
	switch ev.Status {
	case messages.StatusProcessing:
		a.rt.publish(a.e, a.e.lc.Process(ev.Timings().Processing))
	case messages.StatusCalling:
		if !a.phase.CompareAndSwap(phasePending, phaseCalling) {
			return // reclaimed: its call returns errReclaimed unsent
		}
		a.rt.publish(a.e, a.e.lc.Call(ev.Timings().CallStarted))
		a.rt.system.Root.Send(a.rt.pid, &attemptStarted{a: a})
	case messages.StatusCompleted, messages.StatusFailed, messages.StatusCancelled:
		a.final = ev
		a.rt.system.Root.Send(a.rt.pid, &attemptEnded{a: a})
	}
}

// guardedCall is an attempt's call as its deployment runs it: not at all
// once the attempt was reclaimed.
type guardedCall struct {
	messages.Call
	a *attempt
}

// Do implements messages.Call.
func (c guardedCall) Do(ctx context.Context, attempt int) (messages.Result, error) {
	if c.a.phase.Load() == phaseReclaimed {
		return messages.Result{}, errReclaimed
	}
	return c.Call.Do(ctx, attempt)
}

// resultOf is what an attempt's terminal snapshot carries over to its
// routed request e: the tokens and cost the attempt consumed are charged
// to e (Lifecycle.Charge), and its response is returned, for the snapshot
// that follows.
func resultOf(e *entry, ev messages.Event) messages.Result {
	e.lc.Charge(ev)
	var res messages.Result
	if r, ok := ev.Response(); ok {
		res = messages.Result{StatusCode: r.StatusCode, Header: r.Header, Body: r.Body, Value: r.Value}
	}
	return res
}

// routeQueue is the FIFO of one group's waiting requests; requests that
// left it another way (cancelled) are skipped when they reach its head.
type routeQueue struct {
	g     *group
	items []*entry
}

func (q *routeQueue) head() *entry {
	for len(q.items) > 0 {
		if e := q.items[0]; e.state == waiting && e.tiers[e.tier] == q.g {
			return e
		}
		q.pop()
	}
	return nil
}

func (q *routeQueue) pop() {
	q.items[0] = nil
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = nil // let the drained backing array go
	}
}

// routerState is the router actor's state. It lives outside the actor's
// struct so that an incarnation made by a restart (which only stops) can
// end what the first held.
type routerState struct {
	rt      *Router
	mailbox *stopmail.Dropped
	entries map[uuid.UUID]*entry
	queues  []*routeQueue
	queueOf map[*group]*routeQueue
	next    int // the queue dispatch starts with, in turn
	timer   selftimer.Timer

	closing  bool // stopping or aborted: nothing more is accepted
	draining bool
	aborting bool
	drains   []chan struct{}
}

func newRouterState(rt *Router) *routerState {
	rs := &routerState{rt: rt, entries: map[uuid.UUID]*entry{}, queueOf: map[*group]*routeQueue{}}
	for _, name := range rt.Groups() {
		q := &routeQueue{g: rt.groups[name]}
		rs.queues = append(rs.queues, q)
		rs.queueOf[q.g] = q
	}
	return rs
}

// routerActor is the router's actor; its state is routerState.
type routerActor struct {
	rs    *routerState
	ready chan<- error
	// restarted is set in an incarnation made by a restart, which stops
	// the router instead of serving, as an executor's supervisor does.
	restarted bool
}

// Receive implements actor.Actor.
func (ra *routerActor) Receive(ctx actor.Context) {
	rs := ra.rs
	if rs.mailbox.IsStopped() {
		// A restart sent just before the stop revives a stopped actor:
		// that incarnation only stops again.
		if _, started := ctx.Message().(*actor.Started); started {
			ctx.Stop(ctx.Self())
		}
		return
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if ra.restarted {
			// Restarting stopped the deployments and, with them, the
			// attempts out there: the router stops, and its end covers
			// every request it held.
			rs.closing = true
			rs.rt.cfg.logger().Error("lionactor: router restarted by its parent; stopping")
			ctx.Stop(ctx.Self())
			return
		}
		if err := rs.start(ctx); err != nil {
			rs.closing = true
			ra.ready <- err
			ctx.Stop(ctx.Self())
			return
		}
		ra.ready <- nil
		return
	case *routeEnqueue:
		rs.enqueue(m.e)
	case *RoutedSubmit:
		rs.submit(ctx, m)
	case *messages.Submit:
		if s := ctx.Sender(); s != nil {
			ctx.Send(s, &messages.Rejected{ID: m.ID, Err: fmt.Errorf("%w: a router takes RoutedSubmit", messages.ErrInvalidRequest)})
		}
		return
	case *attemptStarted:
		a := m.a
		a.started = true
		a.d.backlog--
		a.d.calling++
		delete(a.d.waiting, a)
		a.d.counts.attempts.Add(1)
	case *attemptEnded:
		rs.attemptEnded(ctx, m.a)
	case *routeRetry:
		if e := m.e; e.state == backingOff {
			e.state = waiting
			rs.enqueueWaiting(e)
		}
	case *routeTick:
	case *messages.Cancel:
		rs.cancel(m)
	case *messages.StatsQuery:
		if ctx.Sender() != nil {
			ctx.Respond(rs.rt.Stats())
		}
		return
	case *routeDrain:
		rs.draining = true
		rs.drains = append(rs.drains, m.done)
		rs.checkDrained()
	case *routeAbort:
		rs.abort(m.done)
	case *actor.Stopping, *actor.Restarting:
		rs.closing = true
		rs.timer.Stop()
		return
	case *actor.Stopped:
		rs.stopped(ctx)
		return
	default:
		return
	}
	rs.dispatch(ctx)
}

// start spawns the deployments' executors as the actor's children.
func (rs *routerState) start(ctx actor.Context) error {
	logger := rs.rt.cfg.logger()
	for _, d := range rs.rt.deps {
		ex, err := spawn(ctx, ctx.ActorSystem(), false, d.executorConfig(logger))
		if err != nil {
			return fmt.Errorf("lionactor: deployment %s: %w", d.Name, err)
		}
		d.ex = ex
	}
	return nil
}

// enqueue takes a request Submit accepted.
func (rs *routerState) enqueue(e *entry) {
	e.received = true
	rs.entries[e.id] = e
	if rs.closing || rs.aborting {
		rs.end(e, messages.StatusCancelled, messages.ErrStopped, messages.Result{})
		return
	}
	e.state = waiting
	rs.rt.counts.queued.Add(1)
	rs.rt.publish(e, e.lc.Queue(time.Now(), 1, ""))
	rs.enqueueWaiting(e)
}

// enqueueWaiting puts a waiting request at the end of its tier's queue.
func (rs *routerState) enqueueWaiting(e *entry) {
	q := rs.queueOf[e.tiers[e.tier]]
	q.items = append(q.items, e)
}

// submit accepts a request sent by message from another actor.
func (rs *routerState) submit(ctx actor.Context, m *RoutedSubmit) {
	rt := rs.rt
	id := m.ID
	if id == uuid.Nil {
		id = uuid.New()
	}
	sender := ctx.Sender()
	reject := func(err error) {
		if sender != nil {
			ctx.Send(sender, &messages.Rejected{ID: id, Err: err})
		}
	}
	if rs.closing || rs.draining || rs.aborting || rt.checkRunning() != nil {
		reject(messages.ErrStopped)
		return
	}
	e, err := rt.newEntry(m.Group, m.Build)
	if err != nil {
		reject(err)
		return
	}
	select {
	case rt.slots <- struct{}{}:
	default:
		rt.counts.rejected.Add(1)
		reject(messages.ErrQueueFull)
		return
	}
	if err := rt.reserve(e); err != nil {
		rt.release()
		reject(err)
		return
	}
	now := time.Now()
	e.id, e.sender, e.holdsSlot, e.base = id, sender, true, context.Background()
	e.lc = messages.NewLifecycle(id, &e.first, now)
	rt.counts.accepted.Add(1)
	rt.publish(e, e.lc.Pending(now))
	rs.enqueue(e)
}

// dispatch gives the waiting requests to deployments, oldest first in
// each group's queue, while a deployment can soon start them; it arms the
// timer for the earliest moment waiting may end by itself.
func (rs *routerState) dispatch(ctx actor.Context) {
	if rs.closing {
		return
	}
	now := time.Now()
	var wake time.Time
	n := len(rs.queues)
	for i := range n {
		q := rs.queues[(rs.next+i)%n]
		for {
			e := q.head()
			if e == nil {
				break
			}
			d, at, exhausted := rs.choose(e, now)
			if d != nil {
				if rs.route(e, d) {
					q.pop()
				}
				continue // routed, or d cannot take it after all: next choice
			}
			if exhausted {
				q.pop()
				rs.end(e, messages.StatusFailed, rs.noDeployment(e), e.lastRes)
				continue
			}
			if !at.IsZero() && (wake.IsZero() || at.Before(wake)) {
				wake = at
			}
			break // the head waits, and so the requests behind it
		}
	}
	rs.next++
	if !wake.IsZero() {
		rs.timer.ArmBy(ctx, now, wake, tickMsg)
	}
}

// choose picks the deployment to give e to now: in the first of its tiers
// that has a deployment able to take it, the one that can start it
// soonest (ties go by turns, in proportion to weights). It returns no
// deployment when e must wait: for a deployment that has too many attempts
// waiting already (its next start wakes the router), or until at (an
// open breaker's delay, or a start too far ahead); exhausted when no
// deployment is left that could ever take it.
func (rs *routerState) choose(e *entry, now time.Time) (best *deployment, at time.Time, exhausted bool) {
	exhausted = true
	earliest := func(t time.Time) {
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	for _, g := range e.tiers[e.tier:] {
		var (
			bestStart time.Time
			usable    bool
		)
		for _, d := range g.deps {
			if e.excluded(d) || d.stopped() {
				continue
			}
			exhausted = false
			if blocked, reopen := d.health.blocked(now); blocked {
				if !reopen.IsZero() {
					earliest(reopen)
				}
				continue
			}
			usable = true
			if d.backlog >= d.ahead {
				continue
			}
			start := d.start(e.tokensFor(d), now)
			if best == nil || start.Before(bestStart) || start.Equal(bestStart) && d.load < best.load {
				best, bestStart = d, start
			}
		}
		if best != nil {
			// A start further ahead than the lookahead (and a permit's
			// slack for the estimate) waits in the router, where another
			// deployment may take it first.
			if hold := bestStart.Add(-rs.rt.cfg.Lookahead - best.interval); hold.After(now) {
				earliest(hold)
				return nil, at, false
			}
			return best, time.Time{}, false
		}
		if usable {
			return nil, at, false // busy, not failing: no fallback for that
		}
	}
	return nil, at, exhausted
}

// route gives e's next attempt to d, and reports whether d took it.
func (rs *routerState) route(e *entry, d *deployment) bool {
	req, err := e.request(d)
	if err != nil {
		return false // excluded from now on
	}
	a := &attempt{rt: rs.rt, e: e, d: d}
	req.MaxAttempts, req.Retry = 1, nil // the router retries
	req.Call = guardedCall{Call: req.Call, a: a}
	prev := e.lc.Current()
	// Named before the deployment has the Lifecycle: from Submit on, the
	// attempt's snapshots may move it on the deployment's goroutine.
	e.lc.Route(d.Name, d.Model)
	e.state = routed
	h, err := d.ex.submit(e.base, req, a.notify)
	if err != nil {
		e.state = waiting
		e.lc.Route(prev.Deployment, prev.Model)
		e.unable(d, err)
		if errors.Is(err, messages.ErrStopped) {
			d.gone = true
		}
		return false
	}
	a.h = h
	d.health.acquire(a)
	e.attempt = a
	rs.releaseSlot(e)
	rs.rt.counts.queued.Add(-1)
	rs.rt.counts.inFlight.Add(1)
	d.backlog++
	d.waiting[a] = struct{}{}
	d.load += 1 / float64(d.Weight)
	return true
}

// reclaim takes back from d the attempts whose calls have not started, as
// d will not start them soon (it is paused, or out): their requests go
// back to the head of their queues, for another deployment. An attempt
// whose call is starting is left to run.
func (rs *routerState) reclaim(d *deployment, why string) {
	n := 0
	for a := range d.waiting {
		if a.phase.CompareAndSwap(phasePending, phaseReclaimed) {
			a.h.owner.cancelRequest(a.h.id, errReclaimed)
			n++
		}
	}
	if n > 0 {
		rs.rt.cfg.logger().Debug("lionactor: attempts taken back from a deployment", slog.String("deployment", d.Name),
			slog.Int("attempts", n), slog.String("why", why))
	}
}

// attemptEnded takes back a request whose attempt has ended, and decides
// what follows.
func (rs *routerState) attemptEnded(ctx actor.Context, a *attempt) {
	d, e, ev := a.d, a.e, a.final
	if a.started {
		d.calling--
	} else {
		d.backlog--
		delete(d.waiting, a)
	}
	rs.rt.counts.inFlight.Add(-1)
	e.attempt = nil
	res := resultOf(e, ev)
	if a.phase.Load() == phaseReclaimed {
		d.health.record(a, outcomeAbandoned)
		if !rs.endCancelled(e) {
			rs.requeue(e, d)
		}
		return
	}
	switch ev.Status {
	case messages.StatusCompleted:
		d.health.record(a, outcomeSuccess)
		d.counts.completed.Add(1)
		rs.end(e, messages.StatusCompleted, nil, res)
		return
	case messages.StatusCancelled:
		d.health.record(a, outcomeAbandoned)
		if !rs.endCancelled(e) {
			// The deployment's executor stopped under the attempt (a
			// restart storm): it takes nothing more, and the request goes
			// on elsewhere.
			d.gone = true
			d.counts.failed.Add(1)
			rs.settle(ctx, e, d, ev.Err(), res, VerdictUnhealthy)
		}
		return
	}
	err := ev.Err()
	d.counts.failed.Add(1)
	var tle *messages.TokenLimitError
	verdict := rs.rt.cfg.classify(err)
	if errors.As(err, &tle) {
		// Refused by the deployment's limiter (a shared budget's smaller
		// burst): it cannot take the request; the others may.
		e.unable(d, err)
		verdict = VerdictBusy
	}
	if verdict == VerdictBusy {
		d.counts.rateLimited.Add(1)
		var pause messages.PauseError
		if errors.As(err, &pause) {
			if until := pause.PauseUntil(); until.After(d.pausedUntil) {
				d.pausedUntil = until
			}
			if pause.PauseUntil().After(time.Now().Add(rs.rt.cfg.Lookahead)) {
				rs.reclaim(d, "paused")
			}
		}
	}
	d.health.record(a, outcomeOf(verdict))
	if blocked, _ := d.health.blocked(time.Now()); blocked {
		rs.reclaim(d, "breaker open")
	}
	if e.cancel != nil {
		rs.end(e, messages.StatusCancelled, e.cancel, messages.Result{})
		return
	}
	rs.settle(ctx, e, d, err, res, verdict)
}

// endCancelled ends e CANCELLED, and says so, if its attempt came back
// with no outcome of its own to act on while e was cancelled (with the
// cause asked) or the router stops (ErrStopped); otherwise e goes on.
func (rs *routerState) endCancelled(e *entry) bool {
	switch {
	case e.cancel != nil:
		rs.end(e, messages.StatusCancelled, e.cancel, messages.Result{})
	case rs.closing || rs.aborting:
		rs.end(e, messages.StatusCancelled, messages.ErrStopped, messages.Result{})
	default:
		return false
	}
	return true
}

// settle decides what follows an attempt of e that failed at d with err:
// the end, another deployment at once, or a backoff and another round.
func (rs *routerState) settle(ctx actor.Context, e *entry, d *deployment, err error, res messages.Result, verdict Verdict) {
	e.last, e.lastRes = err, res
	if verdict == VerdictFatal || e.lc.Attempt() >= e.maxAttempts {
		rs.end(e, messages.StatusFailed, err, res)
		return
	}
	if e.tried == nil {
		e.tried = make([]bool, len(rs.rt.deps))
	}
	e.tried[d.index] = true
	now := time.Now()
	if tier, ok := rs.candidate(e, now); ok {
		e.tier = tier
		rs.retry(e, now, 0, err, res)
		return
	}
	// Every deployment e may go to has failed it this round (or is out):
	// its backoff, then all of them again.
	if e.retry == nil {
		rs.end(e, messages.StatusFailed, err, res)
		return
	}
	delay, again := e.retry.Backoff(e.lc.Attempt(), err)
	if !again {
		rs.end(e, messages.StatusFailed, err, res)
		return
	}
	clear(e.tried)
	e.tier = 0
	rs.retry(e, now, delay, err, res)
	if delay > 0 {
		e.state = backingOff
		e.timer.Arm(ctx, now, delay, &routeRetry{e: e})
	}
}

// requeue puts e, whose attempt at d was taken back before its call,
// at the head of its queue again.
func (rs *routerState) requeue(e *entry, d *deployment) {
	rs.rt.counts.queued.Add(1)
	rs.rt.publish(e, e.lc.Queue(time.Now(), e.lc.Attempt()+1, "taken back from "+d.Name+" before its call"))
	e.state = waiting
	q := rs.queueOf[e.tiers[e.tier]]
	q.items = append([]*entry{e}, q.items...)
}

// retry publishes the QUEUED snapshot of e's next attempt, after delay,
// and queues e at once when there is none.
func (rs *routerState) retry(e *entry, now time.Time, delay time.Duration, err error, res messages.Result) {
	rs.rt.counts.retries.Add(1)
	rs.rt.counts.queued.Add(1)
	rs.rt.publish(e, e.lc.Retry(now, delay, err, res))
	if delay <= 0 {
		e.state = waiting
		rs.enqueueWaiting(e)
	}
}

// candidate returns the first tier of e with a deployment that may take
// it now or soon: not tried this round, able to, running, its breaker
// not open.
func (rs *routerState) candidate(e *entry, now time.Time) (int, bool) {
	for i, g := range e.tiers {
		for _, d := range g.deps {
			if e.excluded(d) || d.stopped() {
				continue
			}
			if blocked, reopen := d.health.blocked(now); blocked && !reopen.IsZero() {
				continue
			}
			return i, true
		}
	}
	return 0, false
}

// noDeployment is the error of a request no deployment is left for: the
// last attempt's error, and why each deployment that could not take it
// could not.
func (rs *routerState) noDeployment(e *entry) error {
	nd := &noDeploymentError{}
	if e.last != nil {
		nd.errs = append(nd.errs, e.last)
	}
	for i, b := range e.built {
		if b.done && b.err != nil {
			nd.errs = append(nd.errs, fmt.Errorf("%s: %w", rs.rt.deps[i].Name, b.err))
		}
	}
	return nd
}

// noDeploymentError matches ErrNoDeployment and each of its errors.
type noDeploymentError struct{ errs []error }

func (e *noDeploymentError) Error() string {
	s := ErrNoDeployment.Error()
	for i, err := range e.errs {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		s += sep + err.Error()
	}
	return s
}

func (e *noDeploymentError) Unwrap() []error { return append([]error{ErrNoDeployment}, e.errs...) }

// cancel ends a request its submitter cancelled: at once if the router
// holds it, or once its attempt, cancelled too, comes back.
func (rs *routerState) cancel(m *messages.Cancel) {
	e := rs.entries[m.ID]
	if e == nil {
		return
	}
	cause := m.Cause
	if cause == nil {
		cause = messages.ErrCancelled
	}
	if e.state != routed {
		rs.end(e, messages.StatusCancelled, cause, messages.Result{})
		return
	}
	if e.cancel == nil {
		e.cancel = cause
		e.attempt.h.owner.cancelRequest(e.attempt.h.id, cause)
	}
}

// abort ends every request: those the router holds at once, those out
// at a deployment once their cancelled attempts come back.
func (rs *routerState) abort(done chan struct{}) {
	rs.aborting, rs.closing = true, true
	rs.drains = append(rs.drains, done)
	for _, e := range rs.entries {
		rs.cancel(&messages.Cancel{ID: e.id, Cause: messages.ErrStopped})
	}
	rs.checkDrained()
}

// end publishes e's terminal snapshot and gives back what it held.
func (rs *routerState) end(e *entry, status messages.RequestStatus, err error, res messages.Result) {
	rt := rs.rt
	switch e.state {
	case waiting, backingOff:
		rt.counts.queued.Add(-1)
		e.timer.Stop()
	}
	rs.releaseSlot(e)
	now := time.Now()
	var ev messages.Event
	switch status {
	case messages.StatusCompleted:
		rt.counts.completed.Add(1)
		ev = e.lc.Complete(now, res)
	case messages.StatusFailed:
		rt.counts.failed.Add(1)
		ev = e.lc.Fail(now, err, res)
	default:
		rt.counts.cancelled.Add(1)
		ev = e.lc.Cancel(now, err)
	}
	e.state = done
	delete(rs.entries, e.id)
	rt.publish(e, ev)
	rs.checkDrained()
}

func (rs *routerState) releaseSlot(e *entry) {
	if e.holdsSlot {
		e.holdsSlot = false
		rs.rt.release()
	}
}

func (rs *routerState) checkDrained() {
	if !(rs.draining || rs.aborting) || len(rs.entries) > 0 {
		return
	}
	for _, d := range rs.drains {
		close(d)
	}
	rs.drains = nil
}

// stopped runs once the actor has stopped, its deployments with it,
// whatever stopped it. Every attempt has ended by then (a deployment ends
// what it holds as it stops), though its attemptEnded may have been
// dropped with the rest of the mailbox: each request ends here, COMPLETED
// if its attempt did, else CANCELLED with ErrStopped, and so does every
// request Submit accepted whose enqueue the actor never read. Taking mu
// orders this against Submit, as Executor.treeStopped does.
func (rs *routerState) stopped(ctx actor.Context) {
	rt := rs.rt
	rs.mailbox.Stopped(ctx.ActorSystem().Root)
	rs.closing = true
	rs.timer.Stop()
	rt.mu.Lock()
	if !rt.stopping {
		rt.stopping = true
		close(rt.stopCh)
	}
	rt.liveMu.Lock()
	left := rt.live
	rt.live = nil
	rt.liveMu.Unlock()
	rt.mu.Unlock()

	for e := range left {
		if !e.received {
			rs.entries[e.id] = e // never queued: it holds its slot alone
		}
	}
	for _, e := range rs.entries {
		if e.state != routed {
			rs.end(e, messages.StatusCancelled, messages.ErrStopped, messages.Result{})
			continue
		}
		a := e.attempt
		e.attempt = nil
		rt.counts.inFlight.Add(-1)
		res := resultOf(e, a.final)
		if a.final.Status == messages.StatusCompleted {
			rs.end(e, messages.StatusCompleted, nil, res)
		} else {
			rs.end(e, messages.StatusCancelled, messages.ErrStopped, messages.Result{})
		}
	}
	close(rt.stopped)
	rt.shutdown.Do(func() { go rt.cleanup() })
	if n := len(rs.entries); n > 0 {
		rt.cfg.logger().Error("lionactor: router stopped with requests left", slog.Int("requests", n))
	}
}

// stopped reports whether d's executor has stopped: it takes nothing more.
func (d *deployment) stopped() bool {
	if d.gone {
		return true
	}
	select {
	case <-d.ex.tree.Stopped():
		d.gone = true
		return true
	default:
		return false
	}
}
