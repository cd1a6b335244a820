package runtime

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/messages"
)

var ok = runtimetest.OK

// startRec starts an executor whose observer checks the snapshot invariants.
func startRec(t *testing.T, edit func(*Config)) (*Executor, *runtimetest.Recorder) {
	t.Helper()
	rec := runtimetest.NewRecorder()
	ex := startT(t, func(c *Config) {
		c.Observer = rec.Observe
		if edit != nil {
			edit(c)
		}
	})
	return ex, rec
}

func submitT(t *testing.T, ex *Executor, r messages.Request) *Handle {
	t.Helper()
	h, err := ex.Submit(context.Background(), r)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return h
}

func waitT(t *testing.T, h *Handle) messages.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait %s: %v (last %v)", h.ID(), err, h.Latest().Status)
	}
	return ev
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"QueueCapacity", func(c *Config) { c.QueueCapacity = 0 }},
		{"Concurrency", func(c *Config) { c.Concurrency = -1 }},
		{"RequestsPerInterval", func(c *Config) { c.RequestsPerInterval = 0 }},
		{"RequestInterval", func(c *Config) { c.RequestInterval = 0 }},
		{"RequestBurst", func(c *Config) { c.RequestBurst = -1 }},
		{"TokensPerInterval", func(c *Config) { c.TokensPerInterval = -5 }},
		{"TokenInterval", func(c *Config) { c.TokensPerInterval, c.TokenInterval = 5, 0 }},
		{"TokenBurst", func(c *Config) { c.TokenBurst = -1 }},
		{"CallTimeout", func(c *Config) { c.CallTimeout = -time.Second }},
		{"MaxAttempts", func(c *Config) { c.MaxAttempts = 0 }},
		{"MaxRestarts", func(c *Config) { c.MaxRestarts = -1 }},
		{"RestartWindow", func(c *Config) { c.RestartWindow = 0 }},
	}
	for _, tc := range cases {
		cfg := DefaultConfig()
		tc.edit(&cfg)
		_, err := Start(cfg)
		var ce *messages.ConfigError
		if !errors.Is(err, messages.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: Start = %v", tc.field, err)
		}
	}
	if _, err := Start(Config{}); !errors.Is(err, messages.ErrInvalidConfig) {
		t.Errorf("zero Config: %v", err)
	}
}

