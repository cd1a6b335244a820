package actors

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/lionactor/lionactor/internal/selftimer"
	"github.com/lionactor/lionactor/internal/stopmail"
	"github.com/lionactor/lionactor/messages"
)

// entryState is where an accepted request is in the queue actor's hands.
type entryState uint8

const (
	inQueue        entryState = iota + 1 // in the FIFO
	waitingRetry                         // backing off before another attempt
	awaitingPermit                       // caller reserved, permit asked
	calling                              // the caller runs it
	settling                             // an attempt ended; deciding what next
	ended                                // terminal snapshot published
)

// entry is one accepted request. The queue actor owns it, and with it the
// request's Lifecycle, from acceptance to its terminal snapshot: a single
// owner is what makes the sequence numbers gap-free and the terminal state
// unique.
type entry struct {
	ticket    uint64 // the queue's own key: cheaper than the UUID in messages
	id        uuid.UUID
	lc        *messages.Lifecycle
	work      work // what of the request its attempts need
	sink      Sink
	sender    *actor.PID
	base      context.Context
	state     entryState
	caller    *callerRef
	holdsSlot bool
	timer     *selftimer.Timer        // made for its first backoff; armed while waitingRetry
	cancel    context.CancelCauseFunc // while calling: cuts the attempt short
}

// work is what the queue keeps of a request for its attempts: not the
// whole messages.Request (its endpoint, metadata and secrets are the
// Lifecycle's), since a queued request should cost little memory.
type work struct {
	call        messages.Call
	retry       messages.RetryPolicy
	tokens      int
	timeout     time.Duration
	maxAttempts int
}

// workOf is the work of r.
func workOf(r *messages.Request) work {
	return work{call: r.Call, retry: r.Retry, tokens: r.Tokens, timeout: r.Timeout, maxAttempts: r.MaxAttempts}
}

// callerRef is how the queue reaches a caller: its PID, and its worker's
// channel and stop context (see callerReady).
type callerRef struct {
	pid  *actor.PID
	work chan<- job
	stop context.Context
}

// allowance is what the queue holds of the limiter's permits.
type allowance struct {
	requests, tokens int64
	unlimited        bool
}

// queue is the dispatcher of the tree; see the package documentation.
type queue struct {
	cfg     *config
	limiter *actor.PID
	mailbox *stopmail.Dropped

	nextTicket uint64
	fifo       []*entry // entries no longer inQueue are skipped when popped
	byTicket   map[uint64]*entry
	byID       map[uuid.UUID]*entry

	idle []*callerRef
	// busy maps a caller's ID to the entry it serves; a nil entry means the
	// caller still runs a call whose request already ended (cancelled), so it
	// is not idle yet.
	busy    map[string]*busyCaller
	waiting []*entry // awaiting their permit, in order; ended ones are skipped

	permits  allowance
	asked    bool   // a permitsWanted is out
	askedFor *entry // the head it was asked for

	draining bool
	closed   bool // after an abort: nothing more is accepted
	drains   []chan struct{}
}

// busyCaller is a caller that has the queue's request e (nil once e ended
// while its call still runs).
type busyCaller struct {
	ref *callerRef
	e   *entry
}

func newQueue(cfg *config, limiter *actor.PID, mailbox *stopmail.Dropped) *queue {
	return &queue{
		cfg:      cfg,
		limiter:  limiter,
		mailbox:  mailbox,
		byTicket: make(map[uint64]*entry),
		byID:     make(map[uuid.UUID]*entry),
		busy:     make(map[string]*busyCaller),
	}
}

