package actors

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

// --- leasePool ---

var poolT0 = time.Unix(1_700_000_000, 0)

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

func TestLeasePoolTake(t *testing.T) {
	exp := poolT0.Add(time.Minute)
	p := &leasePool{}
	if p.take(0) {
		t.Fatal("an empty pool gave a request")
	}
	p = poolOf(heldLease{1, 2, 10, exp}, heldLease{2, 2, 10, exp.Add(time.Second)})
	if r, tk := p.totals(); r != 4 || tk != 20 {
		t.Fatalf("totals = (%d, %d), want (4, 20)", r, tk)
	}
	// The oldest lease first.
	if !p.take(5) {
		t.Fatal("take(5) from (4, 20) refused")
	}
	checkPool(t, p, heldLease{1, 1, 5, exp}, heldLease{2, 2, 10, exp.Add(time.Second)})
	// Tokens spanning two leases; the first, spent, is dropped.
	if !p.take(8) {
		t.Fatal("take(8) from (3, 15) refused")
	}
	checkPool(t, p, heldLease{2, 2, 7, exp.Add(time.Second)})
	// More tokens than the pool holds: refused, nothing taken.
	if p.take(8) {
		t.Fatal("take(8) from (2, 7) granted")
	}
	checkPool(t, p, heldLease{2, 2, 7, exp.Add(time.Second)})
	for range 2 {
		if !p.take(0) {
			t.Fatal("take(0) with requests left refused")
		}
	}
	checkPool(t, p, heldLease{2, 0, 7, exp.Add(time.Second)}) // tokens but no requests: kept
	if p.take(0) {
		t.Fatal("take with no request left granted")
	}
}

func TestLeasePoolKeepsTokensWithoutRequests(t *testing.T) {
	exp := poolT0.Add(time.Minute)
	// A lease with tokens but no requests left still pays for requests of
	// later leases.
	p := poolOf(heldLease{1, 1, 100, exp}, heldLease{2, 1, 0, exp}, heldLease{3, 1, 0, exp})
	if !p.take(10) {
		t.Fatal("take(10) refused")
	}
	checkPool(t, p, heldLease{1, 0, 90, exp}, heldLease{2, 1, 0, exp}, heldLease{3, 1, 0, exp})
	if !p.take(10) {
		t.Fatal("take(10) with a request in lease 2 and tokens in lease 1 refused")
	}
	// Lease 2 is spent but behind lease 1, which still has tokens.
	checkPool(t, p, heldLease{1, 0, 80, exp}, heldLease{2, 0, 0, exp}, heldLease{3, 1, 0, exp})
	if !p.take(80) {
		t.Fatal("take(80) refused")
	}
	// The request from lease 3, the tokens from lease 1: all three spent,
	// all dropped.
	checkPool(t, p)
	if r, tk := p.totals(); r != 0 || tk != 0 {
		t.Fatalf("totals = (%d, %d), want nothing", r, tk)
	}
}

func TestLeasePoolExpire(t *testing.T) {
	p := poolOf(
		heldLease{1, 2, 10, poolT0.Add(1 * time.Second)},
		heldLease{2, 0, 0, poolT0.Add(2 * time.Second)}, // spent: dropped, not returned
		heldLease{3, 1, 5, poolT0.Add(5 * time.Second)},
		heldLease{4, 0, 7, poolT0.Add(3 * time.Second)}, // tokens only: returned
	)
	if gone := p.expire(poolT0); len(gone) != 0 {
		t.Fatalf("expire before any expiry returned %+v", gone)
	}
	if at := p.earliest(); !at.Equal(poolT0.Add(time.Second)) {
		t.Errorf("earliest = %v, want 1s", at.Sub(poolT0))
	}
	// At exactly its expiry a lease is gone.
	gone := p.expire(poolT0.Add(3 * time.Second))
	want := []heldLease{{1, 2, 10, poolT0.Add(1 * time.Second)}, {4, 0, 7, poolT0.Add(3 * time.Second)}}
	if !slices.Equal(gone, want) {
		t.Fatalf("expire at 3s = %+v, want %+v (oldest first, spent leases left out)", gone, want)
	}
	checkPool(t, p, heldLease{3, 1, 5, poolT0.Add(5 * time.Second)})
	if at := p.earliest(); !at.Equal(poolT0.Add(5 * time.Second)) {
		t.Errorf("earliest = %v, want 5s", at.Sub(poolT0))
	}
	if r, tk := p.totals(); r != 1 || tk != 5 {
		t.Errorf("totals = (%d, %d), want (1, 5)", r, tk)
	}
	if gone := p.expire(poolT0.Add(time.Hour)); len(gone) != 1 || gone[0].id != 3 {
		t.Errorf("expire of the last = %+v", gone)
	}
	checkPool(t, p)
	if at := p.earliest(); !at.IsZero() {
		t.Errorf("earliest of an empty pool = %v, want the zero time", at)
	}
}

