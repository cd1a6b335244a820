package budget

import (
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/internal/runtimetest"
)

// The broker's behaviours and its changes of behaviour, driven through a
// fake backend in a bubble of fake time: every wait is exact, and nothing
// depends on the machine's speed.

// call is one call of the broker on its backend.
type call struct {
	op               string
	ask              uint64
	want             actors.LeaseWanted
	limits           actors.Limits
	id               uint64
	requests, tokens int64
	delta            int64
	until            time.Time
	wait             bool
	msg              any
	at               time.Time
}

// fakeBackend records the broker's calls; the tests answer by sending the
// broker what a backend would.
type fakeBackend struct {
	calls chan call
	label string
}

func (f *fakeBackend) record(c call) { c.at = time.Now(); f.calls <- c }

func (f *fakeBackend) start(actor.Context) { f.record(call{op: "start"}) }
func (f *fakeBackend) lease(_ actor.Context, ask uint64, want actors.LeaseWanted, limits actors.Limits) {
	f.record(call{op: "lease", ask: ask, want: want, limits: limits})
}
func (f *fakeBackend) giveBack(_ actor.Context, id uint64, requests, tokens int64) {
	f.record(call{op: "giveBack", id: id, requests: requests, tokens: tokens})
}
func (f *fakeBackend) adjust(_ actor.Context, delta int64) {
	f.record(call{op: "adjust", delta: delta})
}
func (f *fakeBackend) pause(_ actor.Context, until time.Time) {
	f.record(call{op: "pause", until: until})
}
func (f *fakeBackend) probe(actor.Context)              { f.record(call{op: "probe"}) }
func (f *fakeBackend) leave(_ actor.Context, wait bool) { f.record(call{op: "leave", wait: wait}) }
func (f *fakeBackend) receive(_ actor.Context, m any) {
	if _, ok := m.(boom); ok {
		panic("boom")
	}
	f.record(call{op: "receive", msg: m})
}

// boom makes the fake backend panic.
type boom struct{}

func (f *fakeBackend) stop()            { f.record(call{op: "stop"}) }
func (f *fakeBackend) name() string     { return f.label }
func (f *fakeBackend) where() slog.Attr { return slog.String("fake", "here") }

// rig is a broker with a fake backend, under a parent that plays the
// limiter and the supervisor: it receives the grants and the pauses
// (got) and the broker's standing (states).
type rig struct {
	t       *testing.T
	sys     *actor.ActorSystem
	parent  *actor.PID
	broker  *actor.PID
	fake    *fakeBackend
	got     chan any
	states  chan *actors.BrokerState
	logs    *runtimetest.Buffer
	started time.Time
}

// rigLimits: 100 requests/s (burst 10) and 10,000 tokens/s (burst 1,000);
// with two members expected, the local share is half of each.
var rigLimits = actors.Limits{RequestsPerSecond: 100, RequestBurst: 10, TokensPerSecond: 10_000, TokenBurst: 1000}

// newRig starts a broker with a backend named label; it must run in a
// synctest bubble.
func newRig(t *testing.T, label string) *rig {
	t.Helper()
	cfg := MemberConfig{Address: "127.0.0.1:7070", Key: "k", ExpectedMembers: 2}.withDefaults()
	r := &rig{
		t: t, sys: newSystem(slog.New(slog.DiscardHandler)), fake: &fakeBackend{calls: make(chan call, 64), label: label},
		got: make(chan any, 64), states: make(chan *actors.BrokerState, 64), logs: &runtimetest.Buffer{},
	}
	logger := slog.New(slog.NewTextHandler(r.logs, nil))
	props := brokerProps(cfg, rigLimits, logger, func() backend { return r.fake })
	spawned := make(chan *actor.PID, 1)
	r.parent = r.sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			pid, _ := ctx.SpawnNamed(props, "budget")
			spawned <- pid
		case *actors.BrokerState:
			r.states <- m
		case *actor.Stopping, *actor.Stopped, *actor.Terminated:
		default:
			r.got <- m
		}
	}))
	r.broker = <-spawned
	r.started = time.Now()
	synctest.Wait()
	if c := r.nextCall("start"); c.op != "start" {
		t.Fatalf("first call %+v", c)
	}
	if st := r.state(); !st.Joined || st.Fallbacks != 0 {
		t.Fatalf("first standing %+v", st)
	}
	return r
}

// close stops the broker and its system; the backend must be stopped.
func (r *rig) close() {
	r.t.Helper()
	r.sys.Root.StopFuture(r.parent).Wait()
	r.sys.Shutdown()
	synctest.Wait()
	r.nextCall("stop")
}

