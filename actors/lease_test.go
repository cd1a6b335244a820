package actors

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/messages"
)

// --- leasePool ---

func poolOf(leases ...heldLease) *leasePool {
	p := &leasePool{}
	for _, l := range leases {
		p.add(&LeaseGranted{ID: l.id, Requests: l.requests, Tokens: l.tokens, Expires: l.expires})
	}
	return p
}

func checkPool(t *testing.T, p *leasePool, want ...heldLease) {
	t.Helper()
	if !slices.Equal(p.leases, want) {
		t.Fatalf("pool holds %+v, want %+v", p.leases, want)
	}
}

func checkTotals(t *testing.T, p *leasePool, requests, tokens int64) {
	t.Helper()
	if r, tk := p.totals(); r != requests || tk != tokens {
		t.Fatalf("totals = (%d, %d), want (%d, %d)", r, tk, requests, tokens)
	}
}

func TestLeasePoolTakeN(t *testing.T) {
	exp := t0.Add(time.Minute)
	p := &leasePool{}
	checkTotals(t, p, 0, 0)
	p.takeN(0, 0) // nothing to take from nothing
	checkPool(t, p)

	p = poolOf(heldLease{1, 2, 10, exp}, heldLease{2, 2, 10, exp.Add(time.Second)})
	checkTotals(t, p, 4, 20)
	// The oldest lease first, requests and tokens each on their own.
	p.takeN(1, 5)
	checkPool(t, p, heldLease{1, 1, 5, exp}, heldLease{2, 2, 10, exp.Add(time.Second)})
	// Spanning two leases; the first, spent, is dropped.
	p.takeN(2, 8)
	checkPool(t, p, heldLease{2, 1, 7, exp.Add(time.Second)})
	checkTotals(t, p, 1, 7)
	// Tokens but no requests left: kept, to pay for requests of a later
	// lease.
	p.takeN(1, 0)
	checkPool(t, p, heldLease{2, 0, 7, exp.Add(time.Second)})
	p.takeN(0, 7)
	checkPool(t, p)
}

func TestLeasePoolKeepsTokensWithoutRequests(t *testing.T) {
	exp := t0.Add(time.Minute)
	// A lease with tokens but no requests left still pays for requests of
	// later leases.
	p := poolOf(heldLease{1, 1, 100, exp}, heldLease{2, 1, 0, exp}, heldLease{3, 1, 0, exp})
	p.takeN(1, 10)
	checkPool(t, p, heldLease{1, 0, 90, exp}, heldLease{2, 1, 0, exp}, heldLease{3, 1, 0, exp})
	p.takeN(1, 10)
	// Lease 2 is spent but behind lease 1, which still has tokens: kept in
	// its place.
	checkPool(t, p, heldLease{1, 0, 80, exp}, heldLease{2, 0, 0, exp}, heldLease{3, 1, 0, exp})
	p.takeN(1, 80)
	// The request from lease 3, the tokens from lease 1: all three spent,
	// all dropped.
	checkPool(t, p)
	checkTotals(t, p, 0, 0)
}

func TestLeasePoolPutBack(t *testing.T) {
	p := &leasePool{}
	p.putBack(3, 30) // no lease to put them in: dropped, counted spent
	checkPool(t, p)

	p = poolOf(heldLease{1, 1, 10, t0.Add(2 * time.Second)}, heldLease{2, 0, 0, t0.Add(5 * time.Second)}, heldLease{3, 1, 1, t0.Add(3 * time.Second)})
	// To the lease with the most time left, spent or not.
	p.putBack(2, 20)
	checkPool(t, p, heldLease{1, 1, 10, t0.Add(2 * time.Second)}, heldLease{2, 2, 20, t0.Add(5 * time.Second)}, heldLease{3, 1, 1, t0.Add(3 * time.Second)})
	checkTotals(t, p, 4, 31)
}

