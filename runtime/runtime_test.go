package runtime

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"golang.org/x/time/rate"

	"github.com/lionactor/lionactor/messages"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startT(t *testing.T, edit func(*Config)) *Executor {
	t.Helper()
	cfg := DefaultConfig()
	cfg.RequestsPerInterval = Unlimited
	if edit != nil {
		edit(&cfg)
	}
	ex, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ex.StopNow(ctx); err != nil {
			t.Errorf("StopNow: %v", err)
		}
	})
	return ex
}

var noop = messages.CallFunc(func(context.Context, int) (messages.Result, error) { return messages.Result{}, nil })

func TestDefaultConfigMatchesTheSeedDesign(t *testing.T) {
	c := DefaultConfig()
	if c.QueueCapacity != 1000 || c.Concurrency != 10 || c.RequestsPerInterval != 10 || c.RequestInterval != time.Second ||
		c.TokensPerInterval != 0 || c.TokenInterval != time.Minute || c.MaxAttempts != 1 {
		t.Errorf("%+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	l := c.limits()
	if l.RequestsPerSecond != 10 || l.RequestBurst != 1 || l.TokensEnabled() {
		t.Errorf("limits %+v", l)
	}
}

func TestLimitsFromConfig(t *testing.T) {
	c := DefaultConfig()
	c.RequestsPerInterval, c.RequestInterval, c.RequestBurst = 3000, time.Minute, 5
	c.TokensPerInterval, c.TokenInterval = 90000, time.Minute
	l := c.limits()
	if l.RequestsPerSecond != 50 || l.RequestBurst != 5 || l.TokensPerSecond != 1500 || l.TokenBurst != 90000 {
		t.Errorf("limits %+v", l)
	}
	c.RequestsPerInterval = Unlimited
	if l := c.limits(); l.RequestsPerSecond != rate.Inf {
		t.Errorf("Unlimited gave %v", l.RequestsPerSecond)
	}
}

func TestBackoffGrowsWithFullJitterAndHonoursTheServer(t *testing.T) {
	b := Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, Multiplier: 2}
	ceilings := []time.Duration{10, 20, 40, 80, 80, 80}
	for i, c := range ceilings {
		attempt := i + 1
		var largest time.Duration
		for range 200 {
			d, ok := b.Backoff(attempt, errors.New("x"))
			if !ok || d < 0 || d >= c*time.Millisecond {
				t.Fatalf("attempt %d: delay %v (ok %v), ceiling %v", attempt, d, ok, c*time.Millisecond)
			}
			largest = max(largest, d)
		}
		// Full jitter spreads over the whole range, not a narrow band.
		if largest < c*time.Millisecond/2 {
			t.Errorf("attempt %d: largest of 200 delays %v, ceiling %v", attempt, largest, c*time.Millisecond)
		}
	}
	if d, ok := b.Backoff(1, pause{d: time.Second}); !ok || d != time.Second {
		t.Errorf("server's retry-after: %v %v", d, ok)
	}
	for _, err := range []error{messages.ErrCancelled, messages.ErrInvalidRequest, messages.ErrStopped} {
		if _, ok := (Backoff{}).Backoff(1, err); ok {
			t.Errorf("%v retried", err)
		}
	}
	never := Backoff{Retryable: func(error) bool { return false }}
	if _, ok := never.Backoff(1, errors.New("x")); ok {
		t.Error("Retryable false was retried")
	}
	if d, ok := (Backoff{}).Backoff(1, errors.New("x")); !ok || d >= 500*time.Millisecond {
		t.Errorf("default first delay %v", d)
	}
}

type pause struct{ d time.Duration }

func (p pause) Error() string             { return "slow down" }
func (p pause) RetryAfter() time.Duration { return p.d }

func TestHandleServesSeveralReaders(t *testing.T) {
	ex := startT(t, nil)
	gate := make(chan struct{})
	h, err := ex.Submit(context.Background(), messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		<-gate
		return messages.Result{}, nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	const readers = 4
	got := make([][]messages.RequestStatus, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			for ev := range h.Events() {
				got[i] = append(got[i], ev.Status)
			}
		})
	}
	// A reader that stops early is fine too.
	for ev := range h.Events() {
		if ev.Status != messages.StatusPending {
			t.Errorf("first snapshot %v", ev.Status)
		}
		break
	}
	close(gate)
	wg.Wait()
	want := []messages.RequestStatus{messages.StatusPending, messages.StatusQueued, messages.StatusProcessing, messages.StatusCalling, messages.StatusCompleted}
	for i := range readers {
		if !slices.Equal(got[i], want) {
			t.Errorf("reader %d saw %v", i, got[i])
		}
	}
}

func TestWaitReturnsWhenItsContextEnds(t *testing.T) {
	ex := startT(t, nil)
	gate := make(chan struct{})
	h, err := ex.Submit(context.Background(), messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) {
		<-gate
		return messages.Result{}, nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v", err)
	}
	select {
	case <-h.Done():
		t.Fatal("the request ended with the waiter")
	default:
	}
	close(gate)
	if ev, err := h.Wait(context.Background()); err != nil || ev.Status != messages.StatusCompleted {
		t.Fatalf("%v %v", ev.Status, err)
	}
}

