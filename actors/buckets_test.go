package actors

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

func TestAdmissionTryAcquireUpToCapacity(t *testing.T) {
	a := newAdmission(3)
	if a.Cap() != 3 || a.Len() != 0 {
		t.Fatalf("new admission: len %d cap %d, want 0 3", a.Len(), a.Cap())
	}
	for i := range 3 {
		if !a.TryAcquire() {
			t.Fatalf("TryAcquire %d refused below capacity", i+1)
		}
	}
	if a.TryAcquire() {
		t.Fatal("TryAcquire succeeded beyond capacity")
	}
	if a.Len() != 3 {
		t.Fatalf("len %d, want 3", a.Len())
	}
	a.Release()
	if a.Len() != 2 {
		t.Fatalf("len after Release %d, want 2", a.Len())
	}
	if !a.TryAcquire() {
		t.Fatal("TryAcquire refused after Release")
	}
}

func TestAdmissionAcquire(t *testing.T) {
	errStop := errors.New("stopping")

	t.Run("free slot at once", func(t *testing.T) {
		a := newAdmission(1)
		if err := a.Acquire(context.Background(), nil, errStop); err != nil {
			t.Fatalf("Acquire with a free slot: %v", err)
		}
		if a.Len() != 1 {
			t.Fatalf("len %d, want 1", a.Len())
		}
	})

	t.Run("waits for Release", func(t *testing.T) {
		a := newAdmission(1)
		a.TryAcquire()
		got := make(chan error, 1)
		go func() { got <- a.Acquire(context.Background(), make(chan struct{}), errStop) }()
		select {
		case err := <-got:
			t.Fatalf("Acquire returned %v while the queue was full", err)
		case <-time.After(20 * time.Millisecond):
		}
		a.Release()
		if err := recvValue(t, got, "Acquire after Release"); err != nil {
			t.Fatalf("Acquire after Release: %v", err)
		}
		if a.Len() != 1 {
			t.Fatalf("len %d, want 1", a.Len())
		}
	})

	t.Run("context cause", func(t *testing.T) {
		a := newAdmission(1)
		a.TryAcquire()
		cause := errors.New("submitter gave up")
		ctx, cancel := context.WithCancelCause(context.Background())
		got := make(chan error, 1)
		go func() { got <- a.Acquire(ctx, make(chan struct{}), errStop) }()
		cancel(cause)
		if err := recvValue(t, got, "Acquire after cancel"); err != cause {
			t.Fatalf("Acquire = %v, want the context's cause", err)
		}
		if a.Len() != 1 {
			t.Fatalf("len %d, want 1 (the failed Acquire took nothing)", a.Len())
		}
	})

	t.Run("stop", func(t *testing.T) {
		a := newAdmission(1)
		a.TryAcquire()
		stop := make(chan struct{})
		got := make(chan error, 1)
		go func() { got <- a.Acquire(context.Background(), stop, errStop) }()
		close(stop)
		if err := recvValue(t, got, "Acquire after stop"); err != errStop {
			t.Fatalf("Acquire = %v, want errStop", err)
		}
	})
}

func TestNewBucketsStartFull(t *testing.T) {
	now := time.Now()
	b := newBuckets(Limits{RequestsPerSecond: 2, RequestBurst: 5, TokensPerSecond: 100, TokenBurst: 1000})
	if got := b.RequestsAvailable(now); math.Abs(got-5) > 1e-9 {
		t.Errorf("RequestsAvailable = %v, want 5", got)
	}
	if got := b.TokensAvailable(now); math.Abs(got-1000) > 1e-9 {
		t.Errorf("TokensAvailable = %v, want 1000", got)
	}
	if !b.TokensEnabled() || b.TokenBurst() != 1000 {
		t.Errorf("TokensEnabled %v TokenBurst %d, want true 1000", b.TokensEnabled(), b.TokenBurst())
	}
	if c := b.tokens.Credit(now); c != 0 {
		t.Errorf("Credit = %v, want 0", c)
	}
	if !b.PausedUntil().IsZero() {
		t.Errorf("PausedUntil = %v, want zero", b.PausedUntil())
	}
}

func TestBucketsWithoutLimits(t *testing.T) {
	b := newBuckets(Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokenBurst: 500})
	now := time.Now()
	if got := b.RequestsAvailable(now); !math.IsInf(got, 1) {
		t.Errorf("RequestsAvailable = %v, want +Inf", got)
	}
	if got := b.TokensAvailable(now); got != -1 {
		t.Errorf("TokensAvailable = %v, want -1 without a token limit", got)
	}
	if b.TokensEnabled() || b.TokenBurst() != 0 {
		t.Errorf("TokensEnabled %v TokenBurst %d, want false 0", b.TokensEnabled(), b.TokenBurst())
	}
}

