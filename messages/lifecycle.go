package messages

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Lifecycle builds the snapshots of one request. It holds the request's
// current state and turns each transition into a new immutable [Event] with
// the next sequence number; once a terminal state is reached it refuses
// further transitions.
//
// A Lifecycle is not safe for concurrent use: one actor owns it at a time,
// which is what makes the sequence numbers gap-free.
type Lifecycle struct {
	cur Event
}

// NewLifecycle prepares the lifecycle of request r, created at now. It copies
// and redacts what the snapshots will show, once, so later snapshots share it.
// The first snapshot comes from [Lifecycle.Pending].
func NewLifecycle(id uuid.UUID, r *Request, now time.Time) *Lifecycle {
	secrets := slices.Clone(r.Secrets)
	ep := r.Endpoint
	ep.URL = Scrub(ep.URL, secrets)
	ep.Header = RedactHeader(ep.Header, secrets)
	ep.Payload = scrubBytes(slices.Clone(ep.Payload), secrets)
	l := &Lifecycle{cur: Event{
		ID:     id,
		Tokens: Tokens{Estimated: r.Tokens},
		req:    &requestData{created: now, endpoint: ep, metadata: maps.Clone(r.Metadata), secrets: secrets, pricing: r.Pricing},
		// Room for a request waiting in the queue (see advance).
		log: make([]logEntry, 0, queuedSnapshots),
	}}
	if r.Pricing != nil || r.EstimatedCost != 0 {
		l.cur.cost = &costState{Cost: Cost{Estimated: r.EstimatedCost, Priced: r.Pricing != nil}}
	}
	return l
}

func (l *Lifecycle) mark(stage int, now time.Time) { l.cur.at.mark(stage, l.cur.req.created, now) }

// Current returns the latest snapshot (the zero Event before Pending).
func (l *Lifecycle) Current() Event { return l.cur }

// Done reports whether the request reached a terminal state.
func (l *Lifecycle) Done() bool { return l.cur.Status.Terminal() }

// Attempt is the attempt in progress or last made.
func (l *Lifecycle) Attempt() int { return l.cur.Attempt }

// live panics if the request already reached a terminal state. Transitions
// after a terminal state are bugs in the runtime, not conditions to handle.
// Every transition calls it before it changes anything, so a refused
// transition leaves the lifecycle as it was.
func (l *Lifecycle) live(s RequestStatus) {
	if l.cur.Status.Terminal() {
		panic(fmt.Sprintf("messages: request %s moved from terminal %v to %v", l.cur.ID, l.cur.Status, s))
	}
}

// advance publishes the next snapshot.
func (l *Lifecycle) advance(s RequestStatus, now time.Time, note string) Event {
	l.live(s)
	l.cur.retry = nil // only the snapshot that schedules a retry carries it
	l.cur.Seq++
	l.cur.Status = s
	// Appending may write into spare capacity shared with earlier snapshots,
	// but only past their length, which they never read.
	if len(l.cur.log) == cap(l.cur.log) {
		// Room for a request that succeeds at once, then doubling: a
		// queued request holds little, a finished one grew once.
		grown := make([]logEntry, len(l.cur.log), max(typicalSnapshots, 2*cap(l.cur.log)))
		copy(grown, l.cur.log)
		l.cur.log = grown
	}
	l.cur.log = append(l.cur.log, logEntry{off: int64(now.Sub(l.cur.req.created)), status: s, note: note})
	return l.cur
}

// Route records where the next attempt goes: its deployment and the model
// that deployment calls. It publishes nothing; the snapshots from the next
// one on name them, until another Route. A router calls it before it hands
// the request to a deployment, so that the snapshots of the attempt, and
// the one that schedules the retry after it fails, say where it ran.
func (l *Lifecycle) Route(deployment, model string) {
	l.live(l.cur.Status)
	l.cur.Deployment, l.cur.Model = deployment, model
}

// Pending publishes the first snapshot: accepted, not yet queued.
func (l *Lifecycle) Pending(now time.Time) Event {
	return l.advance(StatusPending, now, "accepted")
}

// Queue publishes QUEUED for the given attempt (1 for the first entry, higher
// for a retry, whose note says why and when).
func (l *Lifecycle) Queue(now time.Time, attempt int, note string) Event {
	l.live(StatusQueued)
	if !l.cur.at.reached(stageQueued) || attempt > 1 {
		l.mark(stageQueued, now)
	}
	if attempt > 1 {
		l.cur.at.clear(stageProcessing)
		l.cur.at.clear(stageCallStarted)
	}
	if note == "" {
		note = "queued"
	}
	return l.advance(StatusQueued, now, note)
}

// Process publishes PROCESSING: a caller is reserved and the limiter's permit
// is awaited for the next attempt.
func (l *Lifecycle) Process(now time.Time) Event {
	l.live(StatusProcessing)
	l.mark(stageProcessing, now)
	return l.advance(StatusProcessing, now, "awaiting permit")
}

// Call publishes CALLING for the next attempt.
func (l *Lifecycle) Call(now time.Time) Event {
	l.live(StatusCalling)
	l.cur.Attempt++
	l.mark(stageCallStarted, now)
	return l.advance(StatusCalling, now, attemptNote(l.cur.Attempt))
}