func TestSpawnNeedsAParent(t *testing.T) {
	var ce *messages.ConfigError
	if _, err := Spawn(nil, DefaultConfig()); !errors.As(err, &ce) || ce.Field != "parent" {
		t.Errorf("Spawn(nil) = %v", err)
	}
	if _, err := Spawn(nil, Config{}); !errors.Is(err, messages.ErrInvalidConfig) {
		t.Errorf("Spawn with a zero Config = %v", err)
	}
}

func TestStatsShowTheBudget(t *testing.T) {
	ex := startT(t, func(c *Config) {
		c.RequestsPerInterval, c.RequestInterval, c.RequestBurst = 5, time.Hour, 5
		c.TokensPerInterval, c.TokenInterval = 1000, time.Hour
	})
	st := ex.Stats()
	if math.Abs(st.RequestsAvailable-5) > 0.01 || math.Abs(st.TokensAvailable-1000) > 0.01 || !st.PausedUntil.IsZero() {
		t.Errorf("fresh budget %+v", st)
	}
	h, err := ex.Submit(context.Background(), messages.Request{Call: noop, Tokens: 400})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = ex.Stats()
	if math.Abs(st.RequestsAvailable-4) > 0.01 || math.Abs(st.TokensAvailable-600) > 0.01 || st.Completed != 1 {
		t.Errorf("after one request of 400 tokens: %+v", st)
	}
	// A charge through the public method reaches the bucket.
	ex.AdjustTokens(100)
	h, _ = ex.Submit(context.Background(), messages.Request{Call: noop})
	h.Wait(context.Background())
	if b := ex.Stats().TokensAvailable; math.Abs(b-500) > 0.01 {
		t.Errorf("after charging 100: %.1f", b)
	}
}

func TestStatsWithoutLimits(t *testing.T) {
	ex := startT(t, nil)
	if st := ex.Stats(); !math.IsInf(st.RequestsAvailable, 1) || st.TokensAvailable != -1 {
		t.Errorf("%+v", st)
	}
	if ex.PID() == nil || ex.System() == nil || ex.Err() != nil {
		t.Error("accessors")
	}
}

// captured records log records for inspection.
type captured struct {
	mu   sync.Mutex
	msgs []string
}

func (c *captured) Enabled(context.Context, slog.Level) bool { return true }
func (c *captured) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (c *captured) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *captured) WithGroup(string) slog.Handler      { return c }

func TestCrashesAreLogged(t *testing.T) {
	logs := &captured{}
	ex := startT(t, func(c *Config) { c.Logger = slog.New(logs) })
	h, err := ex.Submit(context.Background(), messages.Request{Call: messages.CallFunc(func(context.Context, int) (messages.Result, error) { panic("boom") })})
	if err != nil {
		t.Fatal(err)
	}
	if ev, _ := h.Wait(context.Background()); !errors.Is(ev.Err(), messages.ErrCallerCrashed) {
		t.Fatalf("%v", ev.Err())
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if !slices.ContainsFunc(logs.msgs, func(m string) bool { return strings.Contains(m, "WARN") && strings.Contains(m, "caller crashed") }) {
		t.Errorf("logs %q", logs.msgs)
	}
}

func TestSubmitsRacingAStopAreEachAccountedFor(t *testing.T) {
	ex, err := Start(func() Config {
		c := DefaultConfig()
		c.RequestsPerInterval, c.Concurrency, c.QueueCapacity = Unlimited, 4, 100000
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		accepted []*Handle
		refused  int
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for range 500 {
				h, err := ex.Submit(context.Background(), messages.Request{Call: noop})
				mu.Lock()
				if err != nil {
					if !errors.Is(err, messages.ErrStopped) {
						t.Errorf("Submit = %v", err)
					}
					refused++
				} else {
					accepted = append(accepted, h)
				}
				mu.Unlock()
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ex.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, h := range accepted {
		select {
		case <-h.Done():
		default:
			t.Fatalf("accepted request %v not ended after Stop", h.Latest().Status)
		}
		if s := h.Latest().Status; s != messages.StatusCompleted {
			t.Errorf("%v", s)
		}
	}
	if len(accepted)+refused != 4000 {
		t.Errorf("%d accepted + %d refused", len(accepted), refused)
	}
	if st := ex.Stats(); st.Completed != int64(len(accepted)) {
		t.Errorf("completed %d of %d accepted", st.Completed, len(accepted))
	}
}

func TestSpawnIntoAUserSystem(t *testing.T) {
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	defer system.Shutdown()
	ex, err := Spawn(system.Root, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if ex.System() != system {
		t.Error("executor runs in another system")
	}
	h, err := ex.Submit(context.Background(), messages.Request{Call: noop})
	if err != nil {
		t.Fatal(err)
	}
	h.Wait(context.Background())
	if err := ex.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if system.IsStopped() {
		t.Error("Stop shut down the user's system")
	}
}