// Receive implements actor.Actor.
func (q *queue) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *entry:
		q.enqueue(ctx, m)
	case *messages.Submit:
		q.submit(ctx, m)
	case *callerReady:
		q.callerReady(&callerRef{pid: m.caller, work: m.work, stop: m.stop})
	case *permitsGranted:
		q.granted(m)
	case *permitsDenied:
		q.denied(ctx, m.err)
	case *permitsRevoked:
		q.revoked(ctx)
	case *callDone:
		q.callDone(ctx, m)
	case *callerCrashed:
		q.callerCrashed(ctx, m)
	case *retryDue:
		q.retryDue(m.ticket)
	case *messages.Cancel:
		q.cancel(ctx, m)
	case *drainQueue:
		q.drain(m.Done)
	case *abortQueue:
		q.abort(ctx, m.Err, m.Fail)
		close(m.Done)
		if ctx.Sender() != nil {
			ctx.Respond(&abortDone{})
		}
	case *actor.Stopping:
		// Normally empty by now (Stop drains or aborts first); if the tree is
		// stopped from outside, nothing accepted may be left hanging. The
		// queue has no children: Stopped follows at once, and what is still
		// in the mailbox is dropped. Enqueues dropped so are ended by the
		// runtime once the tree is gone; message submits by the mailbox.
		status, err := q.cfg.stoppedEnd()
		q.abort(ctx, err, status == messages.StatusFailed)
	case *actor.Stopped:
		q.mailbox.Stopped(ctx.ActorSystem().Root)
	}
	q.dispatch(ctx)
}

// callerReady takes a caller, new or restarted, as idle.
func (q *queue) callerReady(c *callerRef) {
	if _, ok := q.busy[c.pid.Id]; ok {
		return
	}
	for i, idle := range q.idle {
		if idle.pid.Id == c.pid.Id {
			q.idle[i] = c // restarted: its new worker
			return
		}
	}
	q.idle = append(q.idle, c)
}

// granted takes the limiter's answer to the queue's ask.
func (q *queue) granted(g *permitsGranted) {
	q.asked, q.askedFor = false, nil
	if g.unlimited {
		q.permits.unlimited = true
		return
	}
	q.permits.requests += g.requests
	q.permits.tokens += g.tokens
}

// denied fails the head request, if its permit can never be granted: the
// denial may be of an ask made for an earlier head, now gone, in which case
// the queue asks again for the new one.
func (q *queue) denied(ctx actor.Context, err error) {
	q.asked, q.askedFor = false, nil
	e := q.head()
	if e == nil {
		return
	}
	if burst := q.cfg.buckets.TokenBurst(); q.cfg.buckets.TokensEnabled() && e.work.tokens > burst {
		// end frees the caller and counts the request out of flight.
		q.end(ctx, e, messages.StatusFailed, &messages.TokenLimitError{Tokens: e.work.tokens, Burst: burst}, messages.Result{})
	}
}

// revoked gives back what the queue holds of the limiter's permits, as a
// pause begins or the limits change; it asks again for what it needs.
func (q *queue) revoked(ctx actor.Context) {
	q.permits.unlimited = false
	q.returnPermits(ctx)
}

// returnPermits gives back the permits the queue holds.
func (q *queue) returnPermits(ctx actor.Context) {
	if p := q.permits; p.requests > 0 || p.tokens > 0 {
		ctx.Send(q.limiter, &permitsReturned{requests: p.requests, tokens: p.tokens})
	}
	q.permits.requests, q.permits.tokens = 0, 0
}

// callDone takes an attempt's outcome; its caller is idle again.
func (q *queue) callDone(ctx actor.Context, m *callDone) {
	b, ok := q.busy[m.caller.Id]
	if !ok {
		return
	}
	delete(q.busy, m.caller.Id)
	q.idle = append(q.idle, b.ref)
	if e := b.e; e != nil && e.ticket == m.ticket && e.state == calling {
		q.outcome(ctx, e, m.result, m.err, m.stopped)
	}
}

// callerCrashed settles the attempt a caller held when it panicked; the
// caller comes back idle with callerReady once restarted.
func (q *queue) callerCrashed(ctx actor.Context, m *callerCrashed) {
	b := q.busy[m.caller.Id]
	delete(q.busy, m.caller.Id)
	if b == nil || b.e == nil || b.e.state != calling {
		return
	}
	e := b.e
	crash := &messages.CallerCrashError{Panic: m.reason}
	if cp, ok := m.reason.(*callPanic); ok {
		crash.Panic, crash.Stack = cp.Value, cp.Stack
	}
	q.outcome(ctx, e, messages.Result{}, crash, false)
}

// retryDue puts a request back in the queue once its backoff is over.
func (q *queue) retryDue(ticket uint64) {
	if e := q.byTicket[ticket]; e != nil && e.state == waitingRetry {
		e.state = inQueue
		e.timer.Stop()
		q.fifo = append(q.fifo, e)
	}
}