// --- the limiter with a broker ---

// leaseFixture is a limiter whose permits go to a probe (the queue) and
// whose lease broker is another probe, which the test answers.
type leaseFixture struct {
	*limiterFixture
	broker *probe
}

func startLeased(t *testing.T, lim Limits) *leaseFixture {
	t.Helper()
	sys := newSystem(t)
	f := &leaseFixture{
		limiterFixture: &limiterFixture{sys: sys, budget: newBuckets(lim), probe: spawnProbe(t, sys)},
		broker:         spawnProbe(t, sys),
	}
	f.pid = sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return newLimiter(f.budget, f.probe.pid, f.broker.pid)
	}))
	stopActor(t, sys, f.pid)
	return f
}

// wanted waits for the broker's next message, which must be want, sent by
// the limiter.
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

// lease makes the broker answer the limiter with g.
func (f *leaseFixture) lease(g LeaseGranted) {
	f.broker.request(f.sys, f.pid, &g)
}

// noPermit checks that the limiter grants nothing for a while.
func (f *leaseFixture) noPermit(t *testing.T) {
	t.Helper()
	f.probe.expectNone(t, 50*time.Millisecond)
}

var tokenLimits = Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100}

func TestLeasedLimiterGrantsOnlyFromLeasesInOrder(t *testing.T) {
	// The local budget would admit anything: every permit must still wait
	// for a lease.
	f := startLeased(t, noLimits)
	exp := time.Now().Add(time.Minute)
	for i := uint64(1); i <= 3; i++ {
		f.ask(i, 500) // no token limit: tokens cost nothing
	}
	f.wanted(t, LeaseWanted{Requests: 1})
	f.noPermit(t)
	f.broker.expectNone(t, 50*time.Millisecond) // one LeaseWanted out at a time

	f.lease(LeaseGranted{ID: 1, Requests: 2, Expires: exp})
	f.grant(t, 1)
	f.grant(t, 2)
	f.wanted(t, LeaseWanted{Requests: 1}) // for 3
	f.noPermit(t)

	f.lease(LeaseGranted{ID: 2, Requests: 5, Expires: exp})
	f.grant(t, 3)
	// The pool holds 4: the next asks go at once, without asking.
	for i := uint64(4); i <= 7; i++ {
		f.ask(i, 0)
	}
	for i := uint64(4); i <= 7; i++ {
		f.grant(t, i)
	}
	f.ask(8, 0)
	f.wanted(t, LeaseWanted{Requests: 1})
	f.broker.expectNone(t, 50*time.Millisecond)
}

func TestLeasedLimiterWantsWhatThePoolLacks(t *testing.T) {
	f := startLeased(t, tokenLimits)
	exp := time.Now().Add(time.Minute)
	f.ask(1, 30)
	f.ask(2, 50)
	f.ask(3, 40)
	// Asked for on the first ask alone; 2 and 3 came while it was out.
	f.wanted(t, LeaseWanted{Requests: 1, Tokens: 30, MinTokens: 30})
	f.lease(LeaseGranted{ID: 1, Requests: 1, Tokens: 60, Expires: exp})
	f.grant(t, 1)
	// 30 tokens left in lease 1, no request: 2 and 3 need 2 requests and
	// 90 tokens, 2 alone 50.
	f.wanted(t, LeaseWanted{Requests: 2, Tokens: 60, MinTokens: 20})
	f.noPermit(t)

	// A partial lease: enough for 2, not for 3.
	f.lease(LeaseGranted{ID: 2, Requests: 1, Tokens: 50, Expires: exp})
	f.grant(t, 2)
	f.wanted(t, LeaseWanted{Requests: 1, Tokens: 10, MinTokens: 10})
	f.noPermit(t)

	f.lease(LeaseGranted{ID: 3, Requests: 3, Tokens: 10, Expires: exp})
	f.grant(t, 3)
	// Two requests but no tokens are left.
	f.ask(4, 0)
	f.grant(t, 4)
	f.ask(5, 1)
	f.wanted(t, LeaseWanted{Requests: 1, Tokens: 1, MinTokens: 1})
}