// want sends the broker a LeaseWanted from the limiter.
func (r *rig) want(requests, tokens, minTokens int64) {
	r.sys.Root.RequestWithCustomSender(r.broker, &actors.LeaseWanted{Requests: requests, Tokens: tokens, MinTokens: minTokens}, r.parent)
}

// send sends the broker m, as its backend would.
func (r *rig) send(m any) { r.sys.Root.Send(r.broker, m) }

// nextCall waits for everything to settle and returns the next call on the
// backend, which must be an op.
func (r *rig) nextCall(op string) call {
	r.t.Helper()
	synctest.Wait()
	select {
	case c := <-r.fake.calls:
		if c.op != op {
			r.t.Fatalf("call %+v, want %s", c, op)
		}
		return c
	default:
		r.t.Fatalf("no call, want %s", op)
		return call{}
	}
}

// noCall checks that the backend was not called.
func (r *rig) noCall() {
	r.t.Helper()
	synctest.Wait()
	select {
	case c := <-r.fake.calls:
		r.t.Fatalf("unexpected call %+v", c)
	default:
	}
}

// received returns what the limiter received next.
func (r *rig) received() any {
	r.t.Helper()
	synctest.Wait()
	select {
	case m := <-r.got:
		return m
	default:
		r.t.Fatal("the limiter received nothing")
		return nil
	}
}

func (r *rig) nothingReceived() {
	r.t.Helper()
	synctest.Wait()
	select {
	case m := <-r.got:
		r.t.Fatalf("the limiter received %T %+v", m, m)
	default:
	}
}

func (r *rig) state() *actors.BrokerState {
	r.t.Helper()
	synctest.Wait()
	select {
	case st := <-r.states:
		return st
	default:
		r.t.Fatal("no standing reported")
		return nil
	}
}

func (r *rig) noState() {
	r.t.Helper()
	synctest.Wait()
	select {
	case st := <-r.states:
		r.t.Fatalf("standing reported: %+v", st)
	default:
	}
}

func (r *rig) granted() *actors.LeaseGranted {
	r.t.Helper()
	g, ok := r.received().(*actors.LeaseGranted)
	if !ok {
		r.t.Fatal("the limiter received something else than a grant")
	}
	return g
}

func TestBrokerJoinedAsksTheBackendAndPassesItsGrantOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, serviceName)
		defer r.close()

		r.want(3, 300, 100)
		c := r.nextCall("lease")
		if c.ask != 1 || c.want != (actors.LeaseWanted{Requests: 3, Tokens: 300, MinTokens: 100}) || c.limits != rigLimits {
			t.Fatalf("lease call %+v", c)
		}
		lease := actors.LeaseGranted{ID: 7, Requests: 2, Tokens: 200, Expires: time.Now().Add(time.Second)}
		r.send(&leaseAnswer{ask: 1, lease: lease})
		if g := r.granted(); *g != lease {
			t.Fatalf("the limiter got %+v, want %+v", g, lease)
		}
		// The same answer again, or one for an ask overtaken: given back.
		r.send(&leaseAnswer{ask: 1, lease: lease})
		if c := r.nextCall("giveBack"); c.id != 7 || c.requests != 2 || c.tokens != 200 {
			t.Fatalf("give back %+v", c)
		}
		r.nothingReceived()
		// An empty late answer has nothing to give back.
		r.send(&leaseAnswer{ask: 1})
		r.noCall()
	})
}

func TestBrokerAsksAgainWhenTheBudgetSaysWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, redisName)
		defer r.close()
		r.want(1, 0, 0)
		r.nextCall("lease")
		const wait = 40 * time.Millisecond
		answered := time.Now()
		r.send(&leaseAnswer{ask: 1, wait: wait})
		r.noCall()
		time.Sleep(wait + 3*time.Millisecond)
		c := r.nextCall("lease")
		// Not sooner than the budget said, and at most 2 ms later.
		if d := c.at.Sub(answered); d < wait || d > wait+2*time.Millisecond {
			t.Fatalf("asked again after %v; want %v plus up to 2ms", d, wait)
		}
		if c.ask != 2 {
			t.Fatalf("ask %d, want 2", c.ask)
		}
		// A new want while a retry is armed asks at once, and the retry
		// is dropped.
		r.send(&leaseAnswer{ask: 2, wait: wait})
		synctest.Wait()
		r.want(2, 0, 0)
		if c := r.nextCall("lease"); c.ask != 3 || c.want.Requests != 2 {
			t.Fatalf("lease call %+v", c)
		}
		time.Sleep(time.Second)
		r.noCall()
	})
}