func TestLeasePoolExpire(t *testing.T) {
	p := poolOf(
		heldLease{1, 2, 10, t0.Add(1 * time.Second)},
		heldLease{2, 0, 0, t0.Add(2 * time.Second)}, // spent: dropped, not returned
		heldLease{3, 1, 5, t0.Add(5 * time.Second)},
		heldLease{4, 0, 7, t0.Add(3 * time.Second)}, // tokens only: returned
	)
	if gone := p.expire(t0); len(gone) != 0 {
		t.Fatalf("expire before any expiry returned %+v", gone)
	}
	if at := p.earliest(); !at.Equal(t0.Add(time.Second)) {
		t.Errorf("earliest = %v, want 1s", at.Sub(t0))
	}
	// At exactly its expiry a lease is gone.
	gone := p.expire(t0.Add(3 * time.Second))
	want := []heldLease{{1, 2, 10, t0.Add(1 * time.Second)}, {4, 0, 7, t0.Add(3 * time.Second)}}
	if !slices.Equal(gone, want) {
		t.Fatalf("expire at 3s = %+v, want %+v (oldest first, spent leases left out)", gone, want)
	}
	checkPool(t, p, heldLease{3, 1, 5, t0.Add(5 * time.Second)})
	if at := p.earliest(); !at.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("earliest = %v, want 5s", at.Sub(t0))
	}
	checkTotals(t, p, 1, 5)
	if gone := p.expire(t0.Add(time.Hour)); len(gone) != 1 || gone[0].id != 3 {
		t.Errorf("expire of the last = %+v", gone)
	}
	checkPool(t, p)
	if at := p.earliest(); !at.IsZero() {
		t.Errorf("earliest of an empty pool = %v, want the zero time", at)
	}
}

// --- the limiter with a broker ---

// leaseFixture is a limiter whose permits go to a probe (the queue) and
// whose lease broker is another probe, which the test answers. Its tests
// run in a bubble of fake time.
type leaseFixture struct {
	*limiterFixture
	broker *probe
}

func startLeased(t *testing.T, lim Limits) *leaseFixture {
	t.Helper()
	sys := newSystem(t)
	f := &leaseFixture{
		limiterFixture: &limiterFixture{sys: sys, budget: newBuckets(lim), queue: spawnProbe(t, sys)},
		broker:         spawnProbe(t, sys),
	}
	f.pid = sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return newLimiter(f.budget, f.queue.pid, f.broker.pid)
	}))
	stopActor(t, sys, f.pid)
	return f
}

// wanted expects the broker's next message to be want, sent by the limiter.
func (f *leaseFixture) wanted(t *testing.T, want LeaseWanted) {
	t.Helper()
	w, r := expect[*LeaseWanted](t, f.broker)
	if *w != want {
		t.Fatalf("broker got %+v, want %+v", *w, want)
	}
	if !r.sender.Equal(f.pid) {
		t.Fatalf("LeaseWanted from %v, want the limiter %v", r.sender, f.pid)
	}
}

// unused expects the broker's next message to be want.
func (f *leaseFixture) unused(t *testing.T, want LeaseUnused) time.Time {
	t.Helper()
	u, r := expect[*LeaseUnused](t, f.broker)
	if *u != want {
		t.Fatalf("broker got %+v, want %+v", *u, want)
	}
	return r.at
}

// lease makes the broker answer the limiter with g.
func (f *leaseFixture) lease(g LeaseGranted) {
	f.broker.request(f.sys, f.pid, &g)
}

// grant expects the limiter's next message to the queue to be want.
func (f *leaseFixture) grant(t *testing.T, want permitsGranted) time.Time {
	t.Helper()
	g, at := f.granted(t)
	if g != want {
		t.Fatalf("queue granted %+v, want %+v", g, want)
	}
	return at
}

