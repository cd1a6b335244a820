package actors

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

// limiterFixture is a limiter whose permits go to a probe.
type limiterFixture struct {
	sys    *actor.ActorSystem
	budget *Budget
	probe  *probe
	pid    *actor.PID
}

func startLimiter(t *testing.T, lim Limits) *limiterFixture {
	t.Helper()
	sys := newSystem(t)
	f := &limiterFixture{sys: sys, budget: NewBudget(lim), probe: spawnProbe(t, sys)}
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

func TestLimiterFollowsTheRequestBucket(t *testing.T) {
	const (
		perSecond = 20.0
		burst     = 3
		n         = 10
		slack     = time.Second // generous: timers and -race only delay grants
	)
	f := startLimiter(t, Limits{RequestsPerSecond: perSecond, RequestBurst: burst})
	start := time.Now()
	for i := range n {
		f.ask(uint64(i+1), 0)
	}
	for k := range n {
		at := f.grant(t, uint64(k+1))
		// A token bucket admits at most burst + rate·t events in any t.
		earliest := start.Add(time.Duration(float64(max(0, k-burst+1)) / perSecond * float64(time.Second)))
		if at.Before(earliest) {
			t.Errorf("grant %d at %v after start, earlier than the bucket allows (%v)", k, at.Sub(start), earliest.Sub(start))
		}
		if latest := earliest.Add(slack); at.After(latest) {
			t.Errorf("grant %d at %v after start, later than %v", k, at.Sub(start), latest.Sub(start))
		}
	}
}

func TestLimiterFollowsTheTokenBucket(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100})
	start := time.Now()
	// 100 at once, then 250 more at 1000/s: the last is due 250 ms on.
	for i := range 7 {
		f.ask(uint64(i+1), 50)
	}
	var last time.Time
	for i := range 7 {
		last = f.grant(t, uint64(i+1))
	}
	if d := last.Sub(start); d < 250*time.Millisecond || d > 250*time.Millisecond+time.Second {
		t.Errorf("350 tokens at 1000/s with a burst of 100 granted after %v, want 250ms (+ slack)", d)
	}
}

func TestLimiterLargeAskIsNotOvertaken(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 200, TokenBurst: 100})
	start := time.Now()
	f.ask(1, 100) // empties the bucket
	f.ask(2, 100) // due in 0.5 s
	f.ask(3, 1)   // would fit in 5 ms if it could go first
	f.grant(t, 1)
	big := f.grant(t, 2)
	small := f.grant(t, 3)
	if big.Sub(start) < 500*time.Millisecond {
		t.Errorf("second large ask granted after %v, before the bucket refilled (500ms)", big.Sub(start))
	}
	if small.Before(big) {
		t.Errorf("small ask granted at %v, before the large one ahead of it (%v)", small.Sub(start), big.Sub(start))
	}
}

func TestLimiterCancelOfTheWaitingHead(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: 1, RequestBurst: 1})
	start := time.Now()
	f.ask(1, 0) // takes the burst
	f.ask(2, 0) // reserved, due at 1 s
	f.ask(3, 0)
	f.ask(4, 0)
	f.send(&permitCancel{ticket: 4})  // not the head: just dropped
	f.send(&permitCancel{ticket: 99}) // unknown: ignored
	f.send(&permitCancel{ticket: 2})  // the head: its reservation goes back
	f.grant(t, 1)
	at := f.grant(t, 3)
	// 3 takes the slot 2 gave back (due 1 s); had 2's reservation been kept,
	// 3 would be due at 2 s.
	if d := at.Sub(start); d < time.Second || d > 1800*time.Millisecond {
		t.Errorf("ask behind a cancelled head granted after %v, want about 1s", d)
	}
	f.probe.expectNone(t, 50*time.Millisecond) // neither 2 nor 4 is ever granted
}

func TestLimiterPause(t *testing.T) {
	f := startLimiter(t, noLimits)
	start := time.Now()
	until := start.Add(300 * time.Millisecond)
	f.send(&PauseUntil{Until: until})
	f.send(&PauseUntil{Until: start.Add(50 * time.Millisecond)}) // earlier: ignored
	for i := uint64(1); i <= 3; i++ {
		f.ask(i, 0)
	}
	for i := uint64(1); i <= 3; i++ {
		if at := f.grant(t, i); at.Before(until) {
			t.Errorf("grant %d at %v, during the pause (until %v)", i, at.Sub(start), until.Sub(start))
		}
	}
	// Once the pause is over and the queue is empty the budget shows none.
	f.ask(4, 0)
	f.grant(t, 4)
	if p := f.budget.PausedUntil(); !p.IsZero() {
		t.Errorf("PausedUntil = %v after the pause ended, want zero", p)
	}
}