func TestJitterStaysWithinAQuarterAndTwoMilliseconds(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, time.Millisecond, 4 * time.Millisecond, time.Second} {
		for range 200 {
			if j := jitter(d); j < d || j > d+min(d/4, 2*time.Millisecond) {
				t.Fatalf("jitter(%v) = %v", d, j)
			}
		}
	}
	spread := map[time.Duration]bool{}
	for range 200 {
		spread[jitter(time.Second)] = true
	}
	if len(spread) < 100 {
		t.Fatalf("200 jitters of a second took %d values: members would ask in lockstep", len(spread))
	}
}

func TestBrokerFallsBackToItsShareAndRejoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, serviceName)
		defer r.close()
		r.want(5, 0, 0)
		r.nextCall("lease")

		// Down: the share is 50 requests/s, from an empty bucket.
		down := time.Now()
		r.send(&budgetDown{reason: "no answer within 1s"})
		st := r.state()
		if st.Joined || st.Reason != "no answer within 1s" || st.Fallbacks != 1 || !st.Since.Equal(down) {
			t.Fatalf("after going down: %+v", st)
		}
		if logs := r.logs.String(); !strings.Contains(logs, unreachableMsg) || !strings.Contains(logs, "expected_members=2") ||
			!strings.Contains(logs, "requests_per_second=50") {
			t.Fatalf("fallback log:\n%s", logs)
		}
		r.nothingReceived()
		time.Sleep(25 * time.Millisecond) // one request in 20 ms (+1 ms rounding)
		g := r.granted()
		if g.ID&localLease == 0 || g.Requests != 1 || !g.Expires.Equal(down.Add(21*time.Millisecond+localLeaseTTL)) {
			t.Fatalf("local grant %+v", g)
		}
		// The next want waits for the share's refill, not the budget.
		r.want(5, 0, 0)
		r.nothingReceived()
		time.Sleep(20 * time.Millisecond)
		if g := r.granted(); g.ID&localLease == 0 || g.Requests != 1 {
			t.Fatalf("second local grant %+v", g)
		}
		r.noCall()

		// It probes every RejoinInterval.
		time.Sleep(DefaultRejoinInterval - 45*time.Millisecond)
		r.nextCall("probe")
		time.Sleep(DefaultRejoinInterval)
		r.nextCall("probe")
		// Still down: a reason that is not a refusal is not news.
		r.send(&budgetDown{reason: "connection refused"})
		r.noState()

		// Up: it rejoins and asks the budget for what it waits for. (The
		// share's bucket is full by now: 5 requests, then nothing.)
		r.want(5, 0, 0)
		if g := r.granted(); g.Requests != 5 {
			t.Fatalf("local grant %+v", g)
		}
		r.want(4, 0, 0)
		r.send(&budgetUp{})
		st = r.state()
		if !st.Joined || st.Reason != "" || st.Rejoins != 1 || st.Fallbacks != 1 {
			t.Fatalf("after rejoining: %+v", st)
		}
		if c := r.nextCall("lease"); c.want.Requests != 4 {
			t.Fatalf("lease call %+v", c)
		}
		r.nothingReceived()
		if !strings.Contains(r.logs.String(), "lionactor: budget service reachable again; rejoined") {
			t.Fatalf("rejoin log:\n%s", r.logs.String())
		}
		// No more probes, and the local share is gone: a local lease
		// coming back has nowhere to go.
		r.send(&actors.LeaseUnused{ID: localLease | 1, Requests: 1})
		time.Sleep(3 * DefaultRejoinInterval)
		r.noCall()
		// Up again while joined changes nothing.
		r.send(&budgetUp{})
		r.noState()
	})
}

func TestBrokerRefusalsAreToldAndRetold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, redisName)
		defer r.close()
		r.send(&budgetDown{reason: "Redis: WRONGPASS", refused: true})
		if st := r.state(); st.Joined || st.Reason != "Redis: WRONGPASS" {
			t.Fatalf("standing %+v", st)
		}
		if !strings.Contains(r.logs.String(), "lionactor: budget on Redis refused this member; using the local share") {
			t.Fatalf("log:\n%s", r.logs.String())
		}
		// A refusal for another reason is news; the same one is not.
		r.send(&budgetDown{reason: "Redis: WRONGPASS", refused: true})
		r.noState()
		r.send(&budgetDown{reason: "Redis: NOPERM", refused: true})
		if st := r.state(); st.Reason != "Redis: NOPERM" || st.Fallbacks != 1 {
			t.Fatalf("standing %+v", st)
		}
		if n := strings.Count(r.logs.String(), "refused this member"); n != 2 {
			t.Fatalf("%d refusal lines:\n%s", n, r.logs.String())
		}
	})
}

