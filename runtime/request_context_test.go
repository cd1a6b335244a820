package runtime

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

type (
	requestKey   struct{}
	submitterKey struct{}
)

// TestRequestContextReachesEveryAttempt: the hook sees the submitter's
// context and the PENDING snapshot before the observer does, and what it
// returns supplies the values of every attempt's context, retries included.
func TestRequestContextReachesEveryAttempt(t *testing.T) {
	var (
		mu    sync.Mutex
		order []string
		seen  []any
	)
	note := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}
	ex := startT(t, func(c *Config) {
		c.RequestContext = func(ctx context.Context, pending messages.Event) context.Context {
			if pending.Status != messages.StatusPending || pending.Seq != 1 {
				t.Errorf("hook got %v seq %d, want the PENDING snapshot", pending.Status, pending.Seq)
			}
			if ctx.Value(submitterKey{}) != "alice" {
				t.Errorf("hook's context lacks the submitter's values")
			}
			note("hook")
			return context.WithValue(ctx, requestKey{}, pending.ID)
		}
		c.Observer = func(ev messages.Event) {
			if ev.Status == messages.StatusPending {
				note("observer")
			}
		}
		c.MaxAttempts = 3
		c.Retry = Backoff{Retryable: func(error) bool { return true }}
	})
	ctx := context.WithValue(context.Background(), submitterKey{}, "alice")
	h, err := ex.Submit(ctx, messages.Request{Call: messages.CallFunc(func(ctx context.Context, attempt int) (messages.Result, error) {
		mu.Lock()
		seen = append(seen, ctx.Value(requestKey{}))
		mu.Unlock()
		if ctx.Value(submitterKey{}) != "alice" {
			t.Errorf("attempt %d lost the submitter's values", attempt)
		}
		if attempt < 3 {
			return messages.Result{}, errors.New("again")
		}
		return messages.Result{}, nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	if ev := waitT(t, h); ev.Status != messages.StatusCompleted {
		t.Fatalf("status %v", ev.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 2 || order[0] != "hook" || order[1] != "observer" {
		t.Errorf("order %v, want the hook, then the observer", order)
	}
	if len(seen) != 3 {
		t.Fatalf("%d attempts ran, want 3", len(seen))
	}
	for i, v := range seen {
		if v != h.ID() {
			t.Errorf("attempt %d saw %v, want the request's ID %s", i+1, v, h.ID())
		}
	}
}

// TestRequestContextCancellationIsIgnored: a context the hook returns
// already cancelled neither cancels the request nor its call; the
// submitter's context still does.
func TestRequestContextCancellationIsIgnored(t *testing.T) {
	ex := startT(t, func(c *Config) {
		c.RequestContext = func(ctx context.Context, _ messages.Event) context.Context {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx
		}
	})
	h := submitT(t, ex, messages.Request{Call: messages.CallFunc(func(ctx context.Context, _ int) (messages.Result, error) {
		return messages.Result{}, ctx.Err()
	})})
	if ev := waitT(t, h); ev.Status != messages.StatusCompleted {
		t.Fatalf("status %v (%v), want COMPLETED", ev.Status, ev.Err())
	}

	block := runtimetest.NewBlocker()
	ctx, cancel := context.WithCancel(context.Background())
	h, err := ex.Submit(ctx, messages.Request{Call: block})
	if err != nil {
		t.Fatal(err)
	}
	<-block.Started
	cancel()
	if ev := waitT(t, h); ev.Status != messages.StatusCancelled {
		t.Fatalf("status %v, want CANCELLED by the submitter's context", ev.Status)
	}
}
