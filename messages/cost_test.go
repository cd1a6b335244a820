package messages_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// perToken prices a usage at a fixed rate per input and output token, and
// counts how often it was asked.
type perToken struct {
	in, out float64
	calls   *int
}

func (p perToken) Cost(u messages.Usage) float64 {
	*p.calls++
	return float64(u.InputTokens)*p.in + float64(u.OutputTokens)*p.out
}

func TestLifecycleCostsEveryAttemptThatReportsUsage(t *testing.T) {
	calls := 0
	l := messages.NewLifecycle(testID, &messages.Request{Tokens: 30, EstimatedCost: 0.05, Pricing: perToken{0.001, 0.002, &calls}}, t0)
	ev := l.Pending(at(0))
	if want := (messages.Cost{Estimated: 0.05, Priced: true}); ev.Cost() != want {
		t.Fatalf("PENDING cost %+v, want %+v", ev.Cost(), want)
	}
	l.Queue(at(time.Millisecond), 1, "")
	l.Process(at(2 * time.Millisecond))
	l.Call(at(3 * time.Millisecond))
	// The first attempt was billed (a reply that did not decode) and is retried.
	ev = l.Retry(at(4*time.Millisecond), 0, errors.New("malformed reply"), messages.Result{Usage: &messages.Usage{InputTokens: 10, OutputTokens: 5}})
	if ev.Cost().Actual != 0.02 || !ev.Cost().HasActual {
		t.Errorf("after a billed attempt: %+v, want actual 0.02", ev.Cost())
	}
	l.Process(at(5 * time.Millisecond))
	l.Call(at(6 * time.Millisecond))
	ev = l.Complete(at(7*time.Millisecond), messages.Result{Usage: &messages.Usage{InputTokens: 10, OutputTokens: 20, CachedInputTokens: 4}})
	if want := 0.02 + 0.05; !near(ev.Cost().Actual, want) || ev.Cost().Estimated != 0.05 || !ev.Cost().Priced {
		t.Errorf("terminal cost %+v, want actual %v (both attempts)", ev.Cost(), want)
	}
	if calls != 2 {
		t.Errorf("Pricing asked %d times, want once per reported usage (2)", calls)
	}
	if ev.Cached() {
		t.Error("a called request is marked cached")
	}
}

func TestLifecycleWithoutPricingSaysPriceUnknown(t *testing.T) {
	l := messages.NewLifecycle(testID, &messages.Request{EstimatedCost: 3}, t0)
	l.Pending(at(0))
	ev := l.Complete(at(time.Millisecond), messages.Result{Usage: &messages.Usage{InputTokens: 100, OutputTokens: 100}})
	if ev.Cost().Priced || ev.Cost().HasActual || ev.Cost().Actual != 0 {
		t.Errorf("cost %+v: a request without a price must not say what it cost", ev.Cost())
	}
	if !ev.Tokens.HasActual || ev.Tokens.Actual != 200 {
		t.Errorf("tokens %+v: usage is still counted", ev.Tokens)
	}
}

