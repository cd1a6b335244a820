package actors

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

// The limiter's decisions on made-up instants. permits is driven by a model
// of the queue's side of the protocol (one ask at a time for every waiting
// request's permit, grants spent on the requests in order, leftovers given
// back), and its wake-ups fire exactly when asked, so these tests need no
// slack.

var t0 = time.Unix(1_700_000_000, 0)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// permitsRun is permits under test with a model of the queue that asks it.
type permitsRun struct {
	t   *testing.T
	p   *permits
	now time.Time

	costs   []int64 // every request's tokens, by number (from 0)
	waiting []int   // the numbers of the requests waiting, in order
	started map[int]time.Duration
	denied  map[int]error
	held    allowance
	asked   bool
	grants  []permitsGranted // every grant, in order
	leases  []LeaseWanted    // every lease asked for, in order
	back    []heldLease      // every expired lease given back, in order
}

func newPermits(t *testing.T, lim Limits) *permitsRun {
	return &permitsRun{
		t: t, p: &permits{buckets: newBuckets(lim)}, now: t0,
		started: map[int]time.Duration{}, denied: map[int]error{},
	}
}

// newLeasedPermits is a limiter's permits with a broker: the local limits
// only say what a request's tokens cost, and how large one may be.
func newLeasedPermits(t *testing.T, lim Limits) *permitsRun {
	r := newPermits(t, lim)
	r.p.leased = true
	return r
}

// add makes requests costing costs tokens arrive now, and decides.
func (r *permitsRun) add(costs ...int64) *permitsRun {
	for _, c := range costs {
		r.waiting = append(r.waiting, len(r.costs))
		r.costs = append(r.costs, c)
	}
	r.step()
	return r
}

// cost is what request n's permit takes: its tokens only with a token limit.
func (r *permitsRun) cost(n int) int64 {
	if !r.p.buckets.TokensEnabled() {
		return 0
	}
	return r.costs[n]
}

// spend is the queue's spend: it starts the waiting requests whose permits
// it holds, asks for the rest, and gives back what it holds once nothing
// waits.
func (r *permitsRun) spend() {
	for len(r.waiting) > 0 {
		n := r.waiting[0]
		c := r.cost(n)
		if !r.held.unlimited {
			if r.held.requests < 1 || r.held.tokens < c {
				r.ask()
				return
			}
			r.held.requests--
			r.held.tokens -= c
		}
		r.waiting = r.waiting[1:]
		r.started[n] = r.now.Sub(t0)
	}
	if r.asked {
		r.p.withdraw(r.now)
		r.asked = false
	}
	r.returnHeld()
}

// ask is the queue's ask, for every waiting request beyond what it holds.
func (r *permitsRun) ask() {
	if r.asked {
		return
	}
	var tokens int64
	for _, n := range r.waiting {
		tokens += r.cost(n)
	}
	head := r.cost(r.waiting[0])
	r.asked = true
	r.p.ask(permitsWanted{
		requests:    max(int64(len(r.waiting))-r.held.requests, 1),
		tokens:      max(tokens-r.held.tokens, 0),
		minRequests: max(1-r.held.requests, 0),
		minTokens:   max(head-r.held.tokens, 0),
		headTokens:  head,
	}, r.now)
}

func (r *permitsRun) returnHeld() {
	if !r.held.unlimited && (r.held.requests > 0 || r.held.tokens > 0) {
		r.p.giveBack(&permitsReturned{requests: r.held.requests, tokens: r.held.tokens}, r.now)
	}
	r.held.requests, r.held.tokens = 0, 0
}

// revoke is the queue's answer to permitsRevoked, which the limiter sends
// when a pause begins or the limits change.
func (r *permitsRun) revoke() {
	r.held.unlimited = false
	r.returnHeld()
}

// step is the queue and the limiter exchanging messages at now until
// neither has anything to say; it returns when the limiter wants to wake.
func (r *permitsRun) step() time.Time {
	for {
		r.spend()
		d := r.p.decide(r.now)
		r.back = append(r.back, d.back...)
		if d.lease != nil {
			r.leases = append(r.leases, *d.lease)
		}
		switch {
		case d.grant != nil:
			r.asked = false
			r.grants = append(r.grants, *d.grant)
			if d.grant.unlimited {
				r.held.unlimited = true
			}
			r.held.requests += d.grant.requests
			r.held.tokens += d.grant.tokens
		case d.deny != nil:
			r.asked = false
			r.denied[r.waiting[0]] = d.deny
			r.waiting = r.waiting[1:]
		default:
			return d.wake
		}
	}
}

