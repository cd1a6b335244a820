package actors

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

// The limiter's arithmetic is tested on made-up instants in
// permits_test.go; these tests check that the actor carries it out with
// timers and messages. Most run in a bubble of fake time (testing/synctest),
// where a timer fires exactly when it is due and synctest.Wait says that
// every message sent has been handled.

// limiterFixture is a limiter whose answers go to a probe standing in for
// the queue.
type limiterFixture struct {
	sys    *actor.ActorSystem
	budget *buckets
	queue  *probe
	pid    *actor.PID
}

func startLimiter(t *testing.T, lim Limits) *limiterFixture {
	t.Helper()
	sys := newSystem(t)
	f := &limiterFixture{sys: sys, budget: newBuckets(lim), queue: spawnProbe(t, sys)}
	f.pid = sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newLimiter(f.budget, f.queue.pid, nil) }))
	stopActor(t, sys, f.pid)
	return f
}

func (f *limiterFixture) send(msg any) { f.sys.Root.Send(f.pid, msg) }

// want sends the queue's ask for n requests costing tokens each.
func (f *limiterFixture) want(n, tokens int64) {
	f.send(&permitsWanted{requests: n, tokens: n * tokens, minRequests: 1, minTokens: tokens, headTokens: tokens})
}

// granted expects the limiter's next message to the queue, a grant, and
// returns it with when it arrived.
func (f *limiterFixture) granted(t *testing.T) (permitsGranted, time.Time) {
	t.Helper()
	g, r := expect[*permitsGranted](t, f.queue)
	return *g, r.at
}

// revoked expects the limiter's next message to the queue to be
// permitsRevoked.
func (f *limiterFixture) revoked(t *testing.T) {
	t.Helper()
	expect[*permitsRevoked](t, f.queue)
}

// quiet checks, in a bubble, that every message sent has been handled and
// that the queue got nothing more.
func quiet(t *testing.T, probes ...*probe) {
	t.Helper()
	synctest.Wait()
	for _, p := range probes {
		select {
		case r := <-p.ch:
			t.Fatalf("unexpected %T %+v", r.msg, r.msg)
		default:
		}
	}
}

func TestLimiterWakesForThePermitsDue(t *testing.T) {
	const perSecond, n = 50.0, 8
	f := startLimiter(t, requestsOnly(perSecond, 1))
	start := time.Now() // the bucket, full, was made before
	got := 0
	for got < n {
		f.want(int64(n-got), 0)
		g, at := f.granted(t)
		if g.requests < 1 || got+int(g.requests) > n {
			t.Fatalf("grant of %d with %d of %d granted", g.requests, got, n)
		}
		for k := got; k < got+int(g.requests); k++ {
			// A bucket of one admits at most 1 + rate·t in any t: a timer
			// may be late, never early.
			earliest := start.Add(time.Duration(float64(k) / perSecond * float64(time.Second)))
			if at.Before(earliest) {
				t.Errorf("permit %d at %v after start, earlier than the bucket allows (%v)", k, at.Sub(start), earliest.Sub(start))
			}
		}
		got += int(g.requests)
	}
}

// In fake time the limiter's timer fires when the permit is due, not
// later: the grants come exactly one interval apart.
func TestLimiterWakesWhenThePermitIsDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLimiter(t, requestsOnly(50, 2))
		start := time.Now()
		want := []time.Duration{0, 0, ms(20), ms(40), ms(60)}
		var at []time.Duration
		for len(at) < len(want) {
			f.want(int64(len(want)-len(at)), 0)
			g, when := f.granted(t)
			for range g.requests {
				at = append(at, when.Sub(start))
			}
		}
		for i := range want {
			if at[i] != want[i] {
				t.Fatalf("permits at %v, want %v", at, want)
			}
		}
		quiet(t, f.queue)
	})
}

func TestLimiterRevokes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLimiter(t, requestsOnly(10, 1))
		now := time.Now()
		f.send(&PauseUntil{Until: now.Add(time.Second)})
		f.revoked(t)
		f.send(&PauseUntil{Until: now.Add(ms(500))}) // ends earlier: changes nothing
		f.send(&SharedPause{Until: now.Add(time.Second)})
		quiet(t, f.queue)
		f.send(&SharedPause{Until: now.Add(2 * time.Second)})
		f.revoked(t)
		if got := f.budget.PausedUntil(); !got.Equal(now.Add(2 * time.Second)) {
			t.Errorf("PausedUntil %v, want 2s", got.Sub(now))
		}
		// Any change of limits, even to the same ones.
		f.send(&SetLimits{Limits: requestsOnly(10, 1)})
		f.revoked(t)
		f.send(&SetLimits{Limits: noLimits})
		f.revoked(t)
		f.send("noise") // not the limiter's: ignored
		quiet(t, f.queue)
	})
}

func TestLimiterPauseByMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLimiter(t, noLimits)
		start := time.Now()
		until := start.Add(ms(100))
		f.send(&PauseUntil{Until: until})
		f.revoked(t)
		f.want(3, 0)
		quiet(t, f.queue)
		if got := f.budget.PausedUntil(); !got.Equal(until) {
			t.Errorf("PausedUntil %v, want 100ms", got.Sub(start))
		}
		g, at := f.granted(t)
		if !g.unlimited || !at.Equal(until) {
			t.Errorf("granted %+v at %v, want unlimited at the pause's end (100ms)", g, at.Sub(start))
		}
		if got := f.budget.PausedUntil(); !got.IsZero() {
			t.Errorf("PausedUntil %v after the pause, want zero", got.Sub(start))
		}
	})
}