// cancel ends a request its submitter cancelled, wherever it is.
func (q *queue) cancel(ctx actor.Context, m *messages.Cancel) {
	if e := q.byID[m.ID]; e != nil {
		cause := m.Cause
		if cause == nil {
			cause = messages.ErrCancelled
		}
		q.end(ctx, e, messages.StatusCancelled, cause, messages.Result{})
	}
}

// drain closes done once every accepted request has ended; requests keep
// flowing meanwhile.
func (q *queue) drain(done chan struct{}) {
	q.draining = true
	q.drains = append(q.drains, done)
	q.checkDrained()
}

// submit accepts a request sent by message from another actor.
func (q *queue) submit(ctx actor.Context, m *messages.Submit) {
	id := m.ID
	if id == uuid.Nil {
		id = uuid.New()
	}
	reject := func(err error) {
		if s := ctx.Sender(); s != nil {
			ctx.Send(s, &messages.Rejected{ID: id, Err: err})
		}
	}
	if q.closed || q.draining {
		reject(messages.ErrStopped)
		return
	}
	if err := validateRequest(&m.Request, q.cfg.buckets); err != nil {
		reject(err)
		return
	}
	if !q.cfg.admission.TryAcquire() {
		q.cfg.counters.Rejected()
		reject(messages.ErrQueueFull)
		return
	}
	q.cfg.counters.Accepted()
	e := &entry{
		id:        id,
		lc:        messages.NewLifecycle(id, &m.Request, time.Now()),
		work:      workOf(&m.Request),
		sender:    ctx.Sender(),
		holdsSlot: true,
	}
	q.register(e)
	q.publish(ctx, e, e.lc.Pending(time.Now()))
	q.queueEntry(ctx, e)
}

// enqueue takes a request handed over QUEUED (see Tree.Enqueue).
func (q *queue) enqueue(ctx actor.Context, e *entry) {
	q.register(e)
	if q.closed {
		status, err := q.cfg.stoppedEnd()
		q.end(ctx, e, status, err, messages.Result{})
		return
	}
	q.fifo = append(q.fifo, e)
}

func (q *queue) register(e *entry) {
	q.nextTicket++
	e.ticket = q.nextTicket
	q.byTicket[e.ticket] = e
	q.byID[e.id] = e
}

func (q *queue) queueEntry(ctx actor.Context, e *entry) {
	e.state = inQueue
	q.fifo = append(q.fifo, e)
	q.cfg.counters.queued.Add(1)
	q.publish(ctx, e, e.lc.Queue(time.Now(), 1, ""))
}

// dispatch pairs the oldest queued requests with idle callers (PROCESSING:
// a caller is theirs, their permit awaited), and starts the calls of those
// whose permits the queue holds; for the others it asks the limiter.
func (q *queue) dispatch(ctx actor.Context) {
	for len(q.idle) > 0 {
		e := q.popQueued()
		if e == nil {
			break
		}
		c := q.idle[len(q.idle)-1]
		q.idle = q.idle[:len(q.idle)-1]
		e.caller, e.state = c, awaitingPermit
		q.busy[c.pid.Id] = &busyCaller{ref: c, e: e}
		q.releaseSlot(e)
		q.cfg.counters.queued.Add(-1)
		q.cfg.counters.inFlight.Add(1)
		q.waiting = append(q.waiting, e)
		q.publish(ctx, e, e.lc.Process(time.Now()))
	}
	q.spend(ctx)
}

// spend starts, in order, the calls whose permits the queue holds, and
// asks the limiter for the rest; with nothing left waiting it gives back
// what it holds.
func (q *queue) spend(ctx actor.Context) {
	if q.closed {
		return // an abort ended everything: nothing to ask for
	}
	for {
		e := q.head()
		if e == nil {
			break
		}
		cost := q.tokenCost(e)
		if !q.permits.unlimited {
			if q.permits.requests < 1 || q.permits.tokens < cost {
				if q.asked && q.askedFor != e {
					// The head the ask was made for is gone: what is
					// reserved for it must not hold up this one.
					ctx.Send(q.limiter, &permitsWithdrawn{})
					q.asked = false
				}
				q.ask(ctx)
				return
			}
			q.permits.requests--
			q.permits.tokens -= cost
		}
		q.popWaiting()
		q.start(ctx, e)
	}
	if q.asked {
		ctx.Send(q.limiter, &permitsWithdrawn{})
		q.asked, q.askedFor = false, nil
	}
	if !q.permits.unlimited {
		q.returnPermits(ctx)
	}
}