// wake moves the clock to the limiter's wake-up, which must be later than
// now; it reports false when the limiter does not want to wake.
func (r *permitsRun) wake(at time.Time) bool {
	r.t.Helper()
	if at.IsZero() {
		return false
	}
	if !at.After(r.now) {
		r.t.Fatalf("wake-up at %v, not after now %v", at.Sub(t0), r.now.Sub(t0))
	}
	r.now = at
	return true
}

// until lets the limiter wake as it asks up to t0+d, then moves the clock
// there.
func (r *permitsRun) until(d time.Duration) *permitsRun {
	r.t.Helper()
	end := t0.Add(d)
	for at := r.step(); !at.IsZero() && !at.After(end); at = r.step() {
		r.wake(at)
	}
	if end.After(r.now) {
		r.now = end
		r.step()
	}
	return r
}

// drain lets the limiter wake as it asks until it has nothing to wait for.
func (r *permitsRun) drain() *permitsRun {
	r.t.Helper()
	for r.wake(r.step()) {
	}
	return r
}

// starts are the instants the requests started, by number: -1 for one
// that never did.
func (r *permitsRun) starts() []time.Duration {
	out := make([]time.Duration, len(r.costs))
	for n := range out {
		out[n] = -1
		if d, ok := r.started[n]; ok {
			out[n] = d
		}
	}
	return out
}

func (r *permitsRun) wantStarts(want ...time.Duration) {
	r.t.Helper()
	if got := r.starts(); !slices.Equal(got, want) {
		r.t.Errorf("requests started at %v, want %v", got, want)
	}
}

func (r *permitsRun) wantGrants(want ...permitsGranted) {
	r.t.Helper()
	if !slices.Equal(r.grants, want) {
		r.t.Errorf("grants %+v, want %+v", r.grants, want)
	}
}

func nearly(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// tokensOnly are limits with a token limit and no request limit.
func tokensOnly(perSecond rate.Limit, burst int) Limits {
	return Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: perSecond, TokenBurst: burst}
}

// requestsOnly are limits with a request limit and no token limit.
func requestsOnly(perSecond rate.Limit, burst int) Limits {
	return Limits{RequestsPerSecond: perSecond, RequestBurst: burst}
}

