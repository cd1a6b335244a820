package messages

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Event is one immutable snapshot of one request: the state it reached, when,
// and everything known about it at that moment. Each transition publishes a
// new Event with Seq one higher than the last; a request's final Event has a
// terminal Status.
//
// The exported fields are plain values, copied with the Event. Maps and
// slices are reached through methods that return copies, so no holder of an
// Event can change what another holder sees. Parts that do not change between
// snapshots are shared between them, never copied per snapshot.
type Event struct {
	ID      uuid.UUID     // the request's identity, the same in all its snapshots
	Seq     uint64        // 1 for PENDING, then one higher per snapshot
	Status  RequestStatus // the state this snapshot records
	Attempt int           // the attempt in progress or last made, from 1; 0 before the first
	Tokens  Tokens        // estimated and, once known, actual API tokens

	// Deployment and Model name where the attempt in progress or last made
	// went, for a request a router spreads over several deployments (see
	// runtime.Router): the deployment that served it, or that refused the
	// attempt a retry follows, and the model that deployment calls. Both
	// are "" until a router routes the request, and for a request an
	// executor runs on its own. A Lifecycle sets them with Route.
	Deployment string
	Model      string

	// at holds when each stage was reached, as offsets from the creation
	// time that all snapshots of the request share (see Timings): a
	// snapshot is copied into every holder, so it is kept small.
	at    stages
	req   *requestData // shared by all snapshots of the request
	cost  *costState   // shared until the cost changes; nil without a price or an estimate
	resp  *Response    // set on COMPLETED (and on failures that had a response)
	fail  *failure     // set on FAILED and CANCELLED
	retry *ErrorInfo   // the failed attempt's, on the QUEUED snapshot of its retry only
	log   []logEntry   // shared prefix; elements below len are never written again
}

// The stages whose times a snapshot records, besides its creation.
const (
	stageQueued = iota
	stageProcessing
	stageCallStarted
	stageFinished
	numStages
)

// stages are the times of the stages, in nanoseconds since the request was
// created (monotonic: durations between them are exact); a stage not
// reached has its bit clear in set.
type stages struct {
	off [numStages]int64
	set uint8
}

func (s *stages) mark(stage int, created, now time.Time) {
	s.off[stage] = int64(now.Sub(created))
	s.set |= 1 << stage
}

func (s *stages) clear(stage int) { s.set &^= 1 << stage }

func (s stages) reached(stage int) bool { return s.set&(1<<stage) != 0 }

func (s stages) time(stage int, created time.Time) time.Time {
	if !s.reached(stage) {
		return time.Time{}
	}
	return created.Add(time.Duration(s.off[stage]))
}

// Timings returns when the request reached each stage, as of this
// snapshot.
func (e Event) Timings() Timings {
	if e.req == nil {
		return Timings{}
	}
	c := e.req.created
	return Timings{
		Created:     c,
		Queued:      e.at.time(stageQueued, c),
		Processing:  e.at.time(stageProcessing, c),
		CallStarted: e.at.time(stageCallStarted, c),
		Finished:    e.at.time(stageFinished, c),
	}
}

// Tokens counts a request's API tokens.
type Tokens struct {
	Estimated int  `json:"estimated"`
	Actual    int  `json:"actual"`
	HasActual bool `json:"has_actual"` // whether Actual was reported by the call
}

// Cost is what a request costs, in US dollars: estimated before its call
// and, once its calls report usage, what that usage costs. [Event.Cost]
// returns it.
type Cost struct {
	// Estimated is the request's EstimatedCost: the most it was expected
	// to cost before its call.
	Estimated float64 `json:"estimated"`
	// Actual is what the usage its attempts reported costs, summed over
	// the attempts.
	Actual float64 `json:"actual"`
	// Priced says the request had a price (Request.Pricing). Without one
	// both amounts are 0 and mean "price unknown", never "free".
	Priced bool `json:"priced"`
	// HasActual says Actual is known: an attempt reported usage and the
	// request is priced, or it was answered from a cache, which costs
	// nothing.
	HasActual bool `json:"has_actual"`
}