// stockPool has the limiter ask for a lease of n requests and tokens
// tokens for a minute and spends one request of it.
func (f *leaseFixture) stockPool(t *testing.T, id uint64, n, tokens int64) {
	t.Helper()
	f.want(1, 0)
	f.wanted(t, LeaseWanted{Requests: 1})
	f.lease(LeaseGranted{ID: id, Requests: n, Tokens: tokens, Expires: time.Now().Add(time.Minute)})
	f.grant(t, permitsGranted{requests: 1})
}

var tokenLimits = tokensOnly(1000, 100)

func TestLeasedLimiterGrantsOnlyFromLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The local budget would admit anything: every permit must still
		// come from a lease.
		f := startLeased(t, noLimits)
		exp := time.Now().Add(time.Minute)
		f.want(3, 0)
		f.wanted(t, LeaseWanted{Requests: 3})
		quiet(t, f.queue, f.broker)
		// One LeaseWanted out at a time, whatever the queue asks meanwhile.
		f.send(&permitsWithdrawn{})
		f.want(2, 0)
		quiet(t, f.queue, f.broker)

		f.lease(LeaseGranted{ID: 1, Requests: 1, Expires: exp})
		f.grant(t, permitsGranted{requests: 1})
		f.want(1, 0)
		f.wanted(t, LeaseWanted{Requests: 1})
		f.lease(LeaseGranted{ID: 2, Requests: 5, Expires: exp})
		f.grant(t, permitsGranted{requests: 1})
		// The pool holds 4: an ask for them goes at once, without the broker.
		f.want(4, 0)
		f.grant(t, permitsGranted{requests: 4})
		quiet(t, f.queue, f.broker)
		f.want(1, 0)
		f.wanted(t, LeaseWanted{Requests: 1})
	})
}

// A lease asked for an ask the queue withdrew is kept for later: nothing
// is granted, nothing more asked for.
func TestLeasedLimiterWithdrawnAsk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLeased(t, noLimits)
		f.want(2, 0)
		f.wanted(t, LeaseWanted{Requests: 2})
		f.send(&permitsWithdrawn{})
		f.lease(LeaseGranted{ID: 1, Requests: 2, Expires: time.Now().Add(time.Minute)})
		quiet(t, f.queue, f.broker)
		f.want(2, 0)
		f.grant(t, permitsGranted{requests: 2})
		quiet(t, f.queue, f.broker)
	})
}

func TestLeasedLimiterWantsWhatThePoolLacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLeased(t, tokenLimits)
		exp := time.Now().Add(time.Minute)
		// Requests of 30, 50 and 40 tokens.
		f.send(&permitsWanted{requests: 3, tokens: 120, minRequests: 1, minTokens: 30, headTokens: 30})
		f.wanted(t, LeaseWanted{Requests: 3, Tokens: 120, MinTokens: 30})
		// Enough for the head and a part of the rest: granted, all of it.
		f.lease(LeaseGranted{ID: 1, Requests: 1, Tokens: 60, Expires: exp})
		f.grant(t, permitsGranted{requests: 1, tokens: 60})
		// The queue spent 30 on the head and holds 30 towards the next 50.
		f.send(&permitsWanted{requests: 2, tokens: 60, minRequests: 1, minTokens: 20, headTokens: 50})
		f.wanted(t, LeaseWanted{Requests: 2, Tokens: 60, MinTokens: 20})
		quiet(t, f.queue)
		// Less than the head needs: the limiter keeps it and asks for the
		// rest.
		f.lease(LeaseGranted{ID: 2, Requests: 1, Tokens: 10, Expires: exp})
		f.wanted(t, LeaseWanted{Requests: 1, Tokens: 50, MinTokens: 10})
		quiet(t, f.queue)
		f.lease(LeaseGranted{ID: 3, Requests: 3, Tokens: 100, Expires: exp})
		f.grant(t, permitsGranted{requests: 2, tokens: 60})
		// Left in the pool: 2 requests and 50 tokens.
		f.send(&permitsWanted{requests: 3, tokens: 60, minRequests: 1, minTokens: 20, headTokens: 20})
		f.grant(t, permitsGranted{requests: 2, tokens: 50})
		quiet(t, f.queue, f.broker)
	})
}

func TestLeasedLimiterReturnsExpiredLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLeased(t, tokenLimits)
		f.want(1, 30)
		f.wanted(t, LeaseWanted{Requests: 1, Tokens: 30, MinTokens: 30})
		exp := time.Now().Add(ms(200))
		f.lease(LeaseGranted{ID: 7, Requests: 5, Tokens: 100, Expires: exp})
		f.grant(t, permitsGranted{requests: 1, tokens: 30})
		// The limiter wakes at the expiry to give back what is left.
		if at := f.unused(t, LeaseUnused{ID: 7, Requests: 4, Tokens: 70}); !at.Equal(exp) {
			t.Errorf("lease given back at %v, want at its expiry", at.Sub(exp))
		}
		// Nothing is left: the next ask needs a new lease.
		f.want(1, 10)
		f.wanted(t, LeaseWanted{Requests: 1, Tokens: 10, MinTokens: 10})

		// A lease that arrives expired goes straight back, untouched, and
		// the limiter asks again.
		f.lease(LeaseGranted{ID: 8, Requests: 3, Tokens: 50, Expires: time.Now()})
		f.unused(t, LeaseUnused{ID: 8, Requests: 3, Tokens: 50})
		f.wanted(t, LeaseWanted{Requests: 1, Tokens: 10, MinTokens: 10})
		quiet(t, f.queue, f.broker)

		// A lease used up before it expires is not given back.
		f.lease(LeaseGranted{ID: 9, Requests: 1, Tokens: 10, Expires: time.Now().Add(ms(100))})
		f.grant(t, permitsGranted{requests: 1, tokens: 10})
		time.Sleep(time.Second)
		quiet(t, f.queue, f.broker)
		if s, _ := f.budget.shared.stats(); s != (messages.SharedStats{}) {
			t.Errorf("figures of a limiter its supervisor did not mark shared: %+v", s)
		}
	})
}

func TestLeasedLimiterPauseIsForwarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLeased(t, noLimits)
		f.stockPool(t, 1, 10, 0)
		start := time.Now()
		until := start.Add(ms(300))
		f.send(&PauseUntil{Until: until})
		f.revoked(t)
		f.want(2, 0)
		p, _ := expect[*PauseUntil](t, f.broker)
		if !p.Until.Equal(until) {
			t.Errorf("broker got PauseUntil %v, want %v", p.Until.Sub(start), until.Sub(start))
		}
		quiet(t, f.queue, f.broker)
		if at := f.grant(t, permitsGranted{requests: 2}); !at.Equal(until) {
			t.Errorf("granted at %v, want at the pause's end (%v)", at.Sub(start), until.Sub(start))
		}
		// The pause took nothing from the pool: no lease wanted.
		f.want(7, 0)
		f.grant(t, permitsGranted{requests: 7})
		quiet(t, f.queue, f.broker)
	})
}

func TestLeasedLimiterSharedPauseIsNotForwarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLeased(t, noLimits)
		f.stockPool(t, 1, 10, 0)
		start := time.Now()
		until := start.Add(ms(300))
		f.send(&SharedPause{Until: until})
		f.revoked(t)
		f.send(&SharedPause{Until: start.Add(ms(50))}) // ends earlier: ignored
		f.want(1, 0)
		// The pause came from the broker: it does not go back to it.
		quiet(t, f.queue, f.broker)
		if at := f.grant(t, permitsGranted{requests: 1}); !at.Equal(until) {
			t.Errorf("granted at %v, want at the shared pause's end (%v)", at.Sub(start), until.Sub(start))
		}
	})
}