func TestBucketsApply(t *testing.T) {
	now := time.Now()
	b := newBuckets(Limits{RequestsPerSecond: 1, RequestBurst: 2, TokensPerSecond: 10, TokenBurst: 100})

	// Lower the bursts: what is available is capped by the new capacity.
	b.Apply(now, Limits{RequestsPerSecond: 1, RequestBurst: 1, TokensPerSecond: 10, TokenBurst: 40})
	if got := b.RequestsAvailable(now); math.Abs(got-1) > 1e-9 {
		t.Errorf("RequestsAvailable after lowering the burst = %v, want 1", got)
	}
	if got := b.TokensAvailable(now); math.Abs(got-40) > 1e-9 {
		t.Errorf("TokensAvailable after lowering the burst = %v, want 40", got)
	}
	if b.TokenBurst() != 40 {
		t.Errorf("TokenBurst = %d, want 40", b.TokenBurst())
	}

	// Turn the token limit off.
	b.Apply(now, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1})
	if b.TokensEnabled() || b.TokenBurst() != 0 || b.TokensAvailable(now) != -1 {
		t.Errorf("token limit off: enabled %v burst %d available %v", b.TokensEnabled(), b.TokenBurst(), b.TokensAvailable(now))
	}
	if got := b.RequestsAvailable(now); !math.IsInf(got, 1) {
		t.Errorf("RequestsAvailable with rate.Inf = %v, want +Inf", got)
	}

	// A bucket turned on later starts empty and fills at its rate.
	off := newBuckets(Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1})
	off.Apply(now, Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 10, TokenBurst: 100})
	if !off.TokensEnabled() || off.TokenBurst() != 100 {
		t.Fatalf("token limit on: enabled %v burst %d", off.TokensEnabled(), off.TokenBurst())
	}
	if got := off.TokensAvailable(now); got != 0 {
		t.Errorf("TokensAvailable of a bucket just turned on = %v, want 0", got)
	}
	if got := off.TokensAvailable(now.Add(2 * time.Second)); math.Abs(got-20) > 1e-6 {
		t.Errorf("TokensAvailable 2s later at 10/s = %v, want 20", got)
	}

	// A new rate changes the refill.
	r := newBuckets(Limits{RequestsPerSecond: 1, RequestBurst: 10})
	r.requests.Take(now, 10) // empty it
	r.Apply(now, Limits{RequestsPerSecond: 4, RequestBurst: 10})
	if got := r.RequestsAvailable(now.Add(time.Second)); math.Abs(got-4) > 1e-6 {
		t.Errorf("RequestsAvailable 1s after emptying at 4/s = %v, want 4", got)
	}
}

func TestBucketsCreditAndPause(t *testing.T) {
	now := time.Now()
	b := newBuckets(Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 10, TokenBurst: 100})
	b.tokens.Take(now, 100) // empty the bucket
	b.tokens.Refund(now, 25)
	if c := b.tokens.Credit(now); c != 25 {
		t.Fatalf("Credit = %v, want 25", c)
	}
	if got := b.TokensAvailable(now); math.Abs(got-25) > 1e-6 {
		t.Errorf("TokensAvailable = %v, want the 25 of credit", got)
	}
	until := now.Add(time.Minute)
	b.pausedUntil.Store(until.UnixNano())
	if got := b.PausedUntil(); !got.Equal(until) {
		t.Errorf("PausedUntil = %v, want %v", got, until)
	}
	b.pausedUntil.Store(0)
	if got := b.PausedUntil(); !got.IsZero() {
		t.Errorf("PausedUntil = %v, want zero", got)
	}
}

func TestCountersStats(t *testing.T) {
	var c counters
	c.queued.Store(1)
	c.inFlight.Store(2)
	c.completed.Store(3)
	c.failed.Store(4)
	c.cancelled.Store(5)
	c.retries.Store(6)
	c.restarts.Store(7)
	c.Accepted()
	c.Accepted()
	c.Rejected()
	want := messages.Stats{Queued: 1, InFlight: 2, Completed: 3, Failed: 4, Cancelled: 5, Retries: 6, Restarts: 7, Accepted: 2, Rejected: 1}

	now := time.Now()
	if got := c.Stats(nil, now); got != want {
		t.Errorf("Stats without a budget = %+v, want %+v", got, want)
	}

	b := newBuckets(Limits{RequestsPerSecond: 1, RequestBurst: 3, TokensPerSecond: 10, TokenBurst: 50})
	until := now.Add(time.Hour)
	b.pausedUntil.Store(until.UnixNano())
	got := c.Stats(b, now)
	want.RequestsAvailable, want.TokensAvailable = 3, 50
	if got.PausedUntil.Equal(until) {
		got.PausedUntil = time.Time{}
	} else {
		t.Errorf("PausedUntil = %v, want %v", got.PausedUntil, until)
	}
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestValidateRequest(t *testing.T) {
	call := okCall("x")
	tokensOn := newBuckets(Limits{RequestsPerSecond: rate.Inf, RequestBurst: 1, TokensPerSecond: 10, TokenBurst: 100})
	tokensOff := newBuckets(noLimits)
	invalid := []struct {
		name string
		req  messages.Request
	}{
		{"no call", messages.Request{}},
		{"negative tokens", messages.Request{Call: call, Tokens: -1}},
		{"negative timeout", messages.Request{Call: call, Timeout: -time.Second}},
		{"negative attempts", messages.Request{Call: call, MaxAttempts: -1}},
	}
	for _, tc := range invalid {
		for _, b := range []*buckets{tokensOn, tokensOff} {
			if err := validateRequest(&tc.req, b); !errors.Is(err, messages.ErrInvalidRequest) {
				t.Errorf("%s: ValidateRequest = %v, want ErrInvalidRequest", tc.name, err)
			}
		}
	}

	over := messages.Request{Call: call, Tokens: 101}
	err := validateRequest(&over, tokensOn)
	var tle *messages.TokenLimitError
	if !errors.As(err, &tle) || tle.Tokens != 101 || tle.Burst != 100 || !errors.Is(err, messages.ErrTokensExceedBurst) {
		t.Errorf("tokens over the burst: ValidateRequest = %v, want TokenLimitError{101, 100}", err)
	}
	if err := validateRequest(&over, tokensOff); err != nil {
		t.Errorf("tokens without a token limit: ValidateRequest = %v, want nil", err)
	}
	atBurst := messages.Request{Call: call, Tokens: 100, Timeout: time.Second, MaxAttempts: 3}
	if err := validateRequest(&atBurst, tokensOn); err != nil {
		t.Errorf("tokens equal to the burst: ValidateRequest = %v, want nil", err)
	}
}
