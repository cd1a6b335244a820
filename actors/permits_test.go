package actors

import (
	"errors"
	"math"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

// The limiter's decisions on made-up instants: permits is driven the way
// the actor drives it, but its timer fires exactly when asked, so these
// tests need no slack.

var t0 = time.Unix(1_700_000_000, 0)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// decided is one verdict and when it came.
type decided struct {
	ticket uint64
	at     time.Time
	err    error
}

// permitsRun is permits under test with the instants of its decisions.
type permitsRun struct {
	t   *testing.T
	p   *permits
	now time.Time
	got []decided
}

func newPermits(t *testing.T, lim Limits) *permitsRun {
	return &permitsRun{t: t, p: &permits{buckets: newBuckets(lim)}, now: t0}
}

func (r *permitsRun) ask(ticket uint64, tokens int) {
	r.p.add(permitAsk{ticket: ticket, tokens: tokens})
	r.decide()
}

// at moves the clock to t0+d and decides, as a message arriving then would.
func (r *permitsRun) at(d time.Duration) *permitsRun {
	if now := t0.Add(d); now.After(r.now) {
		r.now = now
	}
	r.decide()
	return r
}

func (r *permitsRun) decide() time.Time {
	d := r.p.decide(r.now)
	for _, v := range d.verdicts {
		r.got = append(r.got, decided{ticket: v.ticket, at: r.now, err: v.err})
	}
	return d.wake
}

// drain lets the timer fire at every wake-up until nothing waits.
func (r *permitsRun) drain() {
	for {
		wake := r.decide()
		if wake.IsZero() {
			return
		}
		if !wake.After(r.now) {
			r.t.Fatalf("wake-up at %v, not after now %v", wake.Sub(t0), r.now.Sub(t0))
		}
		r.now = wake
	}
}

// grants returns the instants of the grants, by ticket, in order.
func (r *permitsRun) grants() map[uint64]time.Duration {
	out := map[uint64]time.Duration{}
	for _, d := range r.got {
		if d.err == nil {
			out[d.ticket] = d.at.Sub(t0)
		}
	}
	return out
}

func (r *permitsRun) order() []uint64 {
	var out []uint64
	for _, d := range r.got {
		out = append(out, d.ticket)
	}
	return out
}

func equalDurations(a, b map[uint64]time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

func TestPermitsFollowTheBuckets(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		asks []int // tokens of tickets 1, 2, ...
		want map[uint64]time.Duration
	}{
		{"no limits", noLimits, []int{0, 0, 0}, map[uint64]time.Duration{1: 0, 2: 0, 3: 0}},
		{"request bucket: burst, then one per interval",
			Limits{RequestsPerSecond: 20, RequestBurst: 3}, []int{0, 0, 0, 0, 0, 0},
			map[uint64]time.Duration{1: 0, 2: 0, 3: 0, 4: ms(50), 5: ms(100), 6: ms(150)}},
		{"burst 1 paces from the first",
			Limits{RequestsPerSecond: 20, RequestBurst: 1}, []int{0, 0, 0},
			map[uint64]time.Duration{1: 0, 2: ms(50), 3: ms(100)}},
		{"token bucket: 100 at once, then 1000/s",
			Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100},
			[]int{50, 50, 50, 50, 50, 50, 50},
			map[uint64]time.Duration{1: 0, 2: 0, 3: ms(50), 4: ms(100), 5: ms(150), 6: ms(200), 7: ms(250)}},
		{"a large ask is not overtaken by a small one",
			Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 200, TokenBurst: 100},
			[]int{100, 100, 1},
			map[uint64]time.Duration{1: 0, 2: ms(500), 3: ms(505)}},
		{"both buckets: the later of the two",
			Limits{RequestsPerSecond: 10, RequestBurst: 1, TokensPerSecond: 100, TokenBurst: 50},
			[]int{50, 5, 50},
			map[uint64]time.Duration{1: 0, 2: ms(100), 3: ms(550)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newPermits(t, tt.lim)
			for i, n := range tt.asks {
				r.p.add(permitAsk{ticket: uint64(i + 1), tokens: n})
			}
			r.drain()
			if got := r.grants(); !equalDurations(got, tt.want) {
				t.Errorf("grants at %v, want %v", got, tt.want)
			}
			for i, ticket := range r.order() {
				if ticket != uint64(i+1) {
					t.Fatalf("decided in order %v, want arrival order", r.order())
				}
			}
		})
	}
}

