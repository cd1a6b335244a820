package messages

import "github.com/google/uuid"

// History is the snapshots of one request, in order, kept the way a
// request's handle keeps them: what does not change from one snapshot to
// the next (the ID, the request's description, the estimate, the log) is
// kept once, and each snapshot only by what it changes, so that a request
// waiting in a long queue costs little memory. The zero History is empty
// and ready to use. It is not safe for concurrent use.
type History struct {
	id        uuid.UUID
	estimated int
	req       *requestData
	log       []logEntry // the latest snapshot's: snapshot i's is its first i+1
	snaps     []snapshot
	routes    []route // the deployments and models the snapshots name, each once
}

// route is where a router sent an attempt (Event.Deployment, Event.Model).
type route struct{ deployment, model string }

// snapshot is what one Event holds of its own.
type snapshot struct {
	at        stages
	actual    int
	cost      *costState
	resp      *Response
	fail      *failure
	retry     *ErrorInfo
	seq       uint32
	attempt   int32
	status    RequestStatus
	hasActual bool
	route     uint8 // 1 + its index in routes; 0 for none
}

// queuedSnapshots is room for the snapshots of a request that has not left
// the queue yet (PENDING, QUEUED); typicalSnapshots for one that succeeds at
// once (and PROCESSING, CALLING, COMPLETED): a handle grows from the one
// to the other at most once for most requests.
const (
	queuedSnapshots  = 2
	typicalSnapshots = 5
)

// Append adds ev, the next snapshot of the request: all the snapshots of a
// History must be of one request, in the order of their Seq.
func (h *History) Append(ev Event) {
	if len(h.snaps) == 0 {
		h.id, h.estimated, h.req = ev.ID, ev.Tokens.Estimated, ev.req
		h.snaps = make([]snapshot, 0, queuedSnapshots)
	} else if len(h.snaps) == cap(h.snaps) {
		grown := make([]snapshot, len(h.snaps), max(typicalSnapshots, 2*cap(h.snaps)))
		copy(grown, h.snaps)
		h.snaps = grown
	}
	h.log = ev.log
	h.snaps = append(h.snaps, snapshot{
		route: h.routeOf(ev),
		at:    ev.at, actual: ev.Tokens.Actual, cost: ev.cost, resp: ev.resp, fail: ev.fail, retry: ev.retry,
		seq: uint32(ev.Seq), attempt: int32(ev.Attempt), status: ev.Status, hasActual: ev.Tokens.HasActual,
	})
}

// routeOf returns the route index of ev's deployment and model.
func (h *History) routeOf(ev Event) uint8 {
	if ev.Deployment == "" && ev.Model == "" {
		return 0
	}
	r := route{ev.Deployment, ev.Model}
	for i, known := range h.routes {
		if known == r {
			return uint8(i + 1)
		}
	}
	if len(h.routes) == 255 {
		// More deployments than any router has: keep the last one.
		h.routes[len(h.routes)-1] = r
		return uint8(len(h.routes))
	}
	h.routes = append(h.routes, r)
	return uint8(len(h.routes))
}

// Len is the number of snapshots.
func (h *History) Len() int { return len(h.snaps) }

// At returns snapshot i, from 0.
func (h *History) At(i int) Event {
	s := h.snaps[i]
	n := min(len(h.log), int(s.seq))
	var r route
	if s.route > 0 {
		r = h.routes[s.route-1]
	}
	return Event{
		Deployment: r.deployment, Model: r.model,
		ID: h.id, Seq: uint64(s.seq), Status: s.status, Attempt: int(s.attempt),
		Tokens: Tokens{Estimated: h.estimated, Actual: s.actual, HasActual: s.hasActual},
		at:     s.at, req: h.req, cost: s.cost, resp: s.resp, fail: s.fail, retry: s.retry,
		log: h.log[:n:n],
	}
}

// Last returns the latest snapshot; the History must not be empty.
func (h *History) Last() Event { return h.At(len(h.snaps) - 1) }