func TestLeasedLimiterReturnsExpiredLeases(t *testing.T) {
	f := startLeased(t, tokenLimits)
	f.ask(1, 30)
	f.wanted(t, LeaseWanted{Requests: 1, Tokens: 30, MinTokens: 30})
	exp := time.Now().Add(200 * time.Millisecond)
	f.lease(LeaseGranted{ID: 7, Requests: 5, Tokens: 100, Expires: exp})
	f.grant(t, 1)
	// The limiter wakes at the expiry to give back what is left.
	u, r := expect[*LeaseUnused](t, f.broker)
	if *u != (LeaseUnused{ID: 7, Requests: 4, Tokens: 70}) {
		t.Fatalf("broker got %+v, want LeaseUnused{7, 4, 70}", *u)
	}
	if r.at.Before(exp) {
		t.Errorf("lease given back %v before it expired", exp.Sub(r.at))
	}
	// Nothing is left: the next ask needs a new lease.
	f.ask(2, 10)
	f.wanted(t, LeaseWanted{Requests: 1, Tokens: 10, MinTokens: 10})

	// A lease that arrives expired goes straight back, untouched, and the
	// limiter asks again.
	f.lease(LeaseGranted{ID: 8, Requests: 3, Tokens: 50, Expires: time.Now().Add(-time.Millisecond)})
	u, _ = expect[*LeaseUnused](t, f.broker)
	if *u != (LeaseUnused{ID: 8, Requests: 3, Tokens: 50}) {
		t.Fatalf("broker got %+v, want LeaseUnused{8, 3, 50}", *u)
	}
	f.wanted(t, LeaseWanted{Requests: 1, Tokens: 10, MinTokens: 10})
	f.noPermit(t)

	// A lease used up before it expires is not given back.
	exp = time.Now().Add(100 * time.Millisecond)
	f.lease(LeaseGranted{ID: 9, Requests: 1, Tokens: 10, Expires: exp})
	f.grant(t, 2)
	f.broker.expectNone(t, time.Until(exp)+100*time.Millisecond)
}

// stockPool has the limiter ask for a lease and gives it one of n requests
// and tokens tokens for a minute, spending one request (ticket) of it.
func (f *leaseFixture) stockPool(t *testing.T, ticket uint64, n, tokens int64) {
	t.Helper()
	f.ask(ticket, 0)
	f.wanted(t, LeaseWanted{Requests: 1})
	f.lease(LeaseGranted{ID: ticket, Requests: n, Tokens: tokens, Expires: time.Now().Add(time.Minute)})
	f.grant(t, ticket)
}

func TestLeasedLimiterPauseIsForwarded(t *testing.T) {
	f := startLeased(t, noLimits)
	f.stockPool(t, 1, 10, 0)
	start := time.Now()
	until := start.Add(300 * time.Millisecond)
	f.send(&PauseUntil{Until: until})
	f.ask(2, 0)
	p, _ := expect[*PauseUntil](t, f.broker)
	if !p.Until.Equal(until) {
		t.Errorf("broker got PauseUntil %v, want %v", p.Until, until)
	}
	if at := f.grant(t, 2); at.Before(until) {
		t.Errorf("permit %v after the pause began, before its end (%v)", at.Sub(start), until.Sub(start))
	}
	// The pause took nothing from the pool: no new lease wanted.
	f.ask(3, 0)
	f.grant(t, 3)
	f.broker.expectNone(t, 50*time.Millisecond)
}

func TestLeasedLimiterSharedPauseIsNotForwarded(t *testing.T) {
	f := startLeased(t, noLimits)
	f.stockPool(t, 1, 10, 0)
	start := time.Now()
	until := start.Add(300 * time.Millisecond)
	f.send(&SharedPause{Until: until})
	f.send(&SharedPause{Until: start.Add(50 * time.Millisecond)}) // earlier: ignored
	f.ask(2, 0)
	if at := f.grant(t, 2); at.Before(until) {
		t.Errorf("permit %v after a shared pause began, before its end (%v)", at.Sub(start), until.Sub(start))
	}
	// The pause came from the broker: it does not go back to it.
	f.broker.expectNone(t, 50*time.Millisecond)
}