// Timings records when a request reached each stage. For a retried request,
// Queued, Processing and CallStarted are those of the latest attempt; zero
// times mean the stage was not reached.
type Timings struct {
	Created     time.Time `json:"created"`
	Queued      time.Time `json:"queued,omitzero"`
	Processing  time.Time `json:"processing,omitzero"`
	CallStarted time.Time `json:"call_started,omitzero"`
	Finished    time.Time `json:"finished,omitzero"`
}

func between(from, to time.Time) time.Duration {
	if from.IsZero() || to.IsZero() {
		return 0
	}
	return to.Sub(from)
}

// QueueWait is the time from entering the queue to leaving it for a caller.
func (t Timings) QueueWait() time.Duration { return between(t.Queued, t.Processing) }

// PermitWait is the time spent waiting for the rate limiter's permit.
func (t Timings) PermitWait() time.Duration { return between(t.Processing, t.CallStarted) }

// CallDuration is the time the last call took.
func (t Timings) CallDuration() time.Duration { return between(t.CallStarted, t.Finished) }

// Total is the time from creation to the terminal state.
func (t Timings) Total() time.Duration { return between(t.Created, t.Finished) }

// Transition is one entry of a request's log.
type Transition struct {
	At      time.Time     `json:"at"`
	Status  RequestStatus `json:"status"`
	Message string        `json:"message,omitempty"`
}

// Response is what the call returned, as a snapshot records it.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
	// Value is the call's decoded result, shared as it is: treat it as read-only.
	Value any
}

// ErrorInfo describes why a request failed or was cancelled.
type ErrorInfo struct {
	// Kind is a short machine-readable class: "cancelled", "timeout",
	// "stopped", "caller_crashed", "restart_storm", or one the error names
	// itself through a Kind() string method; otherwise "error".
	Kind string `json:"kind"`
	// Message is the error's text, with secrets scrubbed.
	Message string `json:"message"`
	// Details are extra facts the error offers through a
	// Details() map[string]string method, such as an HTTP status.
	Details map[string]string `json:"details,omitempty"`
}

type requestData struct {
	created  time.Time
	endpoint Endpoint // redacted and private to the package
	metadata map[string]string
	secrets  []string
	pricing  Pricing
}

// costState is what a request cost as of a snapshot. A new one is made
// when it changes, so that earlier snapshots keep theirs: most snapshots
// share one, which keeps an Event small.
type costState struct {
	Cost
	cached bool // answered from a cache
}

// Cost returns what the request costs as of this snapshot: its estimate
// and, once an attempt reported usage, the actual cost of that usage. A
// request without a price (Request.Pricing) has the zero Cost: Priced
// false, "price unknown", never "free".
func (e Event) Cost() Cost {
	if e.cost == nil {
		return Cost{}
	}
	return e.cost.Cost
}

// Cached reports whether the request was answered from a cache
// (Request.Cached), without a call: its snapshots are PENDING then
// COMPLETED, at no cost.
func (e Event) Cached() bool { return e.cost != nil && e.cost.cached }

type failure struct {
	info ErrorInfo
	err  error
}

// Endpoint returns a copy of what the request calls, with credential headers
// redacted.
func (e Event) Endpoint() Endpoint {
	if e.req == nil {
		return Endpoint{}
	}
	ep := e.req.endpoint
	ep.Header = ep.Header.Clone()
	ep.Payload = slices.Clone(ep.Payload)
	return ep
}

// Metadata returns a copy of the caller-supplied metadata.
func (e Event) Metadata() map[string]string {
	if e.req == nil {
		return nil
	}
	return maps.Clone(e.req.metadata)
}

// Log returns a copy of the transitions up to and including this snapshot.
func (e Event) Log() []Transition {
	if len(e.log) == 0 {
		return nil
	}
	out := make([]Transition, len(e.log))
	for i, l := range e.log {
		out[i] = Transition{At: e.req.created.Add(time.Duration(l.off)), Status: l.status, Message: l.note}
	}
	return out
}

// logEntry is a Transition as the log keeps it: its time as an offset from
// the request's creation.
type logEntry struct {
	off    int64
	note   string
	status RequestStatus
}

// Response returns a copy of the call's response, and whether there is one.
func (e Event) Response() (Response, bool) {
	if e.resp == nil {
		return Response{}, false
	}
	r := *e.resp
	r.Header = r.Header.Clone()
	r.Body = slices.Clone(r.Body)
	return r, true
}