func TestBrokerDownMessagesNameTheBudget(t *testing.T) {
	for _, c := range []struct {
		name    string
		refused bool
		want    string
	}{
		{serviceName, false, unreachableMsg},
		{serviceName, true, refusedMsg},
		{redisName, false, "lionactor: budget on Redis unreachable; using the local share"},
	} {
		b := &broker{backend: &fakeBackend{label: c.name}}
		if got := b.downMsg(&budgetDown{refused: c.refused}); got != c.want {
			t.Errorf("%s, refused %v: %q, want %q", c.name, c.refused, got, c.want)
		}
	}
}

func TestBrokerReturnsAndAdjustsWhereTheLeaseCameFrom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, serviceName)
		defer r.close()
		// Joined: the budget's leases and adjustments go to the backend.
		r.send(&actors.LeaseUnused{ID: 9, Requests: 2, Tokens: 20})
		if c := r.nextCall("giveBack"); c.id != 9 || c.requests != 2 || c.tokens != 20 {
			t.Fatalf("give back %+v", c)
		}
		r.send(&actors.AdjustTokens{Delta: -30})
		if c := r.nextCall("adjust"); c.delta != -30 {
			t.Fatalf("adjust %+v", c)
		}

		// On the local share: the budget's leases lapse there; the local
		// ones, and adjustments, go to the local bucket.
		r.send(&budgetDown{reason: "gone"})
		r.state()
		r.send(&actors.LeaseUnused{ID: 9, Requests: 2})
		r.send(&actors.AdjustTokens{Delta: 50})
		r.noCall()
		time.Sleep(100 * time.Millisecond) // 5 requests refilled
		r.want(10, 0, 0)
		if g := r.granted(); g.Requests != 5 {
			t.Fatalf("granted %d requests after 100 ms at 50/s", g.Requests)
		}
		r.send(&actors.LeaseUnused{ID: localLease | 1, Requests: 3})
		r.want(10, 0, 0)
		if g := r.granted(); g.Requests != 3 {
			t.Fatalf("granted %d requests after a refund of 3", g.Requests)
		}
	})
}

func TestBrokerSharesLongPausesOnlyWhileJoined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, redisName)
		defer r.close()
		long := time.Now().Add(50 * time.Millisecond)
		r.send(&actors.PauseUntil{Until: long})
		if c := r.nextCall("pause"); !c.until.Equal(long) {
			t.Fatalf("pause %+v", c)
		}
		r.send(&actors.PauseUntil{Until: time.Now().Add(minSharedPause - time.Millisecond)})
		r.noCall()

		// Another member's pause reaches the limiter, once it is known.
		r.send(&pauseShared{until: time.Now().Add(time.Second)})
		r.nothingReceived()
		r.want(1, 0, 0)
		r.nextCall("lease")
		other := time.Now().Add(time.Second)
		r.send(&pauseShared{until: other})
		if p, ok := r.received().(*actors.SharedPause); !ok || !p.Until.Equal(other) {
			t.Fatalf("the limiter got %+v, want the shared pause", p)
		}
	})
}

func TestBrokerPausesOnTheLocalShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, serviceName)
		defer r.close()
		r.want(1, 0, 0)
		r.nextCall("lease")
		r.send(&budgetDown{reason: "gone"})
		r.state()
		time.Sleep(25 * time.Millisecond)
		r.granted()

		// A pause of its own is kept here, not shared.
		until := time.Now().Add(200 * time.Millisecond)
		r.send(&actors.PauseUntil{Until: until})
		r.want(1, 0, 0)
		r.noCall()
		time.Sleep(150 * time.Millisecond)
		r.nothingReceived()
		time.Sleep(60 * time.Millisecond)
		if g := r.granted(); g.Requests != 1 {
			t.Fatalf("grant after the pause %+v", g)
		}
		// Another member's pause holds the local share and the limiter.
		other := time.Now().Add(300 * time.Millisecond)
		r.send(&pauseShared{until: other})
		if p, ok := r.received().(*actors.SharedPause); !ok || !p.Until.Equal(other) {
			t.Fatalf("the limiter got %+v, want the shared pause", p)
		}
		r.want(1, 0, 0)
		time.Sleep(250 * time.Millisecond)
		r.nothingReceived()
		time.Sleep(60 * time.Millisecond)
		r.granted()
	})
}

