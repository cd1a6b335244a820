package bucket

import (
	"math"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

var t0 = time.Unix(1_700_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestNewIsFullAndNewEmptyIsEmpty(t *testing.T) {
	full := New(10, 100)
	near(t, "new bucket", full.Available(t0), 100)
	empty := NewEmpty(t0, 10, 100)
	near(t, "new empty bucket", empty.Available(t0), 0)
	near(t, "empty bucket 2s later at 10/s", empty.Available(at(2*time.Second)), 20)
	off := NewEmpty(t0, rate.Inf, 0)
	if !off.Off() || !math.IsInf(off.Available(t0), 1) {
		t.Errorf("a bucket at rate.Inf: Off %v, Available %v; want true, +Inf", off.Off(), off.Available(t0))
	}
	if full.Limit() != 10 || full.Burst() != 100 {
		t.Errorf("Limit %v Burst %d, want 10 100", full.Limit(), full.Burst())
	}
}

func TestRefundIsCappedAtTheFreeRoom(t *testing.T) {
	b := New(1, 100)
	b.Take(t0, 100)
	b.Refund(t0, 30)
	near(t, "credit after refunding 30 into an empty bucket", b.Credit(t0), 30)
	near(t, "available", b.Available(t0), 30)
	b.Refund(t0, 1000)
	near(t, "credit after refunding more than the room", b.Credit(t0), 100)
	// The bucket's own refill makes up for the refund: the credit shrinks
	// with the room, so the bucket never holds more than its burst.
	near(t, "available 40s later", b.Available(at(40*time.Second)), 100)
	near(t, "credit 40s later", b.Credit(at(40*time.Second)), 60)
	b.Refund(t0, -5) // nothing to give back
	b.Refund(t0, 0)
	near(t, "credit after refunding nothing", b.Credit(t0), 100)
}

func TestTakeSpendsCreditFirstAndChargesWhatItLacks(t *testing.T) {
	b := New(1, 100)
	b.Take(t0, 100)
	b.Refund(t0, 40)
	if used := b.Take(t0, 30); used != 30 {
		t.Errorf("Take(30) with 40 of credit used %v of it, want 30", used)
	}
	near(t, "credit left", b.Credit(t0), 10)
	// More than the bucket and the credit hold: it is charged anyway, in
	// pieces no larger than the burst, and pushes later permits back.
	if used := b.Take(t0, 350); used != 10 {
		t.Errorf("Take(350) used %v of the credit, want 10", used)
	}
	near(t, "available after charging 340 beyond the credit", b.Available(t0), -340)
	if b.Take(t0, 0) != 0 || b.Take(t0, -1) != 0 {
		t.Error("taking nothing spent credit")
	}
}

// A refund into a bucket holding a fraction leaves a fractional credit; a
// take that spends it must still charge the bucket for the whole rest,
// though the rest exceeds what the limiter holds by a fraction.
func TestTakeChargesTheRestOfAFractionalCredit(t *testing.T) {
	b := New(100, 100)
	b.Take(t0, 100)
	for _, after := range []time.Duration{25 * time.Millisecond, 55 * time.Millisecond, 73 * time.Millisecond} {
		now := at(after)
		b.Refund(now, 100) // tops the bucket up with a fractional credit
		before := b.Available(now)
		b.Take(now, int(before))
		if left := b.Available(now); left > before-float64(int(before))+1e-9 {
			t.Fatalf("after %v: %v available, took %d, %v left: the take was not charged in full", after, before, int(before), left)
		}
	}
}

func TestReserveAndCancel(t *testing.T) {
	b := New(10, 10)
	b.Take(t0, 10)
	b.Refund(t0, 4)
	r := b.Reserve(t0, 6) // 4 of credit, 2 reserved: due in 200ms
	if !r.Due().Equal(at(200 * time.Millisecond)) {
		t.Errorf("due at %v, want 200ms", r.Due().Sub(t0))
	}
	near(t, "credit after the reservation", b.Credit(t0), 0)
	b.Cancel(at(50*time.Millisecond), r)
	near(t, "credit given back by the cancel", b.Credit(at(50*time.Millisecond)), 4)
	near(t, "available once the cancel gave all back", b.Available(at(50*time.Millisecond)), 4.5)

	// Paid by credit alone: due at once, nothing reserved.
	b2 := New(10, 10)
	b2.Take(t0, 10)
	b2.Refund(t0, 5)
	if r := b2.Reserve(t0, 5); !r.Due().Equal(t0) {
		t.Errorf("a reservation covered by credit is due at %v, want at once", r.Due().Sub(t0))
	}
	if r := New(rate.Inf, 0).Reserve(t0, 1000); !r.Due().Equal(t0) {
		t.Errorf("a reservation from a bucket that is off is due at %v, want at once", r.Due().Sub(t0))
	}
}

func TestSetKeepsWhatTheBucketHoldsUpToTheNewBurst(t *testing.T) {
	b := New(1, 100)
	b.Set(t0, 1, 40)
	near(t, "available after lowering the burst", b.Available(t0), 40)
	b.Take(t0, 40)
	b.Set(t0, 4, 40)
	near(t, "refill at the new rate", b.Available(at(time.Second)), 4)
	b.Set(t0, rate.Inf, 0)
	if !b.Off() || b.Credit(t0) != 0 {
		t.Errorf("turned off: Off %v Credit %v", b.Off(), b.Credit(t0))
	}
	b.Refund(t0, 10) // nothing to credit when off
	if b.Take(t0, 10) != 0 {
		t.Error("a bucket that is off spent credit")
	}
}

// Due says when the bucket will hold n units: now while it holds them, the
// lack over the rate after, the time it is full for n past the burst; it
// takes nothing. A bucket that is off holds everything.
func TestDue(t *testing.T) {
	b := New(10, 5) // 10 a second, 5 at most
	if got := b.Due(t0, 5); !got.Equal(t0) {
		t.Errorf("full bucket: due %v after t0, want at once", got.Sub(t0))
	}
	b.Take(t0, 5)
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{1, 100 * time.Millisecond}, {3, 300 * time.Millisecond}, {5, 500 * time.Millisecond}, {9, 500 * time.Millisecond}} {
		if got := b.Due(t0, c.n).Sub(t0); got != c.want {
			t.Errorf("empty bucket, %d units: due in %v, want %v", c.n, got, c.want)
		}
	}
	near(t, "Available after Due", b.Available(t0), 0)
	r := b.Reserve(t0, 2) // reserved ahead: the next unit waits behind them
	if got := b.Due(t0, 1).Sub(t0); got != 300*time.Millisecond || r.Due().Sub(t0) != 200*time.Millisecond {
		t.Errorf("behind a reservation of 2: due in %v (reservation %v), want 300ms (200ms)", got, r.Due().Sub(t0))
	}
	if off := New(rate.Inf, 0); !off.Due(t0, 1000).Equal(t0) {
		t.Error("a bucket that is off is not due at once")
	}
	if never := New(0, 1); !never.Due(t0, 1).Equal(t0) {
		t.Error("a full bucket of rate 0 is not due at once")
	}
	never := New(0, 1)
	never.Take(t0, 1)
	if got := never.Due(t0, 1); got.Sub(t0) < 100*365*24*time.Hour {
		t.Errorf("an empty bucket of rate 0 is due in %v", got.Sub(t0))
	}
}