func TestPermitsFollowTheBuckets(t *testing.T) {
	type batch struct {
		at    time.Duration
		costs []int64
	}
	tests := []struct {
		name    string
		lim     Limits
		batches []batch
		starts  []time.Duration
		grants  []permitsGranted
	}{
		{
			name:    "no limits: unlimited, granted once",
			lim:     noLimits,
			batches: []batch{{0, []int64{0, 0, 0}}, {ms(10), []int64{0, 0}}},
			starts:  []time.Duration{0, 0, 0, ms(10), ms(10)},
			grants:  []permitsGranted{{unlimited: true}},
		},
		{
			name:    "request bucket: the burst at once, then one per interval",
			lim:     requestsOnly(20, 3),
			batches: []batch{{0, []int64{0, 0, 0, 0, 0, 0}}},
			starts:  []time.Duration{0, 0, 0, ms(50), ms(100), ms(150)},
			grants:  []permitsGranted{{requests: 3}, {requests: 1}, {requests: 1}, {requests: 1}},
		},
		{
			name:    "request bucket: a quiet spell refills the burst",
			lim:     requestsOnly(20, 3),
			batches: []batch{{0, []int64{0, 0, 0}}, {ms(1000), []int64{0, 0, 0, 0}}},
			starts:  []time.Duration{0, 0, 0, ms(1000), ms(1000), ms(1000), ms(1050)},
			grants:  []permitsGranted{{requests: 3}, {requests: 3}, {requests: 1}},
		},
		{
			name:    "request bucket: a short spell refills part of it",
			lim:     requestsOnly(20, 3),
			batches: []batch{{0, []int64{0, 0, 0}}, {ms(100), []int64{0, 0, 0}}},
			starts:  []time.Duration{0, 0, 0, ms(100), ms(100), ms(150)},
			grants:  []permitsGranted{{requests: 3}, {requests: 2}, {requests: 1}},
		},
		{
			name:    "burst 1 paces from the first",
			lim:     requestsOnly(20, 1),
			batches: []batch{{0, []int64{0, 0, 0}}},
			starts:  []time.Duration{0, ms(50), ms(100)},
			grants:  []permitsGranted{{requests: 1}, {requests: 1}, {requests: 1}},
		},
		{
			name:    "token bucket: 100 at once, then 1000/s",
			lim:     tokensOnly(1000, 100),
			batches: []batch{{0, []int64{50, 50, 50, 50, 50, 50, 50}}},
			starts:  []time.Duration{0, 0, ms(50), ms(100), ms(150), ms(200), ms(250)},
			// Every request at once with the first tokens; then only
			// tokens, the head's share each time.
			grants: []permitsGranted{
				{requests: 7, tokens: 100}, {tokens: 50}, {tokens: 50}, {tokens: 50}, {tokens: 50}, {tokens: 50},
			},
		},
		{
			name:    "token bucket: a large head is not overtaken by a small one behind it",
			lim:     tokensOnly(200, 100),
			batches: []batch{{0, []int64{100, 100, 1}}},
			starts:  []time.Duration{0, ms(500), ms(505)},
			grants:  []permitsGranted{{requests: 3, tokens: 100}, {tokens: 100}, {tokens: 1}},
		},
		{
			name:    "token bucket: a small head goes before the large one behind it",
			lim:     tokensOnly(200, 100),
			batches: []batch{{0, []int64{100}}, {ms(10), []int64{2, 100}}},
			starts:  []time.Duration{0, ms(10), ms(510)},
			grants:  []permitsGranted{{requests: 1, tokens: 100}, {requests: 2, tokens: 2}, {tokens: 100}},
		},
		{
			name:    "both buckets: the later of the two",
			lim:     Limits{RequestsPerSecond: 10, RequestBurst: 1, TokensPerSecond: 100, TokenBurst: 50},
			batches: []batch{{0, []int64{50, 5, 50}}},
			starts:  []time.Duration{0, ms(100), ms(550)},
			grants:  []permitsGranted{{requests: 1, tokens: 50}, {requests: 1, tokens: 5}, {requests: 1, tokens: 50}},
		},
		{
			name:    "tokens cost nothing without a token limit",
			lim:     requestsOnly(10, 2),
			batches: []batch{{0, []int64{1e9, 1e9, 1e9}}},
			starts:  []time.Duration{0, 0, ms(100)},
			grants:  []permitsGranted{{requests: 2}, {requests: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newPermits(t, tt.lim)
			for _, b := range tt.batches {
				r.until(b.at).add(b.costs...)
			}
			r.drain()
			r.wantStarts(tt.starts...)
			r.wantGrants(tt.grants...)
			if len(r.waiting) != 0 || r.asked || r.p.want != nil || r.p.reserved {
				t.Errorf("after the run: waiting %v, ask out %v/%v, reserved %v", r.waiting, r.asked, r.p.want, r.p.reserved)
			}
		})
	}
}

// Over any window, a run never starts more than the buckets allow: the
// burst plus the refill, for requests and for tokens.
func TestPermitsNeverExceedTheBuckets(t *testing.T) {
	lim := Limits{RequestsPerSecond: 40, RequestBurst: 4, TokensPerSecond: 2000, TokenBurst: 300}
	r := newPermits(t, lim)
	costs := []int64{10, 290, 5, 5, 120, 60, 1, 300, 7, 80, 80, 80, 2, 150, 40}
	for i := range 6 {
		r.until(ms(70 * i)).add(costs...)
	}
	r.drain()
	starts := r.starts()
	for i, a := range starts {
		if a < 0 {
			t.Fatalf("request %d never started", i)
		}
		// Every window [a, b] beginning at a start.
		for _, b := range starts {
			if b < a {
				continue
			}
			var n, tokens float64
			for k, s := range starts {
				if s >= a && s <= b {
					n++
					tokens += float64(r.costs[k])
				}
			}
			secs := (b - a).Seconds()
			if maxN := float64(lim.RequestBurst) + secs*float64(lim.RequestsPerSecond); n > maxN+1e-9 {
				t.Fatalf("%v requests started in [%v, %v], more than %v", n, a, b, maxN)
			}
			if maxT := float64(lim.TokenBurst) + secs*float64(lim.TokensPerSecond); tokens > maxT+1e-9 {
				t.Fatalf("%v tokens started in [%v, %v], more than %v", tokens, a, b, maxT)
			}
		}
	}
	// In order, too.
	if !slices.IsSorted(starts) {
		t.Errorf("requests started out of order: %v", starts)
	}
}

func TestPermitsGrantInBatches(t *testing.T) {
	t.Run("what the request bucket holds, up to the ask", func(t *testing.T) {
		p := &permits{buckets: newBuckets(requestsOnly(10, 3))}
		p.ask(permitsWanted{requests: 5, minRequests: 1}, t0)
		if d := p.decide(t0); d.grant == nil || *d.grant != (permitsGranted{requests: 3}) || !d.wake.IsZero() {
			t.Fatalf("ask for 5 with 3 in the bucket: %+v, want a grant of 3 and no wake-up", d)
		}
		nearly(t, "requests left", p.buckets.RequestsAvailable(t0), 0)
		if d := p.decide(t0); d.grant != nil {
			t.Errorf("answered twice: %+v", d.grant)
		}

		// A second ask, for less than the bucket holds a second later.
		now := t0.Add(time.Second)
		p.ask(permitsWanted{requests: 2, minRequests: 1}, now)
		if d := p.decide(now); d.grant == nil || *d.grant != (permitsGranted{requests: 2}) {
			t.Fatalf("ask for 2 with 3 in the bucket: %+v, want a grant of 2", d)
		}
		nearly(t, "requests left", p.buckets.RequestsAvailable(now), 1)
	})

	t.Run("what the token bucket holds, up to the ask", func(t *testing.T) {
		p := &permits{buckets: newBuckets(tokensOnly(1000, 100))}
		p.ask(permitsWanted{requests: 5, tokens: 250, minRequests: 1, minTokens: 50, headTokens: 50}, t0)
		if d := p.decide(t0); d.grant == nil || *d.grant != (permitsGranted{requests: 5, tokens: 100}) {
			t.Fatalf("ask for 5 and 250 tokens with 100 in the bucket: %+v, want (5, 100)", d)
		}
		nearly(t, "tokens left", p.buckets.TokensAvailable(t0), 0)
	})

	t.Run("nothing before the head's need is there", func(t *testing.T) {
		p := &permits{buckets: newBuckets(tokensOnly(100, 100))}
		p.buckets.tokens.Take(t0, 70) // 30 left
		p.ask(permitsWanted{requests: 2, tokens: 60, minRequests: 1, minTokens: 40, headTokens: 40}, t0)
		d := p.decide(t0)
		if d.grant != nil || !d.wake.Equal(t0.Add(ms(100))) {
			t.Fatalf("head needing 40 with 30 in the bucket: %+v, want no grant and a wake-up at 100ms", d)
		}
		// Reserved: only the head's need goes at its time, not what the
		// bucket holds by then beyond it.
		if d := p.decide(t0.Add(ms(100))); d.grant == nil || *d.grant != (permitsGranted{requests: 1, tokens: 40}) {
			t.Fatalf("at the head's time: %+v, want (1, 40)", d)
		}
	})
}

// The head's need is reserved when not there yet: a charge for a call that
// used more than its estimate, coming while the head waits, pushes back the
// requests after it, not the head.
func TestPermitsReservedHeadKeepsItsTime(t *testing.T) {
	r := newPermits(t, tokensOnly(100, 100))
	r.add(100, 100, 100) // the first empties the bucket; the second is due at 1 s
	r.until(ms(500))
	r.p.reconcile(50, r.now)
	r.drain()
	// Without the reservation the second would wait for the charge too, to
	// 1.5 s; with it, the third comes 1 s after the second plus the 0.5 s
	// the charge costs.
	r.wantStarts(0, ms(1000), ms(2500))
}

func TestPermitsUnlimitedWithoutLimits(t *testing.T) {
	p := &permits{buckets: newBuckets(noLimits)}
	if !p.unlimited() {
		t.Fatal("no limits: not unlimited")
	}
	p.ask(permitsWanted{requests: 3, minRequests: 1}, t0)
	if d := p.decide(t0); d.grant == nil || !d.grant.unlimited {
		t.Fatalf("no limits: %+v, want an unlimited grant", d)
	}
	for name, lim := range map[string]Limits{
		"a request limit": requestsOnly(1000, 1000),
		"a token limit":   tokensOnly(1e6, 1e6),
	} {
		p := &permits{buckets: newBuckets(lim)}
		p.ask(permitsWanted{requests: 3, minRequests: 1}, t0)
		if d := p.decide(t0); p.unlimited() || d.grant == nil || d.grant.unlimited || d.grant.requests != 3 {
			t.Errorf("with %s: %+v, want a grant of 3", name, d)
		}
	}
	leased := &permits{buckets: newBuckets(noLimits), leased: true}
	if leased.unlimited() {
		t.Error("with a broker and no local limit: unlimited; the leases are the limit")
	}
}

func TestPermitsPause(t *testing.T) {
	r := newPermits(t, requestsOnly(10, 1))
	r.add(0, 0, 0) // the first goes; the second is reserved, due at 100 ms
	if !r.p.reserved {
		t.Fatal("the head is not reserved")
	}
	if !r.p.pause(t0.Add(ms(50)), r.now) || !r.p.pause(t0.Add(ms(400)), r.now) {
		t.Fatal("a later pause did not extend the first")
	}
	if r.p.pause(t0.Add(ms(200)), r.now) {
		t.Error("an earlier pause end extended the pause")
	}
	r.revoke()
	if r.p.reserved {
		t.Error("the head kept its reservation through the pause")
	}
	if got := r.p.buckets.PausedUntil(); !got.Equal(t0.Add(ms(400))) {
		t.Errorf("PausedUntil = %v, want 400ms", got.Sub(t0))
	}
	r.until(ms(399))
	r.wantStarts(0, -1, -1)
	if got := r.p.buckets.PausedUntil(); !got.Equal(t0.Add(ms(400))) {
		t.Errorf("PausedUntil = %v before the pause's end, want 400ms", got.Sub(t0))
	}
	r.drain()
	// The head's reservation was given back and the bucket refilled to its
	// burst: one goes at the pause's end, the next an interval later. Had
	// the reservation been kept, both would go at 400 ms, one over the
	// burst.
	r.wantStarts(0, ms(400), ms(500))
	if p := r.p.buckets.PausedUntil(); !p.IsZero() {
		t.Errorf("PausedUntil = %v once the pause ended, want zero", p.Sub(t0))
	}
}

func TestPermitsPauseWithoutLimits(t *testing.T) {
	r := newPermits(t, noLimits)
	r.p.pause(t0.Add(ms(300)), t0)
	r.add(0, 0)
	r.until(ms(299))
	r.wantStarts(-1, -1)
	r.drain()
	r.wantStarts(ms(300), ms(300))
	r.wantGrants(permitsGranted{unlimited: true})
}

func TestPermitsApply(t *testing.T) {
	t.Run("replans the head at the new rate", func(t *testing.T) {
		r := newPermits(t, requestsOnly(0.1, 1))
		r.add(0, 0) // the second is due at 10 s at the old rate
		r.p.apply(requestsOnly(10, 1), r.now)
		r.revoke()
		r.drain()
		// At 10/s the bucket, emptied at 0, holds one again at 100 ms.
		r.wantStarts(0, ms(100))
	})

	t.Run("a limit turned on starts empty", func(t *testing.T) {
		// Without a request limit the runtime gives the tree no request
		// burst either: the bucket turned on starts with nothing.
		r := newPermits(t, Limits{RequestsPerSecond: rate.Inf})
		r.add(0)
		r.p.apply(requestsOnly(10, 5), r.now)
		r.revoke()
		r.add(0, 0)
		r.drain()
		r.wantStarts(0, ms(100), ms(200))
		r.wantGrants(permitsGranted{unlimited: true}, permitsGranted{requests: 1}, permitsGranted{requests: 1})
	})

	t.Run("a limit turned off grants unlimited", func(t *testing.T) {
		r := newPermits(t, requestsOnly(0.1, 1))
		r.add(0, 0)
		r.p.apply(noLimits, r.now)
		r.revoke()
		r.drain()
		r.wantStarts(0, 0)
		r.wantGrants(permitsGranted{requests: 1}, permitsGranted{unlimited: true})
	})
}

func TestPermitsDenyAHeadOverALoweredBurst(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: 1, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100})
	r.p.apply(Limits{RequestsPerSecond: 1, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 50}, t0)
	r.add(80, 50)
	r.drain()
	var tle *messages.TokenLimitError
	if err := r.denied[0]; !errors.As(err, &tle) || tle.Tokens != 80 || tle.Burst != 50 || !errors.Is(err, messages.ErrTokensExceedBurst) {
		t.Fatalf("request 0: %v, want a TokenLimitError{80, 50}", err)
	}
	if len(r.denied) != 1 {
		t.Errorf("denied %v, want only request 0", r.denied)
	}
	// The denied head took nothing: the next gets the request burst at once.
	r.wantStarts(-1, 0)

	// The whole cost of the head decides, not what it still needs.
	p := &permits{buckets: newBuckets(tokensOnly(1000, 50))}
	p.ask(permitsWanted{requests: 1, tokens: 10, minRequests: 1, minTokens: 10, headTokens: 60}, t0)
	if d := p.decide(t0); d.deny == nil || d.grant != nil {
		t.Errorf("head of 60 tokens, 50 held by the queue, burst 50: %+v, want denied", d)
	}
	if d := p.decide(t0); d.deny != nil || d.grant != nil || p.want != nil {
		t.Errorf("after the denial: %+v, want the ask dropped", d)
	}
	nearly(t, "tokens after the denial", p.buckets.TokensAvailable(t0), 50)

	// Without a token limit, nothing is too large.
	p = &permits{buckets: newBuckets(requestsOnly(1, 1))}
	p.ask(permitsWanted{requests: 1, tokens: 1e9, minRequests: 1, minTokens: 1e9, headTokens: 1e9}, t0)
	if d := p.decide(t0); d.deny != nil || d.grant == nil || d.grant.tokens != 0 {
		t.Errorf("no token limit: %+v, want a grant costing no tokens", d)
	}
}