func TestLimiterUnlimitedUntilTheLimitsChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Without a request limit the runtime gives the tree no request
		// burst either.
		f := startLimiter(t, Limits{RequestsPerSecond: rate.Inf})
		start := time.Now()
		f.want(1, 0)
		if g, _ := f.granted(t); g != (permitsGranted{unlimited: true}) {
			t.Fatalf("no limits: granted %+v, want unlimited", g)
		}
		f.send(&SetLimits{Limits: requestsOnly(10, 5)})
		f.revoked(t)
		// The queue returns nothing (it held no count) and asks again: the
		// request bucket, turned on, starts empty.
		f.want(2, 0)
		g, at := f.granted(t)
		if g != (permitsGranted{requests: 1}) || !at.Equal(start.Add(ms(100))) {
			t.Errorf("granted %+v at %v, want one request at 100ms", g, at.Sub(start))
		}
	})
}

func TestLimiterDeniesByMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLimiter(t, tokenLimits)
		f.send(&SetLimits{Limits: tokensOnly(1000, 50)})
		f.revoked(t)
		f.send(&permitsWanted{requests: 2, tokens: 130, minRequests: 1, minTokens: 80, headTokens: 80})
		d, _ := expect[*permitsDenied](t, f.queue)
		var tle *messages.TokenLimitError
		if !errors.As(d.err, &tle) || tle.Tokens != 80 || tle.Burst != 50 {
			t.Fatalf("denied with %v, want TokenLimitError{80, 50}", d.err)
		}
		// The queue fails its head and asks for the next.
		f.want(1, 50)
		if g, _ := f.granted(t); g != (permitsGranted{requests: 1, tokens: 50}) {
			t.Errorf("granted %+v, want (1, 50)", g)
		}
	})
}

func TestLimiterAdjustTokensByMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLimiter(t, tokensOnly(1, 100))
		f.send(&AdjustTokens{Delta: 40})
		f.send(&AdjustTokens{Delta: -10})
		synctest.Wait()
		nearly(t, "after charging 40 and refunding 10 of 100: tokens", f.budget.TokensAvailable(time.Now()), 70)
		// A refund lets a head waiting for tokens go at once.
		f.want(1, 100)
		quiet(t, f.queue)
		start := time.Now()
		f.send(&AdjustTokens{Delta: -100})
		if g, at := f.granted(t); g != (permitsGranted{requests: 1, tokens: 100}) || !at.Equal(start) {
			t.Errorf("after the refund: granted %+v at %v, want (1, 100) at once", g, at.Sub(start))
		}
	})
}

func TestLimiterTakesBackWhatTheQueueReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLimiter(t, requestsOnly(1, 3))
		start := time.Now()
		f.want(3, 0)
		if g, _ := f.granted(t); g.requests != 3 {
			t.Fatalf("granted %+v, want 3", g)
		}
		f.send(&permitsReturned{requests: 2})
		f.want(3, 0)
		if g, at := f.granted(t); g.requests != 2 || !at.Equal(start) {
			t.Errorf("after 2 came back: granted %+v at %v, want 2 at once", g, at.Sub(start))
		}
	})
}

func TestLimiterWithdrawnAsk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startLimiter(t, requestsOnly(1, 1))
		start := time.Now()
		f.want(2, 0)
		f.granted(t)
		f.want(1, 0) // reserved: due at 1 s
		f.send(&permitsWithdrawn{})
		time.Sleep(ms(1500))
		quiet(t, f.queue) // a withdrawn ask is not answered
		// The withdrawn reservation took nothing: the bucket is full again.
		f.want(1, 0)
		if _, at := f.granted(t); !at.Equal(start.Add(ms(1500))) {
			t.Errorf("asked again at 1.5s: granted at %v, want at once", at.Sub(start))
		}
	})
}

func TestLimiterStopStopsItsTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Dead letters start the system's throttle timer (1 ms); the last
		// cleanup lets it run out in fake time, so that nothing outlives
		// the bubble.
		t.Cleanup(func() { time.Sleep(time.Second) })
		f := startLimiter(t, requestsOnly(10, 1))
		ticks := make(chan struct{}, 16)
		sub := f.sys.EventStream.Subscribe(func(evt any) {
			if dl, ok := evt.(*actor.DeadLetterEvent); ok {
				if _, ok := dl.Message.(*limiterTick); ok {
					ticks <- struct{}{}
				}
			}
		})
		defer f.sys.EventStream.Unsubscribe(sub)
		f.want(2, 0)
		f.granted(t)
		f.want(1, 0) // due at 100 ms: the timer is armed
		// The poison pill is a user message: it is handled after the ask.
		if err := f.sys.Root.PoisonFuture(f.pid).Wait(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		quiet(t, f.queue)
		select {
		case <-ticks:
			t.Fatal("the limiter's timer fired after it stopped")
		default:
		}
		// The subscription sees a tick sent to the stopped limiter.
		f.send(tick)
		recvValue(t, ticks, "dead letter of a tick")
	})
}