// ask asks the limiter for the permits of every request waiting, beyond
// what the queue holds, unless an ask is out.
func (q *queue) ask(ctx actor.Context) {
	if q.asked {
		return
	}
	var n, tokens int64
	for _, e := range q.waiting {
		if e.state == awaitingPermit {
			n++
			tokens += q.tokenCost(e)
		}
	}
	first := q.head()
	head := q.tokenCost(first)
	q.asked, q.askedFor = true, first
	ctx.Send(q.limiter, &permitsWanted{
		requests:    max(n-q.permits.requests, 1),
		tokens:      max(tokens-q.permits.tokens, 0),
		minRequests: max(1-q.permits.requests, 0),
		minTokens:   max(head-q.permits.tokens, 0),
		headTokens:  head,
	})
}

// tokenCost is the API tokens e's permit takes: none without a token limit.
func (q *queue) tokenCost(e *entry) int64 {
	if !q.cfg.buckets.TokensEnabled() {
		return 0
	}
	return int64(e.work.tokens)
}

// head is the first request waiting for its permit, or nil.
func (q *queue) head() *entry {
	for len(q.waiting) > 0 && q.waiting[0].state != awaitingPermit {
		q.popWaiting()
	}
	if len(q.waiting) == 0 {
		return nil
	}
	return q.waiting[0]
}

func (q *queue) popWaiting() {
	q.waiting[0] = nil
	q.waiting = q.waiting[1:]
	if len(q.waiting) == 0 {
		q.waiting = q.waiting[:0:0] // let the backing array go
	}
}

func (q *queue) popQueued() *entry {
	for len(q.fifo) > 0 {
		e := q.fifo[0]
		q.fifo[0] = nil
		q.fifo = q.fifo[1:]
		if e.state == inQueue {
			return e
		}
	}
	q.fifo = nil // let the drained backing array go
	return nil
}

// start hands e's next attempt to its caller's worker (CALLING).
func (q *queue) start(ctx actor.Context, e *entry) {
	e.state = calling
	q.publish(ctx, e, e.lc.Call(time.Now()))
	timeout := e.work.timeout
	if timeout == 0 {
		timeout = q.cfg.CallTimeout
	}
	callCtx, cancel := callContext(e.base, e.caller.stop, timeout)
	e.cancel = cancel
	// The worker is idle (its caller was), so its channel has room.
	e.caller.work <- job{ticket: e.ticket, call: e.work.call, attempt: e.lc.Attempt(), timeout: timeout, ctx: callCtx, cancel: cancel}
}

// outcome settles an attempt: success, a retry, or failure; or, when its
// caller stopped under it, CANCELLED.
func (q *queue) outcome(ctx actor.Context, e *entry, res messages.Result, err error, stopped bool) {
	q.cfg.counters.inFlight.Add(-1)
	e.caller, e.state, e.cancel = nil, settling, nil
	if res.Usage != nil && q.cfg.buckets.TokensEnabled() {
		actual := res.Usage.TotalTokens
		if actual == 0 {
			actual = res.Usage.InputTokens + res.Usage.OutputTokens
		}
		if delta := actual - e.work.tokens; delta != 0 {
			ctx.Send(q.limiter, &AdjustTokens{Delta: delta})
		}
	}
	if err == nil {
		q.end(ctx, e, messages.StatusCompleted, nil, res)
		return
	}
	if stopped {
		// The tree's children stop each on its own goroutine, so a caller
		// can cancel its call as it stops, and the call's error reach the
		// queue, before the queue's own Stop. The request did not fail: it
		// was stopped, as the queue's stop would have said a moment later.
		status, err := q.cfg.stoppedEnd()
		q.end(ctx, e, status, err, messages.Result{})
		return
	}
	var pause messages.PauseError
	if errors.As(err, &pause) {
		ctx.Send(q.limiter, &PauseUntil{Until: pause.PauseUntil()})
		// No permit held here may be spent past the pause's start: give
		// them back now, before the limiter's revocation comes round.
		q.revoked(ctx)
	}
	if delay, ok := q.retryDelay(e, err); ok {
		q.cfg.counters.retries.Add(1)
		q.cfg.counters.queued.Add(1)
		q.publish(ctx, e, e.lc.Retry(time.Now(), delay, err, res))
		if delay <= 0 {
			e.state = inQueue
			q.fifo = append(q.fifo, e)
			return
		}
		e.state = waitingRetry
		if e.timer == nil {
			e.timer = new(selftimer.Timer)
		}
		e.timer.Arm(ctx, time.Now(), delay, &retryDue{ticket: e.ticket})
		return
	}
	q.end(ctx, e, messages.StatusFailed, err, res)
}