func TestLeasedLimiterForwardsAdjustAndSetLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLeased(t, tokenLimits)
		lowered := Limits{RequestsPerSecond: 5, RequestBurst: 2, TokensPerSecond: 500, TokenBurst: 60}
		f.send(&AdjustTokens{Delta: 40})
		f.send(&AdjustTokens{Delta: -30})
		if a, _ := expect[*AdjustTokens](t, f.broker); a.Delta != 40 {
			t.Errorf("broker got AdjustTokens %d, want 40", a.Delta)
		}
		if a, _ := expect[*AdjustTokens](t, f.broker); a.Delta != -30 {
			t.Errorf("broker got AdjustTokens %d, want -30", a.Delta)
		}
		// The shared budget is reconciled, not the local one.
		quiet(t, f.queue, f.broker)
		nearly(t, "local tokens after AdjustTokens with a broker", f.budget.TokensAvailable(time.Now()), 100)
		if c := f.budget.tokens.Credit(time.Now()); c != 0 {
			t.Errorf("local credit %v after AdjustTokens with a broker, want 0", c)
		}

		f.send(&SetLimits{Limits: lowered})
		if s, _ := expect[*SetLimits](t, f.broker); s.Limits != lowered {
			t.Errorf("broker got SetLimits %+v, want %+v", s.Limits, lowered)
		}
		f.revoked(t)
		quiet(t, f.queue, f.broker)
		// The limits apply here too: asks are checked against the token
		// burst.
		nearly(t, "local tokens after lowering the burst", f.budget.TokensAvailable(time.Now()), 60)
		if b := f.budget.TokenBurst(); b != 60 {
			t.Errorf("local token burst %d after SetLimits, want 60", b)
		}
	})
}

func TestLeasedLimiterDeniesAskOverLoweredBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLeased(t, tokenLimits)
		f.send(&SetLimits{Limits: tokensOnly(1000, 50)})
		expect[*SetLimits](t, f.broker)
		f.revoked(t)
		f.send(&permitsWanted{requests: 2, tokens: 130, minRequests: 1, minTokens: 80, headTokens: 80})
		d, _ := expect[*permitsDenied](t, f.queue)
		var tle *messages.TokenLimitError
		if !errors.As(d.err, &tle) || tle.Tokens != 80 || tle.Burst != 50 {
			t.Fatalf("denied with %v, want TokenLimitError{80, 50}", d.err)
		}
		// The denied head is not part of what the limiter asks for.
		quiet(t, f.broker)
		f.want(1, 50)
		f.wanted(t, LeaseWanted{Requests: 1, Tokens: 50, MinTokens: 50})
		f.lease(LeaseGranted{ID: 1, Requests: 3, Tokens: 100, Expires: time.Now().Add(time.Minute)})
		f.grant(t, permitsGranted{requests: 1, tokens: 50})
		// With the pool stocked, too dear a head is denied as well.
		f.want(1, 51)
		if d, _ := expect[*permitsDenied](t, f.queue); !errors.Is(d.err, messages.ErrTokensExceedBurst) {
			t.Fatalf("denied with %v, want ErrTokensExceedBurst", d.err)
		}
		f.want(1, 50)
		f.grant(t, permitsGranted{requests: 1, tokens: 50})
		quiet(t, f.queue, f.broker)
	})
}

func TestLeasedLimiterPutsWhatTheQueueReturnsInThePool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLeased(t, tokenLimits)
		f.stockPool(t, 1, 10, 100) // 9 requests and 100 tokens left
		f.want(5, 10)
		f.grant(t, permitsGranted{requests: 5, tokens: 50})
		f.send(&permitsReturned{requests: 3, tokens: 30})
		f.want(7, 10)
		f.grant(t, permitsGranted{requests: 7, tokens: 70})
		quiet(t, f.queue, f.broker) // no lease wanted
	})
}