func TestPermitsCancel(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: 1, RequestBurst: 1})
	for ticket := uint64(1); ticket <= 4; ticket++ {
		r.p.add(permitAsk{ticket: ticket})
	}
	r.decide()            // 1 takes the burst; 2 is reserved, due at 1 s
	r.p.cancel(4, r.now)  // not the head: just dropped
	r.p.cancel(99, r.now) // unknown: ignored
	r.p.cancel(2, r.now)  // the head: its reservation goes back
	r.drain()
	// 3 takes the slot 2 gave back; had it been kept, 3 would be due at 2 s.
	if got, want := r.grants(), map[uint64]time.Duration{1: 0, 3: time.Second}; !equalDurations(got, want) {
		t.Errorf("grants at %v, want %v", got, want)
	}
}

func TestPermitsCancelGivesBackCredit(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1, TokenBurst: 100})
	r.ask(1, 100)             // empties the bucket
	r.p.reconcile(-30, r.now) // credit 30
	r.ask(2, 50)              // 30 from the credit, 20 from the bucket: due in 20 s
	r.p.cancel(2, r.now)
	if c := r.p.buckets.tokens.Credit(r.now); c != 30 {
		t.Errorf("credit after cancelling the ask that used it = %v, want 30", c)
	}
}

func TestPermitsPause(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: 10, RequestBurst: 1})
	r.ask(1, 0)
	r.ask(2, 0) // reserved, due at 100 ms
	if r.p.pause(t0.Add(ms(50)), r.now); !r.p.pause(t0.Add(ms(400)), r.now) {
		t.Fatal("a later pause did not extend the first")
	}
	if r.p.pause(t0.Add(ms(200)), r.now) {
		t.Error("an earlier pause end extended the pause")
	}
	if got := r.p.buckets.PausedUntil(); !got.Equal(t0.Add(ms(400))) {
		t.Errorf("PausedUntil = %v, want 400ms", got.Sub(t0))
	}
	r.ask(3, 0)
	r.drain()
	// The reserved head gave its reservation back and goes when the pause
	// ends; the bucket then holds one permit, and the next is 100 ms on.
	want := map[uint64]time.Duration{1: 0, 2: ms(400), 3: ms(500)}
	if got := r.grants(); !equalDurations(got, want) {
		t.Errorf("grants at %v, want %v", got, want)
	}
	if p := r.p.buckets.PausedUntil(); !p.IsZero() {
		t.Errorf("PausedUntil = %v once the pause ended and nothing waits, want zero", p)
	}
}

func TestPermitsApplyReplansTheHead(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: 0.1, RequestBurst: 1})
	r.ask(1, 0)
	r.ask(2, 0) // due at 10 s at the old rate
	r.p.apply(Limits{RequestsPerSecond: 10, RequestBurst: 1}, t0)
	r.drain()
	// At 10/s the bucket, emptied at 0, holds one again at 100 ms.
	if got, want := r.grants(), map[uint64]time.Duration{1: 0, 2: ms(100)}; !equalDurations(got, want) {
		t.Errorf("grants at %v, want %v", got, want)
	}
}

func TestPermitsDenyWhatNoBucketHolds(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: 1, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100})
	r.p.apply(Limits{RequestsPerSecond: 1, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 50}, t0)
	r.p.add(permitAsk{ticket: 1, tokens: 80})
	r.p.add(permitAsk{ticket: 2, tokens: 50})
	r.drain()
	var tle *messages.TokenLimitError
	if len(r.got) != 2 || r.got[0].ticket != 1 || !errors.As(r.got[0].err, &tle) || tle.Tokens != 80 || tle.Burst != 50 {
		t.Fatalf("decisions %+v, want ticket 1 denied with TokenLimitError{80, 50}", r.got)
	}
	// The denied ask took nothing: 2 gets the request burst at once.
	if r.got[1].ticket != 2 || r.got[1].err != nil || !r.got[1].at.Equal(t0) {
		t.Errorf("decision after the denied one: %+v, want ticket 2 granted at once", r.got[1])
	}
}