func TestPermitsReconcile(t *testing.T) {
	p := &permits{buckets: newBuckets(tokensOnly(1, 100))}
	b := p.buckets
	p.reconcile(0, t0)
	p.reconcile(40, t0)
	nearly(t, "after charging 40 of 100: available", b.TokensAvailable(t0), 60)
	p.reconcile(-30, t0)
	nearly(t, "after refunding 30: credit", b.tokens.Credit(t0), 30)
	nearly(t, "after refunding 30: available", b.TokensAvailable(t0), 90)
	p.reconcile(-1000, t0) // capped by the room in the bucket
	nearly(t, "after refunding more than the room: available", b.TokensAvailable(t0), 100)
	// A charge spends the credit first, then the bucket, in pieces no
	// larger than the burst.
	p.reconcile(350, t0)
	nearly(t, "after a charge larger than the credit: credit", b.tokens.Credit(t0), 0)
	nearly(t, "after charging 350 with 100 available: available", b.TokensAvailable(t0), -250)

	// Without a token limit there is nothing to reconcile.
	off := &permits{buckets: newBuckets(requestsOnly(1, 1))}
	off.reconcile(100, t0)
	off.reconcile(-100, t0)
	if got := off.buckets.TokensAvailable(t0); got != -1 {
		t.Errorf("no token limit: TokensAvailable = %v, want -1", got)
	}
}

