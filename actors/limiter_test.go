package actors

import (
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

// limiterFixture is a limiter whose permits go to a probe.
type limiterFixture struct {
	sys    *actor.ActorSystem
	budget *buckets
	probe  *probe
	pid    *actor.PID
}

func startLimiter(t *testing.T, lim Limits) *limiterFixture {
	t.Helper()
	sys := newSystem(t)
	f := &limiterFixture{sys: sys, budget: newBuckets(lim), probe: spawnProbe(t, sys)}
	f.pid = sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newLimiter(f.budget, f.probe.pid, nil) }))
	stopActor(t, sys, f.pid)
	return f
}

func (f *limiterFixture) send(msg any) { f.sys.Root.Send(f.pid, msg) }

func (f *limiterFixture) ask(ticket uint64, tokens int) {
	f.send(&permitAsk{ticket: ticket, tokens: tokens})
}

// grant waits for the next permit, which must be granted to ticket.
func (f *limiterFixture) grant(t *testing.T, ticket uint64) time.Time {
	t.Helper()
	g, r := expect[*permitGranted](t, f.probe)
	if g.ticket != ticket {
		t.Fatalf("permit granted to ticket %d, want %d", g.ticket, ticket)
	}
	return r.at
}

func TestLimiterGrantsInArrivalOrder(t *testing.T) {
	f := startLimiter(t, noLimits)
	for i := uint64(1); i <= 50; i++ {
		f.ask(i, 0)
	}
	for i := uint64(1); i <= 50; i++ {
		f.grant(t, i)
	}
}

// The limiter's arithmetic is tested on made-up instants in
// permits_test.go; these tests check that the actor carries it out with
// real timers and messages.

func TestLimiterWakesForThePermitsDue(t *testing.T) {
	const perSecond, n = 50.0, 6
	f := startLimiter(t, Limits{RequestsPerSecond: perSecond, RequestBurst: 1})
	start := time.Now()
	for i := range n {
		f.ask(uint64(i+1), 0)
	}
	for k := range n {
		at := f.grant(t, uint64(k+1))
		// A bucket of one admits at most 1 + rate·t in any t: a timer may
		// be late, never early.
		earliest := start.Add(time.Duration(float64(k) / perSecond * float64(time.Second)))
		if at.Before(earliest) {
			t.Errorf("grant %d at %v after start, earlier than the bucket allows (%v)", k, at.Sub(start), earliest.Sub(start))
		}
	}
}

func TestLimiterPauseByMessage(t *testing.T) {
	f := startLimiter(t, noLimits)
	until := time.Now().Add(100 * time.Millisecond)
	f.send(&PauseUntil{Until: until})
	f.ask(1, 0)
	if at := f.grant(t, 1); at.Before(until) {
		t.Errorf("granted %v before the pause's end", until.Sub(at))
	}
}

func TestLimiterDeniesAskOverLoweredBurst(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100})
	f.send(&SetLimits{Limits: Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 50}})
	f.ask(1, 80)
	f.ask(2, 50)
	d, _ := expect[*permitDenied](t, f.probe)
	var tle *messages.TokenLimitError
	if d.ticket != 1 || !errors.As(d.err, &tle) || tle.Tokens != 80 || tle.Burst != 50 {
		t.Fatalf("permitDenied %+v, want ticket 1 with TokenLimitError{80, 50}", d)
	}
	f.grant(t, 2) // the ask behind it still goes
}

func TestLimiterAdjustTokensByMessage(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1, TokenBurst: 100})
	f.send(&AdjustTokens{Delta: 40})
	f.send(&AdjustTokens{Delta: -10})
	f.barrier(t, 1)
	if got := f.budget.TokensAvailable(time.Now()); got < 70 || got > 73 {
		t.Errorf("after charging 40 and refunding 10 of 100: TokensAvailable = %v, want 70 (+ a few seconds' refill)", got)
	}
}

// barrier returns once the limiter has handled every message sent to
// it before: it waits for the grant of an ask that needs nothing.
func (f *limiterFixture) barrier(t *testing.T, ticket uint64) {
	t.Helper()
	f.ask(ticket, 0)
	f.grant(t, ticket)
}

func TestLimiterStopStopsItsTimer(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: 10, RequestBurst: 1})
	ticks := make(chan struct{}, 16)
	sub := f.sys.EventStream.Subscribe(func(evt any) {
		if dl, ok := evt.(*actor.DeadLetterEvent); ok {
			if _, ok := dl.Message.(*limiterTick); ok {
				ticks <- struct{}{}
			}
		}
	})
	defer f.sys.EventStream.Unsubscribe(sub)
	f.ask(1, 0)
	f.ask(2, 0) // due at 100 ms: the timer is armed
	// The poison pill is a user message: it is handled after both asks.
	if err := f.sys.Root.PoisonFuture(f.pid).Wait(); err != nil {
		t.Fatal(err)
	}
	f.grant(t, 1)
	select {
	case <-ticks:
		t.Fatal("the limiter's timer fired after it stopped")
	case r := <-f.probe.ch:
		t.Fatalf("stopped limiter sent %T %+v", r.msg, r.msg)
	case <-time.After(300 * time.Millisecond):
	}
}