func TestLeasedLimiterForwardsAdjustAndSetLimits(t *testing.T) {
	f := startLeased(t, tokenLimits)
	lowered := Limits{RequestsPerSecond: 5, RequestBurst: 2, TokensPerSecond: 500, TokenBurst: 60}
	f.send(&AdjustTokens{Delta: 40})
	f.send(&AdjustTokens{Delta: -30})
	f.send(&SetLimits{Limits: lowered})
	if a, _ := expect[*AdjustTokens](t, f.broker); a.Delta != 40 {
		t.Errorf("broker got AdjustTokens %d, want 40", a.Delta)
	}
	if a, _ := expect[*AdjustTokens](t, f.broker); a.Delta != -30 {
		t.Errorf("broker got AdjustTokens %d, want -30", a.Delta)
	}
	if s, _ := expect[*SetLimits](t, f.broker); s.Limits != lowered {
		t.Errorf("broker got SetLimits %+v, want %+v", s.Limits, lowered)
	}
	// The shared budget is reconciled, not the local one; the limits apply
	// here too (asks are checked against the token burst).
	if c := f.budget.tokens.Credit(time.Now()); c != 0 {
		t.Errorf("local credit %v after AdjustTokens with a broker, want 0", c)
	}
	if got := f.budget.TokensAvailable(time.Now()); got < 60 {
		t.Errorf("local tokens %v: AdjustTokens charged the local bucket", got)
	}
	if b := f.budget.TokenBurst(); b != 60 {
		t.Errorf("local token burst %d after SetLimits, want 60", b)
	}
}

func TestLeasedLimiterDeniesAskOverLoweredBurst(t *testing.T) {
	f := startLeased(t, tokenLimits)
	lowered := Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 50}
	f.send(&SetLimits{Limits: lowered})
	f.ask(1, 80)
	f.ask(2, 50)
	expect[*SetLimits](t, f.broker)
	d, _ := expect[*permitDenied](t, f.probe)
	var tle *messages.TokenLimitError
	if d.ticket != 1 || !errors.As(d.err, &tle) || tle.Tokens != 80 || tle.Burst != 50 {
		t.Fatalf("permitDenied %+v, want ticket 1 with TokenLimitError{80, 50}", d)
	}
	// The denied ask is not part of what the limiter asks for.
	f.wanted(t, LeaseWanted{Requests: 1, Tokens: 50, MinTokens: 50})
	f.lease(LeaseGranted{ID: 1, Requests: 2, Tokens: 100, Expires: time.Now().Add(time.Minute)})
	f.grant(t, 2)
	// With the pool stocked, too dear an ask at the head is denied as well,
	// and the one behind it served from the pool.
	f.ask(3, 51)
	f.ask(4, 50)
	if d, _ := expect[*permitDenied](t, f.probe); d.ticket != 3 || !errors.Is(d.err, messages.ErrTokensExceedBurst) {
		t.Fatalf("permitDenied %+v, want ticket 3 with ErrTokensExceedBurst", d)
	}
	f.grant(t, 4)
	f.broker.expectNone(t, 50*time.Millisecond)
}

func TestLeasedLimiterCancel(t *testing.T) {
	f := startLeased(t, noLimits)
	f.ask(1, 0)
	f.ask(2, 0)
	f.send(&permitCancel{ticket: 1})
	f.wanted(t, LeaseWanted{Requests: 1}) // asked for 1, before the cancel
	f.lease(LeaseGranted{ID: 1, Requests: 1, Expires: time.Now().Add(time.Minute)})
	f.grant(t, 2)
	f.noPermit(t)
	f.broker.expectNone(t, 50*time.Millisecond) // nothing pending: nothing wanted
}

// autoBroker grants whatever the limiter wants, and reports every other
// message it receives.
func autoBroker(got chan<- any) *actor.Props {
	var id uint64
	return actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case actor.SystemMessage, actor.AutoReceiveMessage:
		case *LeaseWanted:
			id++
			ctx.Respond(&LeaseGranted{ID: id, Requests: m.Requests, Tokens: m.Tokens, Expires: time.Now().Add(time.Minute)})
		default:
			got <- m
		}
	})
}

// TestTreeWithLeaseBroker runs requests through a whole tree whose limiter
// takes its permits from a broker, and checks that the supervisor's public
// messages reach the broker.
func TestTreeWithLeaseBroker(t *testing.T) {
	got := make(chan any, 16)
	h := startTree(t, tokenLimits, func(c *Config) { c.LeaseBroker = autoBroker(got) })
	if h.tree.Broker == nil || h.tree.Broker.Id != h.tree.Supervisor.Id+"/budget" {
		t.Fatalf("tree broker = %v, want the supervisor's child budget", h.tree.Broker)
	}
	for i := range 5 {
		id := h.enqueue(t, messages.Request{Call: okCall("ok"), Tokens: 10 * (i + 1)})
		if ev := h.sink.WaitEnd(t, id); ev.Status != messages.StatusCompleted {
			t.Fatalf("request %d ended %v (%v)", i, ev.Status, ev.Err())
		}
	}
	until := time.Now().Add(time.Second)
	h.sys.Root.Send(h.tree.Supervisor, &PauseUntil{Until: until})
	if p, ok := recvValue(t, got, "PauseUntil at the broker").(*PauseUntil); !ok || !p.Until.Equal(until) {
		t.Errorf("broker got %v, want PauseUntil %v", p, until)
	}
}