func TestPermitsUseCredit(t *testing.T) {
	r := newPermits(t, tokensOnly(1, 100))
	r.add(100) // empties the bucket
	r.p.reconcile(-60, r.now)
	r.add(50) // paid by the credit: at once
	r.wantStarts(0, 0)
	nearly(t, "credit after using 50 of 60", r.p.buckets.tokens.Credit(r.now), 10)
}

// A refund never lifts the budget above the burst: while paused the bucket
// refills to its capacity, and the provider's bucket holds no more than
// that either, so the refund cannot come on top.
func TestPermitsRefundNeverLiftsTheBudgetAboveTheBurst(t *testing.T) {
	r := newPermits(t, tokensOnly(1000, 100))
	r.add(100)                 // empties the bucket
	r.p.reconcile(-100, r.now) // the call used none of it
	r.p.pause(t0.Add(ms(200)), r.now)
	r.add(100, 100)
	r.drain()
	r.wantStarts(0, ms(200), ms(300))
}

func TestPermitsRefundLetsAHeadNotYetDueGoSooner(t *testing.T) {
	r := newPermits(t, tokensOnly(10, 100))
	r.add(100, 100) // the first empties the bucket; the second is due in 10 s
	r.until(ms(10))
	r.p.reconcile(-100, r.now)
	r.until(ms(10))
	r.wantStarts(0, ms(10))
}