func TestBrokerLimitsChangeInBothBehaviours(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, serviceName)
		defer r.close()
		lower := rigLimits
		lower.RequestsPerSecond = 10
		r.send(&actors.SetLimits{Limits: lower})
		r.want(1, 0, 0)
		if c := r.nextCall("lease"); c.limits != lower {
			t.Fatalf("lease at %+v, want %+v", c.limits, lower)
		}
		r.send(&budgetDown{reason: "gone"})
		r.state()
		// The share of 10/s is 5/s: one request in 200 ms (+1 ms).
		time.Sleep(199 * time.Millisecond)
		r.nothingReceived()
		time.Sleep(10 * time.Millisecond)
		r.granted()
		// Back to 100/s: the share is 50/s again.
		r.send(&actors.SetLimits{Limits: rigLimits})
		r.want(1, 0, 0)
		time.Sleep(25 * time.Millisecond)
		r.granted()
	})
}

func TestBrokerFlushWaitsForTheBackendOrItsReplyTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, redisName)
		defer r.close()
		done := make(chan struct{})
		r.send(&actors.ReturnLeases{Done: done})
		if c := r.nextCall("leave"); !c.wait {
			t.Fatalf("leave %+v, want it to wait", c)
		}
		// A second stop during the flush is done at once.
		again := make(chan struct{})
		r.send(&actors.ReturnLeases{Done: again})
		synctest.Wait()
		select {
		case <-again:
		default:
			t.Fatal("the second ReturnLeases is not done")
		}
		select {
		case <-done:
			t.Fatal("done before the backend had the leases")
		default:
		}
		r.send(&flushed{})
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("not done once the backend had the leases")
		}

		// Without a word from the backend: done after ReplyTimeout.
		done = make(chan struct{})
		start := time.Now()
		r.send(&actors.ReturnLeases{Done: done})
		r.nextCall("leave")
		<-done
		if d := time.Since(start); d != DefaultReplyTimeout {
			t.Fatalf("done after %v, want the reply timeout %v", d, DefaultReplyTimeout)
		}
		// A grant after the stop began is given back.
		r.send(&leaseAnswer{ask: 0, lease: actors.LeaseGranted{ID: 3, Requests: 1}})
		r.nextCall("giveBack")
	})
}

func TestBrokerOnItsShareLeavesWithoutWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, serviceName)
		defer r.close()
		r.want(1, 0, 0)
		r.nextCall("lease")
		r.send(&budgetDown{reason: "gone"})
		r.state()
		done := make(chan struct{})
		r.send(&actors.ReturnLeases{Done: done})
		if c := r.nextCall("leave"); c.wait {
			t.Fatalf("leave %+v, want no wait", c)
		}
		<-done
		// What it wanted is forgotten: nothing is granted any more.
		time.Sleep(time.Second)
		r.nextCall("probe")
		r.nothingReceived()
	})
}

func TestBrokerHandsItsBackendWhatItDoesNotKnow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, serviceName)
		defer r.close()
		type backendOwn struct{ n int }
		r.send(&backendOwn{1})
		if c := r.nextCall("receive"); c.msg.(*backendOwn).n != 1 {
			t.Fatalf("receive %+v", c)
		}
		r.send(&budgetDown{reason: "gone"})
		r.state()
		r.send(&backendOwn{2})
		if c := r.nextCall("receive"); c.msg.(*backendOwn).n != 2 {
			t.Fatalf("receive %+v", c)
		}
		// A late answer on the local share is given back.
		r.send(&leaseAnswer{ask: 1, lease: actors.LeaseGranted{ID: 4, Requests: 1, Tokens: 5}})
		if c := r.nextCall("giveBack"); c.id != 4 {
			t.Fatalf("give back %+v", c)
		}
		// A dead letter of the remote layer is nobody's business.
		r.send(&actor.DeadLetterResponse{})
		r.noCall()
	})
}

// A broker that panics is restarted by its supervisor as a new one: the
// old one's backend is stopped first, so that nothing of it reaches the
// new one, which starts joined.
func TestBrokerRestartedStopsItsBackendFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, redisName)
		defer r.close()
		r.send(&budgetDown{reason: "gone"})
		if st := r.state(); st.Joined {
			t.Fatalf("standing %+v", st)
		}
		r.send(boom{})
		r.nextCall("stop")
		r.nextCall("start")
		if st := r.state(); !st.Joined || st.Fallbacks != 0 {
			t.Fatalf("standing after the restart %+v", st)
		}
		// The old one's probe timer was stopped with it.
		time.Sleep(3 * DefaultRejoinInterval)
		r.noCall()
	})
}