func TestLimiterPauseOfAReservedHead(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: 10, RequestBurst: 1})
	start := time.Now()
	f.ask(1, 0)
	f.ask(2, 0) // reserved, due at 100 ms: the timer is armed for it
	// A pause that ends before the head is due changes nothing; one that
	// ends later pushes the head back to its end.
	f.send(&PauseUntil{Until: start.Add(50 * time.Millisecond)})
	until := start.Add(400 * time.Millisecond)
	f.send(&PauseUntil{Until: until})
	f.grant(t, 1)
	if at := f.grant(t, 2); at.Before(until) {
		t.Errorf("reserved head granted at %v, during the pause (until %v)", at.Sub(start), until.Sub(start))
	}
}

func TestLimiterSetLimitsReplansTheHead(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: 0.1, RequestBurst: 1})
	start := time.Now()
	f.ask(1, 0)
	f.ask(2, 0) // due at 10 s at the old rate
	f.send(&SetLimits{Limits: Limits{RequestsPerSecond: 1000, RequestBurst: 1}})
	f.grant(t, 1)
	if d := f.grant(t, 2).Sub(start); d > 2*time.Second {
		t.Errorf("head granted %v after start; raising the rate should let it go at once", d)
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

func TestLimiterDeniedAskGivesBackItsRequest(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: 1, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100})
	f.send(&SetLimits{Limits: Limits{RequestsPerSecond: 1, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 10}})
	start := time.Now()
	f.ask(1, 20)
	f.ask(2, 0)
	expect[*permitDenied](t, f.probe)
	// The denied ask took no request from the bucket: 2 gets the burst.
	if d := f.grant(t, 2).Sub(start); d > 500*time.Millisecond {
		t.Errorf("ask behind a denied one granted after %v, want at once", d)
	}
}

// barrier returns once the limiter has handled every message sent to
// it before: it waits for the grant of an ask that needs nothing.
func (f *limiterFixture) barrier(t *testing.T, ticket uint64) {
	t.Helper()
	f.ask(ticket, 0)
	f.grant(t, ticket)
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestLimiterAdjustTokens(t *testing.T) {
	// A token rate of 1/s: the refill during the test is a few tokens at most.
	f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1, TokenBurst: 100})

	f.send(&AdjustTokens{Delta: 0}) // nothing to do
	f.send(&AdjustTokens{Delta: 40})
	f.barrier(t, 1)
	if got := f.budget.TokensAvailable(time.Now()); !near(got, 60, 3) {
		t.Fatalf("after charging 40 of 100: TokensAvailable = %v, want about 60", got)
	}

	f.send(&AdjustTokens{Delta: -30})
	f.barrier(t, 2)
	if got := f.budget.Credit(); got != 30 {
		t.Errorf("after refunding 30: Credit = %v, want 30", got)
	}
	if got := f.budget.TokensAvailable(time.Now()); !near(got, 90, 3) {
		t.Errorf("after refunding 30: TokensAvailable = %v, want about 90", got)
	}

	f.send(&AdjustTokens{Delta: -1000}) // capped by the room in the bucket
	f.barrier(t, 3)
	if got := f.budget.TokensAvailable(time.Now()); got > 100+1e-6 || got < 99 {
		t.Errorf("after refunding more than the room: TokensAvailable = %v, want 100", got)
	}

	// A charge spends the credit first, then the bucket, in pieces no
	// larger than the burst.
	f.send(&AdjustTokens{Delta: 350})
	f.barrier(t, 4)
	if got := f.budget.Credit(); got != 0 {
		t.Errorf("after a charge larger than the credit: Credit = %v, want 0", got)
	}
	if got := f.budget.TokensAvailable(time.Now()); !near(got, -250, 3) {
		t.Errorf("after charging 350 with 100 available: TokensAvailable = %v, want about -250", got)
	}
}

func TestLimiterAskUsesCredit(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1, TokenBurst: 100})
	f.ask(1, 100) // empties the bucket
	f.grant(t, 1)
	f.send(&AdjustTokens{Delta: -60})
	start := time.Now()
	f.ask(2, 50) // paid by the credit: granted at once
	if d := f.grant(t, 2).Sub(start); d > 500*time.Millisecond {
		t.Errorf("ask covered by refunded credit granted after %v, want at once", d)
	}
	if got := f.budget.Credit(); !near(got, 10, 1e-9) {
		t.Errorf("Credit after using 50 of 60 = %v, want 10", got)
	}
}