// A refund that arrives when the head's permit is due, before the tick that
// grants it, must not plan the head again: its reservation can no longer be
// given back, and a second one would push the head, and every permit after
// it, one interval later. At 20 requests a second a run lost a slot to each
// such refund.
func TestPermitsRefundAtTheHeadsDueTime(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: 20, RequestBurst: 1, TokensPerSecond: 2500, TokenBurst: 150_000})
	r.costs = []int64{94, 94, 94}
	r.waiting = []int{0, 1, 2}
	if wake := r.step(); !wake.Equal(t0.Add(ms(50))) {
		t.Fatalf("second permit due at %v, want 50ms", wake.Sub(t0))
	}
	// The first call's refund arrives a millisecond after the second
	// permit fell due, before the late tick that grants it.
	r.now = t0.Add(ms(51))
	r.p.reconcile(-4, r.now)
	r.drain()
	r.wantStarts(0, ms(51), ms(100))
}

func TestPermitsWithdraw(t *testing.T) {
	t.Run("gives back the head's reservation", func(t *testing.T) {
		p := &permits{buckets: newBuckets(requestsOnly(1, 1))}
		p.ask(permitsWanted{requests: 2, minRequests: 1}, t0)
		p.decide(t0) // one granted
		p.ask(permitsWanted{requests: 1, minRequests: 1}, t0)
		if d := p.decide(t0); !d.wake.Equal(t0.Add(time.Second)) {
			t.Fatalf("reserved head due at %v, want 1s", d.wake.Sub(t0))
		}
		p.withdraw(t0)
		if d := p.decide(t0); d.grant != nil || !d.wake.IsZero() || p.reserved {
			t.Fatalf("after the withdrawal: %+v, reserved %v; want nothing", d, p.reserved)
		}
		// Asked again, the head is due when it was: the withdrawn
		// reservation holds nothing. Kept, it would push this one to 2 s.
		now := t0.Add(ms(300))
		p.ask(permitsWanted{requests: 1, minRequests: 1}, now)
		if d := p.decide(now); !d.wake.Equal(t0.Add(time.Second)) {
			t.Errorf("asked again: due at %v, want 1s", d.wake.Sub(t0))
		}
	})

	t.Run("gives back the credit the reservation used", func(t *testing.T) {
		r := newPermits(t, tokensOnly(1, 100))
		r.add(100) // empties the bucket
		r.p.reconcile(-30, r.now)
		r.add(50) // 30 from the credit, 20 from the bucket: due in 20 s
		if !r.p.reserved {
			t.Fatal("the head is not reserved")
		}
		nearly(t, "credit while reserved", r.p.buckets.tokens.Credit(r.now), 0)
		r.waiting = nil // cancelled: the queue withdraws its ask
		r.step()
		nearly(t, "credit after the withdrawal", r.p.buckets.tokens.Credit(r.now), 30)
	})

	t.Run("a new ask replaces the one out", func(t *testing.T) {
		p := &permits{buckets: newBuckets(tokensOnly(1, 100))}
		p.buckets.tokens.Take(t0, 100)
		p.ask(permitsWanted{requests: 1, tokens: 50, minRequests: 1, minTokens: 50, headTokens: 50}, t0)
		if d := p.decide(t0); !d.wake.Equal(t0.Add(50 * time.Second)) {
			t.Fatalf("head of 50 due at %v, want 50s", d.wake.Sub(t0))
		}
		p.ask(permitsWanted{requests: 1, tokens: 10, minRequests: 1, minTokens: 10, headTokens: 10}, t0)
		if d := p.decide(t0); !d.wake.Equal(t0.Add(10 * time.Second)) {
			t.Errorf("head of 10 asked in its place due at %v, want 10s", d.wake.Sub(t0))
		}
	})
}