func TestPermitsReconcile(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1, TokenBurst: 100})
	b := r.p.buckets
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	r.p.reconcile(0, t0)
	r.p.reconcile(40, t0)
	near("after charging 40 of 100: available", b.TokensAvailable(t0), 60)
	r.p.reconcile(-30, t0)
	near("after refunding 30: credit", b.tokens.Credit(t0), 30)
	near("after refunding 30: available", b.TokensAvailable(t0), 90)
	r.p.reconcile(-1000, t0) // capped by the room in the bucket
	near("after refunding more than the room: available", b.TokensAvailable(t0), 100)
	// A charge spends the credit first, then the bucket, in pieces no
	// larger than the burst.
	r.p.reconcile(350, t0)
	near("after a charge larger than the credit: credit", b.tokens.Credit(t0), 0)
	near("after charging 350 with 100 available: available", b.TokensAvailable(t0), -250)
}

func TestPermitsUseCredit(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1, TokenBurst: 100})
	r.ask(1, 100) // empties the bucket
	r.p.reconcile(-60, r.now)
	r.ask(2, 50) // paid by the credit: granted at once
	if got, want := r.grants(), map[uint64]time.Duration{1: 0, 2: 0}; !equalDurations(got, want) {
		t.Errorf("grants at %v, want %v", got, want)
	}
	if c := r.p.buckets.tokens.Credit(r.now); math.Abs(c-10) > 1e-9 {
		t.Errorf("credit after using 50 of 60 = %v, want 10", c)
	}
}

func TestPermitsRefundLetsTheHeadGoSooner(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 10, TokenBurst: 100})
	r.ask(1, 100) // empties the bucket
	r.ask(2, 100) // due in 10 s
	r.p.reconcile(-100, t0.Add(ms(10)))
	r.at(ms(10))
	if got, want := r.grants(), map[uint64]time.Duration{1: 0, 2: ms(10)}; !equalDurations(got, want) {
		t.Errorf("grants at %v, want %v", got, want)
	}
}

// A refund never lifts the budget above the burst: while paused the bucket
// refills to its capacity, and the provider's bucket holds no more than
// that either, so the refund cannot come on top.
func TestPermitsRefundNeverLiftsTheBudgetAboveTheBurst(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 1000, TokenBurst: 100})
	r.ask(1, 100)              // empties the bucket
	r.p.reconcile(-100, r.now) // the call used none of it
	r.p.pause(t0.Add(ms(200)), r.now)
	r.ask(2, 100)
	r.ask(3, 100)
	r.drain()
	want := map[uint64]time.Duration{1: 0, 2: ms(200), 3: ms(300)}
	if got := r.grants(); !equalDurations(got, want) {
		t.Errorf("grants at %v, want %v", got, want)
	}
}

// A refund that arrives when the head's permit is due, before the tick that
// grants it, must not plan the head again: its reservation can no longer be
// given back, and a second one would push the head, and every permit after
// it, one interval later. At 20 requests a second a run lost a slot to each
// such refund.
func TestPermitsRefundAtTheHeadsDueTime(t *testing.T) {
	r := newPermits(t, Limits{RequestsPerSecond: 20, RequestBurst: 1, TokensPerSecond: 2500, TokenBurst: 150_000})
	for ticket := uint64(1); ticket <= 3; ticket++ {
		r.p.add(permitAsk{ticket: ticket, tokens: 94})
	}
	if wake := r.decide(); !wake.Equal(t0.Add(ms(50))) {
		t.Fatalf("second permit due at %v, want 50ms", wake.Sub(t0))
	}
	// The first call's refund arrives a millisecond after the second
	// permit fell due, before the late tick that grants it.
	late := t0.Add(ms(51))
	r.p.reconcile(-4, late)
	r.now = late
	r.drain()
	want := map[uint64]time.Duration{1: 0, 2: ms(51), 3: ms(100)}
	if got := r.grants(); !equalDurations(got, want) {
		t.Errorf("grants at %v, want %v", got, want)
	}

	// A refund before the head is due still plans it again, so that the
	// tokens it frees can let it go sooner.
	r.p.add(permitAsk{ticket: 4, tokens: 94})
	r.decide()
	r.p.reconcile(-4, r.now.Add(ms(25)))
	if r.p.pending[0].reserved {
		t.Errorf("a head not yet due kept its reservation through a refund")
	}
}