func TestInvalidRequestsAreRefusedAtSubmit(t *testing.T) {
	ex, rec := startRec(t, nil)
	for _, r := range []messages.Request{
		{},
		{Call: ok(""), Tokens: -1},
		{Call: ok(""), Timeout: -time.Second},
		{Call: ok(""), MaxAttempts: -1},
	} {
		if h, err := ex.Submit(context.Background(), r); !errors.Is(err, messages.ErrInvalidRequest) || h != nil {
			t.Errorf("Submit(%+v) = %v", r, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ex.Submit(ctx, messages.Request{Call: ok("")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Submit with a done context = %v", err)
	}
	if counts := rec.Check(t); len(counts) != 0 {
		t.Errorf("refused requests were observed: %v", counts)
	}
}

func TestRatesChangeAtRunTime(t *testing.T) {
	ex, _ := startRec(t, func(c *Config) {
		c.RequestsPerInterval, c.RequestInterval, c.RequestBurst = 1, time.Hour, 1
	})
	waitT(t, submitT(t, ex, messages.Request{Call: ok("")}))
	h := submitT(t, ex, messages.Request{Call: ok("")})
	waitStatus(t, h, messages.StatusProcessing) // waiting up to an hour
	if err := ex.SetRequestRate(Unlimited, time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if ev := waitT(t, h); ev.Status != messages.StatusCompleted {
		t.Fatalf("%v", ev.Status)
	}
	if err := ex.SetRequestRate(0, time.Second, 0); !errors.Is(err, messages.ErrInvalidConfig) {
		t.Errorf("SetRequestRate(0) = %v", err)
	}
	if got := ex.TokenBurst(); got != 0 {
		t.Errorf("TokenBurst without a token limit = %d, want 0", got)
	}
	if err := ex.SetTokenRate(100, time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ex.Submit(context.Background(), messages.Request{Call: ok(""), Tokens: 101}); !errors.Is(err, messages.ErrTokensExceedBurst) {
		t.Errorf("after SetTokenRate(100): %v", err)
	}
	if got := ex.TokenBurst(); got != 100 {
		t.Errorf("TokenBurst after SetTokenRate(100) = %d, want 100", got)
	}
	if err := ex.SetTokenRate(100, time.Second, 250); err != nil {
		t.Fatal(err)
	}
	if got := ex.TokenBurst(); got != 250 {
		t.Errorf("TokenBurst after SetTokenRate(100, burst 250) = %d, want 250", got)
	}
	if _, err := ex.Submit(context.Background(), messages.Request{Call: ok(""), Tokens: 250}); err != nil {
		t.Errorf("a request of TokenBurst tokens: %v", err)
	}
	if err := ex.SetTokenRate(0, time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if got := ex.TokenBurst(); got != 0 {
		t.Errorf("TokenBurst once the token limit is off = %d, want 0", got)
	}
}

func TestPauseHoldsEveryPermit(t *testing.T) {
	ex, _ := startRec(t, nil)
	until := time.Now().Add(100 * time.Millisecond)
	ex.PauseUntil(until)
	ev := waitT(t, submitT(t, ex, messages.Request{Call: ok("")}))
	if ev.Timings().CallStarted.Before(until) {
		t.Errorf("call started %v before the pause ended", until.Sub(ev.Timings().CallStarted))
	}
}

func TestWaitForRoom(t *testing.T) {
	ex, _ := startRec(t, func(c *Config) { c.Concurrency, c.QueueCapacity, c.WaitForRoom = 1, 1, true })
	b := runtimetest.NewBlocker()
	submitT(t, ex, messages.Request{Call: b})
	<-b.Started
	submitT(t, ex, messages.Request{Call: ok("")}) // fills the queue

	// A submit that runs out of time while waiting is refused with its
	// context's error.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := ex.Submit(ctx, messages.Request{Call: ok("")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit = %v, want deadline exceeded", err)
	}
	// One that waits while room is made gets in.
	res := make(chan error, 1)
	go func() {
		h, err := ex.Submit(context.Background(), messages.Request{Call: ok("")})
		if err == nil {
			_, err = h.Wait(context.Background())
		}
		res <- err
	}()
	close(b.Release)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

func TestWaitForRoomEndsWhenTheExecutorStops(t *testing.T) {
	ex, _ := startRec(t, func(c *Config) { c.Concurrency, c.QueueCapacity, c.WaitForRoom = 1, 1, true })
	b := runtimetest.NewBlocker()
	submitT(t, ex, messages.Request{Call: b})
	<-b.Started
	submitT(t, ex, messages.Request{Call: ok("")})
	res := make(chan error, 1)
	go func() {
		_, err := ex.Submit(context.Background(), messages.Request{Call: ok("")})
		res <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ex.StopNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, messages.ErrStopped) {
		t.Fatalf("waiting Submit = %v, want ErrStopped", err)
	}
}

func TestGracefulStopThatRunsOutOfTimeCancelsTheRest(t *testing.T) {
	ex, rec := startRec(t, func(c *Config) { c.Concurrency = 2 })
	b := runtimetest.NewBlocker()
	handles := make([]*Handle, 5)
	for i := range handles {
		handles[i] = submitT(t, ex, messages.Request{Call: b})
	}
	<-b.Started
	<-b.Started
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := ex.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want deadline exceeded", err)
	}
	for _, h := range handles {
		if ev := h.Latest(); ev.Status != messages.StatusCancelled {
			t.Errorf("%v", ev.Status)
		}
	}
	rec.Check(t)
}

// waitStatus walks h's snapshots until one has status s.
func waitStatus(t *testing.T, h *Handle, s messages.RequestStatus) {
	t.Helper()
	for ev := range h.Events() {
		if ev.Status == s {
			return
		}
	}
	t.Fatalf("%s ended %v without reaching %v", h.ID(), h.Latest().Status, s)
}

func TestWaitReportsTheEndEvenWithADoneContext(t *testing.T) {
	ex := startT(t, nil)
	h := submitT(t, ex, messages.Request{Call: noop})
	final := waitT(t, h)
	done, cancel := context.WithCancel(context.Background())
	cancel()
	// Both are ready: the outcome, known, wins every time.
	for range 100 {
		if ev, err := h.Wait(done); err != nil || ev.Seq != final.Seq {
			t.Fatalf("Wait on an ended request with a done context = %v, %v", ev.Status, err)
		}
	}
}