func TestPermitsGiveBack(t *testing.T) {
	t.Run("local: refunded to the buckets", func(t *testing.T) {
		p := &permits{buckets: newBuckets(Limits{RequestsPerSecond: 1, RequestBurst: 3, TokensPerSecond: 1, TokenBurst: 100})}
		p.ask(permitsWanted{requests: 3, tokens: 90, minRequests: 1, minTokens: 30, headTokens: 30}, t0)
		if d := p.decide(t0); d.grant == nil || *d.grant != (permitsGranted{requests: 3, tokens: 90}) {
			t.Fatalf("grant %+v, want (3, 90)", d.grant)
		}
		p.giveBack(&permitsReturned{requests: 2, tokens: 60}, t0)
		nearly(t, "requests after the return", p.buckets.RequestsAvailable(t0), 2)
		nearly(t, "tokens after the return", p.buckets.TokensAvailable(t0), 70)
		p.ask(permitsWanted{requests: 2, tokens: 60, minRequests: 1, minTokens: 30, headTokens: 30}, t0)
		if d := p.decide(t0); d.grant == nil || *d.grant != (permitsGranted{requests: 2, tokens: 60}) {
			t.Errorf("asked again for what was returned: %+v, want (2, 60) at once", d)
		}
	})

	t.Run("leased: put back into the pool", func(t *testing.T) {
		p := &permits{buckets: newBuckets(tokensOnly(1000, 100)), leased: true}
		p.pool = *poolOf(heldLease{1, 1, 10, t0.Add(time.Minute)}, heldLease{2, 1, 10, t0.Add(time.Hour)})
		p.buckets.tokens.Take(t0, 100) // room for a refund, which must not come
		p.giveBack(&permitsReturned{requests: 3, tokens: 40}, t0)
		checkPool(t, &p.pool, heldLease{1, 1, 10, t0.Add(time.Minute)}, heldLease{2, 4, 50, t0.Add(time.Hour)})
		nearly(t, "local tokens after a return to the pool", p.buckets.TokensAvailable(t0), 0)
		nearly(t, "local credit after a return to the pool", p.buckets.tokens.Credit(t0), 0)
	})
}