func TestLeasedLimiterReturnsLeasesWhenAsked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLeased(t, tokenLimits)
		f.budget.shared.start(time.Now())
		exp := time.Now().Add(time.Minute)
		f.want(1, 10)
		f.wanted(t, LeaseWanted{Requests: 1, Tokens: 10, MinTokens: 10})
		f.lease(LeaseGranted{ID: 7, Requests: 4, Tokens: 50, Expires: exp})
		f.grant(t, permitsGranted{requests: 1, tokens: 10})
		f.want(1, 10)
		f.grant(t, permitsGranted{requests: 1, tokens: 10}) // from the same lease
		f.want(1, 10)
		f.grant(t, permitsGranted{requests: 1, tokens: 10})
		f.send(&permitsReturned{requests: 1, tokens: 0}) // the queue's last was cancelled
		synctest.Wait()
		s, _ := f.budget.shared.stats()
		if s.Mode != messages.SharedJoined || s.HeldRequests != 2 || s.HeldTokens != 20 || s.Leases != 1 || s.LeasedRequests != 4 || s.LeasedTokens != 50 {
			t.Fatalf("figures before the return: %+v", s)
		}

		done := make(chan struct{})
		f.send(&ReturnLeases{Done: done})
		f.unused(t, LeaseUnused{ID: 7, Requests: 2, Tokens: 20})
		if r, _ := expect[*ReturnLeases](t, f.broker); r.Done != done {
			t.Error("ReturnLeases not passed on to the broker after the leases")
		}
		// A grant that comes after goes straight back.
		f.lease(LeaseGranted{ID: 8, Requests: 2, Tokens: 20, Expires: exp})
		f.unused(t, LeaseUnused{ID: 8, Requests: 2, Tokens: 20})
		quiet(t, f.queue, f.broker)
		s, _ = f.budget.shared.stats()
		if s.HeldRequests != 0 || s.HeldTokens != 0 || s.Leases != 2 || s.Returned != 2 || s.ReturnedRequests != 4 || s.ReturnedTokens != 40 {
			t.Errorf("figures after the return: %+v", s)
		}
		st := (&counters{}).Stats(f.budget, time.Now())
		if st.Shared != s || st.RequestsAvailable != 0 || st.TokensAvailable != 0 {
			t.Errorf("Stats = %+v, want the shared figures and the leases' budget", st)
		}
		f.budget.shared.state.Store(&BrokerState{Since: t0, Reason: "no answer", Fallbacks: 1})
		if st := (&counters{}).Stats(f.budget, time.Now()).Shared; st.Mode != messages.SharedFallback || st.Reason != "no answer" || st.Fallbacks != 1 {
			t.Errorf("after the broker fell back: %+v", st)
		}
		// Without a token limit, the shared budget has no tokens to tell.
		off := newBuckets(noLimits)
		off.shared.start(time.Now())
		if st := (&counters{}).Stats(off, time.Now()); st.TokensAvailable != -1 || st.Shared.Mode != messages.SharedJoined {
			t.Errorf("shared without a token limit: %+v", st)
		}
	})
}

func TestLimiterWithoutBrokerClosesReturnLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLimiter(t, noLimits)
		done := make(chan struct{})
		f.send(&ReturnLeases{Done: done})
		waitClosed(t, done, "ReturnLeases without a broker")
		quiet(t, f.queue)
		st := (&counters{}).Stats(f.budget, time.Now())
		if st.Shared.Mode != "" || st.TokensAvailable != -1 {
			t.Errorf("Stats without a shared budget: %+v", st)
		}
	})
}

// autoBroker grants whatever the limiter wants, closes ReturnLeases.Done,
// and reports every other message it receives.
func autoBroker(got chan<- any) *actor.Props {
	var id uint64
	return actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case actor.SystemMessage, actor.AutoReceiveMessage:
		case *LeaseWanted:
			id++
			ctx.Respond(&LeaseGranted{ID: id, Requests: m.Requests, Tokens: m.Tokens, Expires: time.Now().Add(time.Minute)})
		case *ReturnLeases:
			close(m.Done)
			got <- m
		default:
			got <- m
		}
	})
}