func TestLimiterCancelReturnsCredit(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1, TokenBurst: 100})
	f.ask(1, 100) // empties the bucket
	f.grant(t, 1)
	f.send(&AdjustTokens{Delta: -30}) // credit 30
	f.ask(2, 50)                      // 30 from the credit, 20 from the bucket: due in 20 s
	f.send(&permitCancel{ticket: 2})
	f.barrier(t, 3)
	if got := f.budget.Credit(); got != 30 {
		t.Errorf("Credit after cancelling the ask that used it = %v, want 30", got)
	}
}

func TestLimiterRefundLetsTheHeadGoSooner(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 10, TokenBurst: 100})
	start := time.Now()
	f.ask(1, 100) // empties the bucket
	f.ask(2, 100) // due in 10 s
	f.send(&AdjustTokens{Delta: -100})
	f.grant(t, 1)
	if d := f.grant(t, 2).Sub(start); d > 2*time.Second {
		t.Errorf("head granted %v after start; the refund should let it go at once", d)
	}
}

func TestLimiterRefundNeverLiftsTheBudgetAboveTheBurst(t *testing.T) {
	f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100})
	f.ask(1, 100) // empties the bucket
	f.grant(t, 1)
	f.send(&AdjustTokens{Delta: -100}) // the call used none of it
	// While paused the bucket refills to its capacity. The provider's bucket
	// holds no more than that either: the refund cannot come on top.
	pauseEnd := time.Now().Add(200 * time.Millisecond)
	f.send(&PauseUntil{Until: pauseEnd})
	f.ask(2, 100)
	f.ask(3, 100)
	f.grant(t, 2)
	at := f.grant(t, 3)
	// 200 tokens from a bucket of 100 refilling at 1000/s: the second 100
	// are due 100 ms after the pause at the earliest.
	if d := at.Sub(pauseEnd); d < 100*time.Millisecond {
		t.Errorf("200 tokens granted within %v of the pause's end; a bucket of 100 at 1000/s needs 100ms", d)
	}
	if got := f.budget.TokensAvailable(time.Now()); got > 100 {
		t.Errorf("TokensAvailable = %v, more than the burst", got)
	}
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

// A refund that reaches the limiter when the head's permit is due, before
// the tick that grants it, must not plan the head again: its reservation
// can no longer be given back, and a second one would push the head, and
// every permit after it, one interval later. At 20 requests a second a run
// lost a slot to each such refund.
func TestLimiterRefundAtTheHeadsDueTime(t *testing.T) {
	b := NewBudget(Limits{RequestsPerSecond: 20, RequestBurst: 1, TokensPerSecond: 2500, TokenBurst: 150_000})
	l := newLimiter(b, nil, nil)
	t0 := time.Unix(1000, 0)
	const interval = 50 * time.Millisecond
	for ticket := uint64(1); ticket <= 3; ticket++ {
		l.pending = append(l.pending, pendingAsk{ask: permitAsk{ticket: ticket, tokens: 94}})
	}
	// grantAt plans the head at now, as pump does, and grants it when due.
	grantAt := func(now time.Time) time.Time {
		head := &l.pending[0]
		if !head.reserved {
			if err := l.reserve(head, now); err != nil {
				t.Fatal(err)
			}
		}
		due := head.due
		l.pop()
		return due
	}
	if got := grantAt(t0); !got.Equal(t0) {
		t.Fatalf("first permit at %v, want at once", got.Sub(t0))
	}
	if err := l.reserve(&l.pending[0], t0); err != nil {
		t.Fatal(err)
	}
	if due := l.pending[0].due; !due.Equal(t0.Add(interval)) {
		t.Fatalf("second permit due at %v, want %v", due.Sub(t0), interval)
	}
	// The first call's refund arrives a millisecond after the second
	// permit fell due, before the late tick that grants it.
	late := t0.Add(interval + time.Millisecond)
	l.reconcile(-4, late)
	if got := grantAt(late); !got.Equal(t0.Add(interval)) {
		t.Errorf("second permit due at %v, want %v", got.Sub(t0), interval)
	}
	if got := grantAt(late); !got.Equal(t0.Add(2 * interval)) {
		t.Errorf("third permit due at %v, want %v", got.Sub(t0), 2*interval)
	}

	// A refund before the head is due still plans it again, so that the
	// tokens it frees can let it go sooner.
	l.pending = append(l.pending, pendingAsk{ask: permitAsk{ticket: 4, tokens: 94}})
	if err := l.reserve(&l.pending[0], t0.Add(2*interval)); err != nil {
		t.Fatal(err)
	}
	l.reconcile(-4, t0.Add(2*interval+interval/2))
	if l.pending[0].reserved {
		t.Errorf("a head not yet due kept its reservation through a refund")
	}
}