func (q *queue) retryDelay(e *entry, err error) (time.Duration, bool) {
	maxAttempts := e.work.maxAttempts
	if maxAttempts == 0 {
		maxAttempts = q.cfg.MaxAttempts
	}
	policy := e.work.retry
	if policy == nil {
		policy = q.cfg.Retry
	}
	if policy == nil || e.lc.Attempt() >= maxAttempts {
		return 0, false
	}
	return policy.Backoff(e.lc.Attempt(), err)
}

// end publishes the terminal snapshot of e, whatever state it is in, and
// gives back what it held: its queue slot, its caller, its permit ask, its
// retry timer, its running call.
func (q *queue) end(ctx actor.Context, e *entry, status messages.RequestStatus, err error, res messages.Result) {
	switch e.state {
	case inQueue, waitingRetry:
		q.cfg.counters.queued.Add(-1)
		e.timer.Stop()
	case awaitingPermit:
		// Its permit, if granted later, is given back (spend).
		q.cfg.counters.inFlight.Add(-1)
		q.freeCaller(e)
	case calling:
		q.cfg.counters.inFlight.Add(-1)
		// The caller stays busy until its goroutine returns: the
		// concurrency cap counts running calls, not live requests.
		e.cancel(err)
		q.busy[e.caller.pid.Id].e = nil
	}
	q.releaseSlot(e)
	now := time.Now()
	var ev messages.Event
	switch status {
	case messages.StatusCompleted:
		q.cfg.counters.completed.Add(1)
		ev = e.lc.Complete(now, res)
	case messages.StatusFailed:
		q.cfg.counters.failed.Add(1)
		ev = e.lc.Fail(now, err, res)
	default:
		q.cfg.counters.cancelled.Add(1)
		ev = e.lc.Cancel(now, err)
	}
	e.state, e.caller, e.cancel = ended, nil, nil
	delete(q.byTicket, e.ticket)
	delete(q.byID, e.id)
	q.publish(ctx, e, ev)
	q.checkDrained()
}

// freeCaller returns e's reserved caller, which never started e's call.
func (q *queue) freeCaller(e *entry) {
	if e.caller == nil {
		return
	}
	delete(q.busy, e.caller.pid.Id)
	q.idle = append(q.idle, e.caller)
	e.caller = nil
}

func (q *queue) releaseSlot(e *entry) {
	if e.holdsSlot {
		e.holdsSlot = false
		q.cfg.admission.Release()
	}
}

// abort ends every live request, oldest first.
func (q *queue) abort(ctx actor.Context, err error, fail bool) {
	q.closed = true
	status := messages.StatusCancelled
	if fail {
		status = messages.StatusFailed
	}
	tickets := make([]uint64, 0, len(q.byTicket))
	for t := range q.byTicket {
		tickets = append(tickets, t)
	}
	slices.Sort(tickets)
	for _, t := range tickets {
		q.end(ctx, q.byTicket[t], status, err, messages.Result{})
	}
	q.fifo = nil
}

func (q *queue) checkDrained() {
	if !q.draining || len(q.byTicket) > 0 {
		return
	}
	for _, d := range q.drains {
		close(d)
	}
	q.drains = nil
}

// publish delivers a snapshot. The observer goes first, so that whoever sees
// a request end through its handle knows the observer has seen it too.
func (q *queue) publish(ctx actor.Context, e *entry, ev messages.Event) {
	if q.cfg.Observer != nil {
		q.cfg.Observer(ev)
	}
	if e.sender != nil {
		ctx.Send(e.sender, ev)
	}
	if e.sink != nil {
		e.sink.Publish(ev)
	}
}