// TestTreeWithLeaseBroker runs requests through a whole tree whose limiter
// takes its permits from a broker, and checks that the supervisor's public
// messages reach the broker.
func TestTreeWithLeaseBroker(t *testing.T) {
	got := make(chan any, 64)
	h := startTree(t, tokenLimits, func(c *Config) { c.LeaseBroker = autoBroker(got) })
	if h.tree.Broker == nil || h.tree.Broker.Id != h.tree.Supervisor.Id+"/budget" {
		t.Fatalf("tree broker = %v, want the supervisor's child budget", h.tree.Broker)
	}
	ids := make([]messages.Event, 0, 5)
	for i := range 5 {
		id := h.enqueue(t, messages.Request{Call: okCall("ok"), Tokens: 10 * (i + 1)})
		ids = append(ids, h.sink.WaitEnd(t, id))
	}
	for i, ev := range ids {
		if ev.Status != messages.StatusCompleted {
			t.Fatalf("request %d ended %v (%v)", i, ev.Status, ev.Err())
		}
	}
	s := h.stats(t).Shared
	if s.Mode != messages.SharedJoined || s.Leases < 1 || s.LeasedTokens < 150 {
		t.Errorf("shared figures after 5 requests of 150 tokens in all: %+v", s)
	}
	until := time.Now().Add(time.Second)
	h.sys.Root.Send(h.tree.Supervisor, &PauseUntil{Until: until})
	if p, ok := recvValue(t, got, "PauseUntil at the broker").(*PauseUntil); !ok || !p.Until.Equal(until) {
		t.Errorf("broker got %v, want PauseUntil %v", p, until)
	}
	h.tr.AdjustTokens(-5)
	if a, ok := recvValue(t, got, "AdjustTokens at the broker").(*AdjustTokens); !ok || a.Delta != -5 {
		t.Errorf("broker got %v, want AdjustTokens -5", a)
	}
	done := h.tr.ReturnLeases()
	if done == nil {
		t.Fatal("ReturnLeases of a tree with a broker returned nil")
	}
	waitClosed(t, done, "ReturnLeases")
	for {
		m := recvValue(t, got, "ReturnLeases at the broker")
		if _, ok := m.(*ReturnLeases); ok {
			break
		}
		if _, ok := m.(*LeaseUnused); !ok {
			t.Fatalf("broker got %T %+v before ReturnLeases, want only leases given back", m, m)
		}
	}
	if s := h.stats(t).Shared; s.HeldRequests != 0 || s.HeldTokens != 0 {
		t.Errorf("after ReturnLeases the tree holds (%d, %d), want nothing", s.HeldRequests, s.HeldTokens)
	}
}

// TestSupervisorRecordsTheBrokersState: a broker's BrokerState, sent to its
// parent, shows in Stats.
func TestSupervisorRecordsTheBrokersState(t *testing.T) {
	got := make(chan any, 16)
	h := startTree(t, noLimits, func(c *Config) { c.LeaseBroker = autoBroker(got) })
	if st := h.cfg.counters.Stats(h.cfg.buckets, time.Now()).Shared; st.Mode != messages.SharedJoined {
		t.Fatalf("a new tree with a broker: %+v, want joined", st)
	}
	// The supervisor answers a StatsQuery sent after the state once it has
	// handled the state.
	h.sys.Root.Send(h.tree.Supervisor, &BrokerState{Since: t0, Reason: "refused", Fallbacks: 2, Rejoins: 1})
	st := h.stats(t).Shared
	if st.Mode != messages.SharedFallback || st.Reason != "refused" || st.Fallbacks != 2 || st.Rejoins != 1 || !st.Since.Equal(t0) {
		t.Errorf("Stats.Shared = %+v", st)
	}
}

func TestTreeWithoutBrokerHasNoLeasesToReturn(t *testing.T) {
	h := startTree(t, noLimits, nil)
	if done := h.tr.ReturnLeases(); done != nil {
		t.Errorf("ReturnLeases without a broker = %v, want nil", done)
	}
}