func TestLeasedLimiterReturnsLeasesWhenAsked(t *testing.T) {
	f := startLeased(t, tokenLimits)
	exp := time.Now().Add(time.Minute)
	f.ask(1, 10)
	f.wanted(t, LeaseWanted{Requests: 1, Tokens: 10, MinTokens: 10})
	f.lease(LeaseGranted{ID: 7, Requests: 4, Tokens: 50, Expires: exp})
	f.grant(t, 1)
	f.ask(2, 10)
	f.grant(t, 2) // from the same lease
	f.barrier(t, 3)
	if s, _ := f.budget.shared.stats(); s != (messages.SharedStats{}) {
		t.Errorf("figures of a limiter its supervisor did not mark shared: %+v", s)
	}
	f.budget.shared.start(time.Now())
	f.barrier(t, 4) // the pool's figures are written at every pump
	s, _ := f.budget.shared.stats()
	if s.Mode != messages.SharedJoined || s.HeldRequests != 0 || s.HeldTokens != 30 || s.Leases != 1 || s.LeasedRequests != 4 {
		t.Fatalf("figures before the return: %+v", s)
	}

	done := make(chan struct{})
	f.send(&ReturnLeases{Done: done})
	u, _ := expect[*LeaseUnused](t, f.broker)
	if *u != (LeaseUnused{ID: 7, Requests: 0, Tokens: 30}) {
		t.Errorf("returned %+v, want what lease 7 still held", *u)
	}
	if r, _ := expect[*ReturnLeases](t, f.broker); r.Done != done {
		t.Error("ReturnLeases not passed on to the broker after the leases")
	}
	// A grant that comes after goes straight back.
	f.lease(LeaseGranted{ID: 8, Requests: 2, Tokens: 20, Expires: exp})
	if u, _ := expect[*LeaseUnused](t, f.broker); *u != (LeaseUnused{ID: 8, Requests: 2, Tokens: 20}) {
		t.Errorf("a late grant came back as %+v", *u)
	}
	s, _ = f.budget.shared.stats()
	if s.HeldRequests != 0 || s.HeldTokens != 0 || s.Leases != 2 || s.Returned != 2 || s.ReturnedRequests != 2 || s.ReturnedTokens != 50 {
		t.Errorf("figures after the return: %+v", s)
	}
	st := (&counters{}).Stats(f.budget, time.Now())
	if st.Shared != s || st.RequestsAvailable != 0 || st.TokensAvailable != 0 {
		t.Errorf("Stats = %+v, want the shared figures and the leases' budget", st)
	}
	f.budget.shared.state.Store(&BrokerState{Since: poolT0, Reason: "no answer", Fallbacks: 1})
	if st := (&counters{}).Stats(f.budget, time.Now()).Shared; st.Mode != messages.SharedFallback || st.Reason != "no answer" || st.Fallbacks != 1 {
		t.Errorf("after the broker fell back: %+v", st)
	}
}

func TestLimiterWithoutBrokerClosesReturnLeases(t *testing.T) {
	f := startLimiter(t, noLimits)
	done := make(chan struct{})
	f.send(&ReturnLeases{Done: done})
	waitClosed(t, done, "ReturnLeases without a broker")
	st := (&counters{}).Stats(newBuckets(Limits{RequestsPerSecond: rate.Inf, TokensPerSecond: 0}), time.Now())
	if st.Shared.Mode != "" || st.TokensAvailable != -1 {
		t.Errorf("Stats without a shared budget: %+v", st)
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
	h.sys.Root.Send(h.tree.Supervisor, &BrokerState{Since: poolT0, Reason: "refused", Fallbacks: 2, Rejoins: 1})
	res, err := h.sys.Root.RequestFuture(h.tree.Supervisor, &messages.StatsQuery{}, waitLimit).Result()
	if err != nil {
		t.Fatal(err)
	}
	st := res.(messages.Stats).Shared
	if st.Mode != messages.SharedFallback || st.Reason != "refused" || st.Fallbacks != 2 || st.Rejoins != 1 || !st.Since.Equal(poolT0) {
		t.Errorf("Stats.Shared = %+v", st)
	}
}
