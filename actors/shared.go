package actors

import (
	"sync/atomic"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// ReturnLeases asks a limiter with a broker to give back at once every
// lease it holds, as its executor stops gracefully after its last request:
// left alone they would hold the shared budget until they expire. The
// limiter sends a LeaseUnused for each, then passes ReturnLeases on to the
// broker, which must close Done once the service has the leases back, or
// once it stops waiting for the service. Grants that arrive later are
// given back as they come.
type ReturnLeases struct {
	Done chan struct{}
}

// BrokerState is a broker's standing in the shared budget. The broker
// sends it to its parent, the supervisor, when it starts and whenever it
// changes; Stats reports it.
type BrokerState struct {
	Joined bool
	// Since is when the broker joined or fell back.
	Since time.Time
	// Reason says why it fell back; "" while joined.
	Reason             string
	Fallbacks, Rejoins int64
}

// sharedFigures are the shared budget's figures of one executor: the
// broker's standing and the limiter's leases. The supervisor and the
// limiter write them; Stats reads them from any goroutine.
type sharedFigures struct {
	on                                         atomic.Bool
	state                                      atomic.Pointer[BrokerState]
	heldRequests, heldTokens                   atomic.Int64
	leases, leasedRequests, leasedTokens       atomic.Int64
	returned, returnedRequests, returnedTokens atomic.Int64
}

// start marks the executor a member of a shared budget, joined at now
// until its broker says otherwise.
func (f *sharedFigures) start(now time.Time) {
	f.state.Store(&BrokerState{Joined: true, Since: now})
	f.on.Store(true)
}

func (f *sharedFigures) received(g *LeaseGranted) {
	f.leases.Add(1)
	f.leasedRequests.Add(g.Requests)
	f.leasedTokens.Add(g.Tokens)
}

func (f *sharedFigures) gaveBack(requests, tokens int64) {
	f.returned.Add(1)
	f.returnedRequests.Add(requests)
	f.returnedTokens.Add(tokens)
}

func (f *sharedFigures) held(requests, tokens int64) {
	f.heldRequests.Store(requests)
	f.heldTokens.Store(tokens)
}

// stats returns the figures, and whether the executor has a shared budget.
func (f *sharedFigures) stats() (messages.SharedStats, bool) {
	if !f.on.Load() {
		return messages.SharedStats{}, false
	}
	st := f.state.Load()
	s := messages.SharedStats{
		Mode: messages.SharedJoined, Since: st.Since, Reason: st.Reason,
		Fallbacks: st.Fallbacks, Rejoins: st.Rejoins,
		HeldRequests: f.heldRequests.Load(), HeldTokens: f.heldTokens.Load(),
		Leases: f.leases.Load(), LeasedRequests: f.leasedRequests.Load(), LeasedTokens: f.leasedTokens.Load(),
		Returned: f.returned.Load(), ReturnedRequests: f.returnedRequests.Load(), ReturnedTokens: f.returnedTokens.Load(),
	}
	if !st.Joined {
		s.Mode = messages.SharedFallback
	}
	return s, true
}
