package runtime

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/messages"
)

// fakeShared is a SharedBudget whose broker grants one request per
// LeaseWanted at once, and records what the limiter tells it.
type fakeShared struct {
	invalid   error
	attachErr error
	released  atomic.Int32
	grants    atomic.Int64
	returned  atomic.Int32 // ReturnLeases received
	mu        sync.Mutex
	forwarded []any
	limits    actors.Limits
}

func (f *fakeShared) Validate() error { return f.invalid }

func (f *fakeShared) Attach(_ *actor.ActorSystem, limits actors.Limits, _ *slog.Logger) (*actor.Props, func(), error) {
	if f.attachErr != nil {
		return nil, nil, f.attachErr
	}
	f.limits = limits
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actors.LeaseWanted:
			id := uint64(f.grants.Add(1))
			ctx.Respond(&actors.LeaseGranted{ID: id, Requests: 1, Tokens: m.MinTokens, Expires: time.Now().Add(time.Minute)})
		case *actors.ReturnLeases:
			f.returned.Add(1)
			close(m.Done)
		case *actors.PauseUntil, *actors.AdjustTokens, *actors.SetLimits:
			f.mu.Lock()
			f.forwarded = append(f.forwarded, m)
			f.mu.Unlock()
		}
	})
	return props, func() { f.released.Add(1) }, nil
}

func TestSharedBudgetConfigErrors(t *testing.T) {
	cfg := DefaultConfig()
	bad := &messages.ConfigError{Field: "SharedBudget.Key", Reason: "empty"}
	cfg.SharedBudget = &fakeShared{invalid: bad}
	if _, err := Start(cfg); !errors.Is(err, messages.ErrInvalidConfig) {
		t.Errorf("Start with an invalid shared budget: %v, want ErrInvalidConfig", err)
	}
	boom := errors.New("cannot listen")
	cfg.SharedBudget = &fakeShared{attachErr: boom}
	if _, err := Start(cfg); !errors.Is(err, boom) {
		t.Errorf("Start when Attach fails: %v, want %v", err, boom)
	}
}

func TestSharedBudgetPermitsComeFromLeases(t *testing.T) {
	f := &fakeShared{}
	ex, err := Start(func() Config {
		c := DefaultConfig()
		c.RequestsPerInterval = Unlimited
		c.TokensPerInterval, c.TokenBurst = 1000, 100
		c.SharedBudget = f
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	if f.limits.TokenBurst != 100 {
		t.Errorf("broker got limits %+v, want the executor's", f.limits)
	}
	const n = 20
	var hs []*Handle
	for range n {
		hs = append(hs, submitT(t, ex, messages.Request{Call: ok("x"), Tokens: 10}))
	}
	for _, h := range hs {
		ev, err := h.Wait(context.Background())
		if err != nil || ev.Status != messages.StatusCompleted {
			t.Fatalf("request ended %v, %v", ev.Status, err)
		}
	}
	if got := f.grants.Load(); got < n {
		t.Errorf("%d leases of one request each for %d requests", got, n)
	}
	ex.PauseUntil(time.Now().Add(time.Millisecond))
	ex.AdjustTokens(5)
	if err := ex.SetTokenRate(2000, time.Second, 200); err != nil {
		t.Fatal(err)
	}
	// A request after them flows through the limiter, so it has handled
	// (and forwarded) all three.
	if ev, _ := submitT(t, ex, messages.Request{Call: ok("y")}).Wait(context.Background()); ev.Status != messages.StatusCompleted {
		t.Fatalf("request after the changes ended %v", ev.Status)
	}
	if err := ex.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.forwarded) != 3 {
		t.Errorf("broker received %v, want the pause, the adjustment and the limits", f.forwarded)
	}
	if f.returned.Load() != 1 {
		t.Errorf("broker asked %d times to return its leases at a graceful stop, want once", f.returned.Load())
	}
	if f.released.Load() != 1 {
		t.Errorf("release called %d times, want once after stop", f.released.Load())
	}
}