// Complete publishes COMPLETED with the call's result.
func (l *Lifecycle) Complete(now time.Time, res Result) Event {
	l.live(StatusCompleted)
	l.setResult(res)
	l.mark(stageFinished, now)
	return l.advance(StatusCompleted, now, "completed")
}

// CompleteFromCache publishes COMPLETED with a reply that was known before
// any call (Request.Cached): the snapshot has Cached set and costs nothing,
// and res's usage, which an earlier call consumed, is not counted again.
func (l *Lifecycle) CompleteFromCache(now time.Time, res Result) Event {
	l.live(StatusCompleted)
	res.Usage = nil
	l.setResult(res)
	l.cur.cost = &costState{Cost: Cost{Priced: true, HasActual: true}, cached: true}
	l.mark(stageFinished, now)
	return l.advance(StatusCompleted, now, "answered from the cache")
}

// Charge adds to the request what an attempt run as a request of its own
// consumed, as that attempt's terminal snapshot says: its API tokens, its
// cost (priced at where it ran) and whether a cache answered it. A router,
// whose attempts run at its deployments' executors, calls it as each
// attempt ends, before the snapshot that follows; the attempt's result
// then carries no usage, so that nothing is counted twice.
func (l *Lifecycle) Charge(attempt Event) {
	if attempt.Tokens.HasActual {
		l.cur.Tokens.Actual += attempt.Tokens.Actual
		l.cur.Tokens.HasActual = true
	}
	c := attempt.Cost()
	if !c.HasActual && !attempt.Cached() {
		return
	}
	// A new state: the snapshots published so far keep theirs.
	var s costState
	if l.cur.cost != nil {
		s = *l.cur.cost
	}
	s.Actual += c.Actual
	s.HasActual = true
	s.Priced = s.Priced || c.Priced
	s.cached = attempt.Cached()
	l.cur.cost = &s
}

// Fail publishes FAILED with err and, when the failed call returned one, its
// result.
func (l *Lifecycle) Fail(now time.Time, err error, res Result) Event {
	l.live(StatusFailed)
	l.setResult(res)
	return l.end(StatusFailed, now, err)
}

// Cancel publishes CANCELLED, err saying why.
func (l *Lifecycle) Cancel(now time.Time, err error) Event {
	return l.end(StatusCancelled, now, err)
}

// Retry publishes QUEUED for the next attempt after the current one failed
// with err and will be tried again after delay. The attempt's error and
// response stay visible in the log, not in the snapshot's terminal fields.
func (l *Lifecycle) Retry(now time.Time, delay time.Duration, err error, res Result) Event {
	l.live(StatusQueued)
	if res.Usage != nil {
		l.setUsage(res.Usage)
	}
	info := describe(err, l.cur.req.secrets).info
	l.Queue(now, l.cur.Attempt+1, fmt.Sprintf("retry in %v after attempt %d failed: %s", delay, l.cur.Attempt, info.Message))
	l.cur.retry = &info
	return l.cur
}

func (l *Lifecycle) end(s RequestStatus, now time.Time, err error) Event {
	l.live(s)
	l.cur.fail = describe(err, l.cur.req.secrets)
	l.mark(stageFinished, now)
	return l.advance(s, now, l.cur.fail.info.Message)
}

// describe scrubs err of the secrets and classifies it.
func describe(err error, secrets []string) *failure {
	err = ScrubError(err, secrets)
	return &failure{
		err:  err,
		info: ErrorInfo{Kind: errorKind(err), Message: err.Error(), Details: errorDetails(err, secrets)},
	}
}

func (l *Lifecycle) setResult(res Result) {
	if res.Usage != nil {
		l.setUsage(res.Usage)
	}
	if res.StatusCode == 0 && res.Header == nil && res.Body == nil && res.Value == nil {
		return
	}
	secrets := l.cur.req.secrets
	l.cur.resp = &Response{
		StatusCode: res.StatusCode,
		Header:     RedactHeader(res.Header, secrets),
		Body:       scrubBytes(slices.Clone(res.Body), secrets),
		Value:      res.Value,
	}
}

func (l *Lifecycle) setUsage(u *Usage) {
	total := u.TotalTokens
	if total == 0 {
		total = u.InputTokens + u.OutputTokens
	}
	l.cur.Tokens.Actual += total
	l.cur.Tokens.HasActual = true
	if p := l.cur.req.pricing; p != nil {
		// A new state: the snapshots published so far keep theirs.
		c := *l.cur.cost
		c.Actual += p.Cost(*u)
		c.HasActual = true
		l.cur.cost = &c
	}
}

// attemptNotes are the CALLING notes of the first attempts, made once.
var attemptNotes = [...]string{"", "attempt 1", "attempt 2", "attempt 3", "attempt 4", "attempt 5"}

func attemptNote(n int) string {
	if n > 0 && n < len(attemptNotes) {
		return attemptNotes[n]
	}
	return "attempt " + strconv.Itoa(n)
}