func TestCompleteFromCacheCostsNothing(t *testing.T) {
	calls := 0
	l := messages.NewLifecycle(testID, &messages.Request{Tokens: 40, EstimatedCost: 0.5, Pricing: perToken{1, 1, &calls}}, t0)
	l.Pending(at(0))
	ev := l.CompleteFromCache(at(time.Millisecond), messages.Result{StatusCode: 200, Body: []byte(`{"ok":true}`),
		Usage: &messages.Usage{InputTokens: 30, OutputTokens: 10}})
	if ev.Status != messages.StatusCompleted || ev.Seq != 2 || !ev.Cached() {
		t.Fatalf("snapshot %v seq %d cached %v, want COMPLETED seq 2 cached", ev.Status, ev.Seq, ev.Cached())
	}
	if want := (messages.Cost{Priced: true, HasActual: true}); ev.Cost() != want {
		t.Errorf("cost %+v, want %+v: a cached reply costs nothing", ev.Cost(), want)
	}
	if ev.Tokens.HasActual || calls != 0 {
		t.Errorf("the stored reply's usage was counted again: tokens %+v, pricing asked %d times", ev.Tokens, calls)
	}
	if resp, ok := ev.Response(); !ok || string(resp.Body) != `{"ok":true}` {
		t.Errorf("response %+v %v", resp, ok)
	}
	if ev.Timings().Finished != at(time.Millisecond) || !ev.Timings().CallStarted.IsZero() {
		t.Errorf("timings %+v: finished, never called", ev.Timings())
	}
	if log := ev.Log(); log[len(log)-1].Message != "answered from the cache" {
		t.Errorf("log %+v", log)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"cached":true`) || !strings.Contains(string(b), `"cost":{"estimated":0,"actual":0,"priced":true,"has_actual":true}`) {
		t.Errorf("JSON lacks the cache and cost: %s", b)
	}
}

func TestSpendCapErrorIsTyped(t *testing.T) {
	var err error = &messages.SpendCapError{Limit: 1, Spent: 0.5, Committed: 0.4, Estimate: 0.2}
	if !errors.Is(err, messages.ErrSpendCap) {
		t.Error("not ErrSpendCap")
	}
	for _, want := range []string{"$1.0000", "$0.5000 spent", "$0.4000 in flight", "$0.2000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 }

func TestChargeAddsWhatAttemptsRunElsewhereConsumed(t *testing.T) {
	calls := 0
	routed := messages.NewLifecycle(testID, &messages.Request{Tokens: 30, EstimatedCost: 0.05, Pricing: perToken{1, 1, &calls}}, t0)
	first := routed.Pending(at(0))

	// An attempt priced where it ran, at a price the routed request does
	// not know, that was billed and failed.
	attempt := func(price float64, u messages.Usage, fail bool) messages.Event {
		n := 0
		l := messages.NewLifecycle(testID, &messages.Request{Pricing: perToken{price, price, &n}}, t0)
		l.Pending(at(0))
		l.Queue(at(0), 1, "")
		l.Process(at(0))
		l.Call(at(0))
		if fail {
			return l.Fail(at(time.Millisecond), errors.New("malformed reply"), messages.Result{Usage: &u})
		}
		return l.Complete(at(time.Millisecond), messages.Result{Usage: &u})
	}
	routed.Charge(attempt(0.01, messages.Usage{InputTokens: 10, OutputTokens: 10}, true))
	routed.Charge(attempt(0.001, messages.Usage{InputTokens: 100, OutputTokens: 50}, false))
	ev := routed.Complete(at(2*time.Millisecond), messages.Result{StatusCode: 200})
	if want := 0.2 + 0.15; !near(ev.Cost().Actual, want) || !ev.Cost().HasActual || !ev.Cost().Priced || ev.Cost().Estimated != 0.05 {
		t.Errorf("cost %+v, want actual %v: both attempts at their own prices", ev.Cost(), want)
	}
	if !ev.Tokens.HasActual || ev.Tokens.Actual != 170 {
		t.Errorf("tokens %+v, want 170 actual: both attempts' usage", ev.Tokens)
	}
	if calls != 0 {
		t.Errorf("the routed request's own price was asked %d times: its attempts were priced where they ran", calls)
	}
	if first.Cost().HasActual {
		t.Errorf("PENDING's cost changed after it was published: %+v", first.Cost())
	}
}

func TestChargeCarriesACachedAnswer(t *testing.T) {
	n := 0
	routed := messages.NewLifecycle(testID, &messages.Request{EstimatedCost: 0.05}, t0)
	routed.Pending(at(0))
	l := messages.NewLifecycle(testID, &messages.Request{Pricing: perToken{1, 1, &n}}, t0)
	l.Pending(at(0))
	routed.Charge(l.CompleteFromCache(at(time.Millisecond), messages.Result{StatusCode: 200}))
	ev := routed.Complete(at(time.Millisecond), messages.Result{StatusCode: 200})
	if !ev.Cached() || ev.Cost().Actual != 0 || !ev.Cost().HasActual || !ev.Cost().Priced {
		t.Errorf("cached %v cost %+v: an attempt a cache answered costs nothing, known", ev.Cached(), ev.Cost())
	}
	// An attempt that reported nothing changes nothing.
	quiet := messages.NewLifecycle(testID, &messages.Request{EstimatedCost: 0.05}, t0)
	quiet.Pending(at(0))
	quiet.Charge(messages.Event{})
	if ev := quiet.Cancel(at(time.Millisecond), messages.ErrStopped); ev.Cost().HasActual || ev.Tokens.HasActual {
		t.Errorf("cost %+v tokens %+v after charging nothing", ev.Cost(), ev.Tokens)
	}
}