func TestPermitsLeased(t *testing.T) {
	exp := t0.Add(time.Minute)

	t.Run("grants from the pool, up to the ask", func(t *testing.T) {
		r := newLeasedPermits(t, tokenLimits)
		r.p.pool = *poolOf(heldLease{1, 5, 100, exp})
		r.add(20, 20, 20)
		r.wantStarts(0, 0, 0)
		r.wantGrants(permitsGranted{requests: 3, tokens: 60})
		if req, tok := r.p.pool.totals(); req != 2 || tok != 40 {
			t.Errorf("pool holds (%d, %d), want (2, 40)", req, tok)
		}
		if len(r.leases) != 0 {
			t.Errorf("asked for leases %+v with the pool stocked", r.leases)
		}
	})

	t.Run("asks the broker for the shortfall, one lease at a time", func(t *testing.T) {
		r := newLeasedPermits(t, tokenLimits)
		r.p.pool = *poolOf(heldLease{1, 1, 10, exp})
		r.add(30, 20, 10)
		// The pool holds 1 request and 10 tokens: the head needs 30.
		want := LeaseWanted{Requests: 2, Tokens: 50, MinTokens: 20}
		if !slices.Equal(r.leases, []LeaseWanted{want}) {
			t.Fatalf("leases asked %+v, want %+v", r.leases, want)
		}
		r.wantStarts(-1, -1, -1)
		// While it is out no other is asked for, whatever the queue asks:
		// here it withdraws its ask, two of its requests cancelled, and
		// asks for the head alone.
		r.p.withdraw(r.now)
		r.asked, r.waiting = false, r.waiting[:1]
		r.step()
		if len(r.leases) != 1 {
			t.Fatalf("leases asked %+v, want one out at a time", r.leases)
		}
		// The broker gives less than asked, enough for the head.
		r.p.wanted = false
		r.p.pool.add(&LeaseGranted{ID: 2, Requests: 1, Tokens: 25, Expires: exp})
		r.step()
		r.wantStarts(0, -1, -1)
		r.wantGrants(permitsGranted{requests: 1, tokens: 30})
		// What is left (1, 5) serves the next head; the one behind it
		// needs a new lease.
		r.add(5, 40)
		r.wantStarts(0, -1, -1, 0, -1)
		if got := r.leases[1:]; !slices.Equal(got, []LeaseWanted{{Requests: 1, Tokens: 40, MinTokens: 40}}) {
			t.Errorf("next lease asked %+v, want (1, 40, 40)", got)
		}
	})

	t.Run("no local token limit: tokens cost nothing", func(t *testing.T) {
		r := newLeasedPermits(t, noLimits)
		r.add(500, 500)
		if !slices.Equal(r.leases, []LeaseWanted{{Requests: 2}}) {
			t.Fatalf("leases asked %+v, want two requests and no tokens", r.leases)
		}
		r.p.wanted = false
		r.p.pool.add(&LeaseGranted{ID: 1, Requests: 2, Expires: exp})
		r.step()
		r.wantStarts(0, 0)
	})

	t.Run("gives back what expires unspent", func(t *testing.T) {
		r := newLeasedPermits(t, tokenLimits)
		r.p.pool = *poolOf(heldLease{1, 5, 100, t0.Add(ms(200))}, heldLease{2, 0, 0, t0.Add(ms(100))}, heldLease{3, 1, 1, t0.Add(ms(300))})
		r.add(30)
		r.drain()
		// The spent lease 2 is dropped at its expiry, not given back.
		want := []heldLease{{1, 4, 70, t0.Add(ms(200))}, {3, 1, 1, t0.Add(ms(300))}}
		if !slices.Equal(r.back, want) {
			t.Errorf("given back %+v, want %+v", r.back, want)
		}
		if r.now != t0.Add(ms(300)) || len(r.p.pool.leases) != 0 {
			t.Errorf("at %v the pool holds %+v, want nothing at 300ms", r.now.Sub(t0), r.p.pool.leases)
		}
	})

	t.Run("a pause holds the pool's grants back", func(t *testing.T) {
		r := newLeasedPermits(t, tokenLimits)
		r.p.pool = *poolOf(heldLease{1, 5, 100, exp})
		r.p.pause(t0.Add(ms(250)), t0)
		r.add(10)
		r.until(ms(249))
		r.wantStarts(-1)
		if len(r.leases) != 0 {
			t.Errorf("asked for leases %+v while paused", r.leases)
		}
		r.until(ms(250))
		r.wantStarts(ms(250))
	})

	t.Run("denies a head over the burst", func(t *testing.T) {
		r := newLeasedPermits(t, tokensOnly(1000, 50))
		r.add(80, 50)
		var tle *messages.TokenLimitError
		if !errors.As(r.denied[0], &tle) || tle.Tokens != 80 || tle.Burst != 50 {
			t.Errorf("request 0: %v, want TokenLimitError{80, 50}", r.denied[0])
		}
		if !slices.Equal(r.leases, []LeaseWanted{{Requests: 1, Tokens: 50, MinTokens: 50}}) {
			t.Errorf("leases asked %+v, want one for request 1 alone", r.leases)
		}
	})
}