// Failure returns a copy of the description of what ended the request
// FAILED or CANCELLED, and whether there is one. The error itself, for
// errors.Is and errors.As, is [Event.Err].
func (e Event) Failure() (ErrorInfo, bool) {
	if e.fail == nil {
		return ErrorInfo{}, false
	}
	info := e.fail.info
	info.Details = maps.Clone(info.Details)
	return info, true
}

// RetryFailure returns, on the QUEUED snapshot that schedules a retry, a copy
// of the description of the attempt that failed (its kind, such as
// "rate_limited", its scrubbed message, and details such as the HTTP
// status), and whether there is one. Every other snapshot has none: the
// failure that ends a request is [Event.Failure]. An observer that counts,
// say, the 429s a run met reads it here for the attempts that were retried
// and from Failure for the last.
func (e Event) RetryFailure() (ErrorInfo, bool) {
	if e.retry == nil {
		return ErrorInfo{}, false
	}
	info := *e.retry
	info.Details = maps.Clone(info.Details)
	return info, true
}

// Err returns the error that ended the request, or nil. It keeps the error's
// chain for [errors.Is] and [errors.As], while its message is scrubbed of
// secrets like the rest of the snapshot.
func (e Event) Err() error {
	if e.fail == nil {
		return nil
	}
	return e.fail.err
}

// eventJSON is the wire form of an Event.
type eventJSON struct {
	ID       uuid.UUID         `json:"id"`
	Seq      uint64            `json:"seq"`
	Status   RequestStatus     `json:"status"`
	Attempt  int               `json:"attempt"`
	Tokens   Tokens            `json:"tokens"`
	Cost     Cost              `json:"cost,omitzero"`
	Cached   bool              `json:"cached,omitempty"`
	Timings  Timings           `json:"timings"`
	Durms    durationsJSON     `json:"durations_ms"`
	Deploy   string            `json:"deployment,omitempty"`
	Model    string            `json:"model,omitempty"`
	Method   string            `json:"method,omitempty"`
	URL      string            `json:"url,omitempty"`
	Header   http.Header       `json:"headers,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Response *responseJSON     `json:"response,omitempty"`
	Error    *ErrorInfo        `json:"error,omitempty"`
	Log      []Transition      `json:"log,omitempty"`
}

type durationsJSON struct {
	Queue  float64 `json:"queue"`
	Permit float64 `json:"permit"`
	Call   float64 `json:"call"`
	Total  float64 `json:"total"`
}

type responseJSON struct {
	StatusCode int             `json:"status_code,omitempty"`
	Header     http.Header     `json:"headers,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// MarshalJSON encodes the snapshot with its request description (without the
// payload), response and error. A response body that is not JSON is encoded
// as a JSON string.
func (e Event) MarshalJSON() ([]byte, error) {
	tm := e.Timings()
	out := eventJSON{
		ID: e.ID, Seq: e.Seq, Status: e.Status, Attempt: e.Attempt,
		Tokens: e.Tokens, Cost: e.Cost(), Cached: e.Cached(), Timings: tm,
		Deploy: e.Deployment, Model: e.Model,
		Durms: durationsJSON{
			Queue:  ms(tm.QueueWait()),
			Permit: ms(tm.PermitWait()),
			Call:   ms(tm.CallDuration()),
			Total:  ms(tm.Total()),
		},
		Log: e.Log(),
	}
	if e.req != nil {
		out.Method, out.URL, out.Header = e.req.endpoint.Method, e.req.endpoint.URL, e.req.endpoint.Header
		out.Metadata = e.req.metadata
	}
	if e.resp != nil {
		rj := &responseJSON{StatusCode: e.resp.StatusCode, Header: e.resp.Header}
		if len(e.resp.Body) > 0 {
			if json.Valid(e.resp.Body) {
				rj.Body = e.resp.Body
			} else {
				rj.Body, _ = json.Marshal(string(e.resp.Body))
			}
		}
		out.Response = rj
	}
	if e.fail != nil {
		out.Error = &e.fail.info
	}
	return json.Marshal(out)
}
