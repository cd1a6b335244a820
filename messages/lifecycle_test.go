package messages_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
)

func TestLifecycleHappyPath(t *testing.T) {
	const ms = time.Millisecond
	l := messages.NewLifecycle(testID, &messages.Request{Tokens: 12}, t0)
	if cur := l.Current(); cur.Seq != 0 || cur.Status != 0 || l.Attempt() != 0 || l.Done() {
		t.Fatalf("before Pending: Current = %+v, Attempt %d, Done %v", cur, l.Attempt(), l.Done())
	}

	steps := []struct {
		name    string
		do      func() messages.Event
		status  messages.RequestStatus
		attempt int
		timings messages.Timings
		note    string
	}{
		{"pending", func() messages.Event { return l.Pending(at(0)) },
			messages.StatusPending, 0, messages.Timings{Created: t0}, "accepted"},
		{"queue", func() messages.Event { return l.Queue(at(10*ms), 1, "") },
			messages.StatusQueued, 0, messages.Timings{Created: t0, Queued: at(10 * ms)}, "queued"},
		{"process", func() messages.Event { return l.Process(at(30 * ms)) },
			messages.StatusProcessing, 0,
			messages.Timings{Created: t0, Queued: at(10 * ms), Processing: at(30 * ms)}, "awaiting permit"},
		{"call", func() messages.Event { return l.Call(at(35 * ms)) },
			messages.StatusCalling, 1,
			messages.Timings{Created: t0, Queued: at(10 * ms), Processing: at(30 * ms), CallStarted: at(35 * ms)}, "attempt 1"},
		{"complete", func() messages.Event { return l.Complete(at(135*ms), messages.Result{StatusCode: 200}) },
			messages.StatusCompleted, 1,
			messages.Timings{Created: t0, Queued: at(10 * ms), Processing: at(30 * ms), CallStarted: at(35 * ms), Finished: at(135 * ms)},
			"completed"},
	}
	var events []messages.Event
	for i, st := range steps {
		ev := st.do()
		events = append(events, ev)
		if ev.ID != testID {
			t.Errorf("%s: ID = %v, want %v", st.name, ev.ID, testID)
		}
		if ev.Seq != uint64(i+1) {
			t.Errorf("%s: Seq = %d, want %d", st.name, ev.Seq, i+1)
		}
		if ev.Status != st.status {
			t.Errorf("%s: Status = %v, want %v", st.name, ev.Status, st.status)
		}
		if ev.Attempt != st.attempt || l.Attempt() != st.attempt {
			t.Errorf("%s: Attempt = %d (lifecycle %d), want %d", st.name, ev.Attempt, l.Attempt(), st.attempt)
		}
		if ev.Timings() != st.timings {
			t.Errorf("%s: Timings = %+v, want %+v", st.name, ev.Timings(), st.timings)
		}
		if ev.Tokens.Estimated != 12 {
			t.Errorf("%s: Tokens.Estimated = %d, want 12", st.name, ev.Tokens.Estimated)
		}
		log := ev.Log()
		if len(log) != i+1 {
			t.Fatalf("%s: len(Log) = %d, want %d", st.name, len(log), i+1)
		}
		if last := log[i]; last.Status != st.status || last.Message != st.note {
			t.Errorf("%s: last log entry = %v %q, want %v %q", st.name, last.Status, last.Message, st.status, st.note)
		}
		if l.Current().Seq != ev.Seq || l.Current().Status != ev.Status {
			t.Errorf("%s: Current = seq %d %v, want the event just published", st.name, l.Current().Seq, l.Current().Status)
		}
		if got := l.Done(); got != st.status.Terminal() {
			t.Errorf("%s: Done = %v", st.name, got)
		}
	}

	final := events[len(events)-1]
	if got := final.Timings().QueueWait(); got != 20*ms {
		t.Errorf("QueueWait = %v, want 20ms", got)
	}
	if got := final.Timings().PermitWait(); got != 5*ms {
		t.Errorf("PermitWait = %v, want 5ms", got)
	}
	if got := final.Timings().CallDuration(); got != 100*ms {
		t.Errorf("CallDuration = %v, want 100ms", got)
	}
	if got := final.Timings().Total(); got != 135*ms {
		t.Errorf("Total = %v, want 135ms", got)
	}
	if _, ok := final.Failure(); ok || final.Err() != nil {
		t.Error("a completed request carries an error")
	}
	if r, ok := final.Response(); !ok || r.StatusCode != 200 {
		t.Errorf("Response = %+v, %v", r, ok)
	}
	// The log's timestamps are the ones each transition was given.
	wantAt := []time.Time{at(0), at(10 * ms), at(30 * ms), at(35 * ms), at(135 * ms)}
	for i, tr := range final.Log() {
		if !tr.At.Equal(wantAt[i]) {
			t.Errorf("log[%d].At = %v, want %v", i, tr.At, wantAt[i])
		}
	}
}

func TestTimingsUnreachedStagesAreZero(t *testing.T) {
	var tm messages.Timings
	if tm.QueueWait() != 0 || tm.PermitWait() != 0 || tm.CallDuration() != 0 || tm.Total() != 0 {
		t.Error("durations of the zero Timings are not zero")
	}
	// Cancelled while queued: no call, so no permit wait or call duration.
	l := messages.NewLifecycle(testID, &messages.Request{}, t0)
	l.Pending(at(0))
	l.Queue(at(time.Second), 1, "")
	ev := l.Cancel(at(3*time.Second), messages.ErrCancelled)
	if ev.Timings().QueueWait() != 0 || ev.Timings().PermitWait() != 0 || ev.Timings().CallDuration() != 0 {
		t.Errorf("stage durations of a request cancelled in the queue = %v %v %v",
			ev.Timings().QueueWait(), ev.Timings().PermitWait(), ev.Timings().CallDuration())
	}
	if ev.Timings().Total() != 3*time.Second {
		t.Errorf("Total = %v, want 3s", ev.Timings().Total())
	}
}

func TestLifecycleQueueNote(t *testing.T) {
	l := messages.NewLifecycle(testID, &messages.Request{}, t0)
	l.Pending(at(0))
	ev := l.Queue(at(1), 1, "behind 3 others")
	if got := ev.Log()[1].Message; got != "behind 3 others" {
		t.Errorf("note = %q", got)
	}
}

func TestLifecycleRetryPath(t *testing.T) {
	const ms = time.Millisecond
	l := toCalling(t, &messages.Request{})
	callErr := errors.New("upstream returned 503")
	retry := l.Retry(at(60*ms), 2*time.Second, callErr, messages.Result{StatusCode: 503})
	if retry.Status != messages.StatusQueued || retry.Seq != 5 || retry.Attempt != 1 {
		t.Errorf("retry snapshot = %v seq %d attempt %d, want QUEUED seq 5 attempt 1", retry.Status, retry.Seq, retry.Attempt)
	}
	note := retry.Log()[4].Message
	for _, want := range []string{"2s", "upstream returned 503", "attempt 1"} {
		if !strings.Contains(note, want) {
			t.Errorf("retry note %q does not contain %q", note, want)
		}
	}
	if want := (messages.Timings{Created: t0, Queued: at(60 * ms)}); retry.Timings() != want {
		t.Errorf("retry Timings = %+v, want %+v (the retry re-enters the queue)", retry.Timings(), want)
	}
	if _, ok := retry.Failure(); ok || retry.Err() != nil {
		t.Error("a retry snapshot carries a terminal error")
	}
	if _, ok := retry.Response(); ok {
		t.Error("a retry snapshot carries the failed attempt's response")
	}
	if l.Done() {
		t.Error("Done after a retry")
	}

	l.Process(at(2060 * ms))
	call := l.Call(at(2070 * ms))
	if call.Attempt != 2 || call.Log()[6].Message != "attempt 2" {
		t.Errorf("second call: Attempt %d, note %q", call.Attempt, call.Log()[6].Message)
	}
	finalErr := errors.New("upstream returned 500")
	fail := l.Fail(at(2170*ms), finalErr, messages.Result{StatusCode: 500, Body: []byte("oops")})

	if fail.Status != messages.StatusFailed || fail.Seq != 8 || fail.Attempt != 2 {
		t.Errorf("final = %v seq %d attempt %d, want FAILED seq 8 attempt 2", fail.Status, fail.Seq, fail.Attempt)
	}
	wantStatuses := []messages.RequestStatus{
		messages.StatusPending, messages.StatusQueued, messages.StatusProcessing, messages.StatusCalling,
		messages.StatusQueued, messages.StatusProcessing, messages.StatusCalling, messages.StatusFailed,
	}
	log := fail.Log()
	if len(log) != len(wantStatuses) {
		t.Fatalf("len(Log) = %d, want %d", len(log), len(wantStatuses))
	}
	for i, s := range wantStatuses {
		if log[i].Status != s {
			t.Errorf("log[%d].Status = %v, want %v", i, log[i].Status, s)
		}
	}
	// Stage timings are the latest attempt's; Total runs from creation.
	tm := fail.Timings()
	if tm.QueueWait() != 2000*ms || tm.PermitWait() != 10*ms || tm.CallDuration() != 100*ms || tm.Total() != 2170*ms {
		t.Errorf("durations = queue %v permit %v call %v total %v; want 2s 10ms 100ms 2.17s",
			tm.QueueWait(), tm.PermitWait(), tm.CallDuration(), tm.Total())
	}
	info, ok := fail.Failure()
	if !ok || info.Kind != "error" || info.Message != finalErr.Error() {
		t.Errorf("Error() = %+v, %v", info, ok)
	}
	if fail.Err() != finalErr {
		t.Errorf("Err() = %v, want the call's error itself", fail.Err())
	}
	if log[7].Message != finalErr.Error() {
		t.Errorf("terminal note = %q, want the error message", log[7].Message)
	}
	r, ok := fail.Response()
	if !ok || r.StatusCode != 500 || string(r.Body) != "oops" {
		t.Errorf("Response = %+v, %v", r, ok)
	}
	if !l.Done() {
		t.Error("not Done after Fail")
	}
}

func TestLifecycleFailWithoutResponse(t *testing.T) {
	l := toCalling(t, &messages.Request{})
	ev := l.Fail(at(time.Second), errPlain, messages.Result{})
	if _, ok := ev.Response(); ok {
		t.Error("Fail with an empty Result recorded a response")
	}
}

func TestLifecycleResponseValueShared(t *testing.T) {
	type decoded struct{ N int }
	v := &decoded{N: 7}
	l := toCalling(t, &messages.Request{})
	ev := l.Complete(at(time.Second), messages.Result{Value: v})
	r, ok := ev.Response()
	if !ok {
		t.Fatal("a Result with only a Value recorded no response")
	}
	if r.Value != v {
		t.Errorf("Value = %v, want the call's value itself", r.Value)
	}
}

func TestLifecyclePanicsAfterTerminal(t *testing.T) {
	ends := map[string]func(l *messages.Lifecycle) messages.Event{
		"complete": func(l *messages.Lifecycle) messages.Event {
			return l.Complete(at(time.Second), messages.Result{StatusCode: 200})
		},
		"fail": func(l *messages.Lifecycle) messages.Event {
			return l.Fail(at(time.Second), errPlain, messages.Result{})
		},
		"cancel": func(l *messages.Lifecycle) messages.Event { return l.Cancel(at(time.Second), messages.ErrCancelled) },
	}
	later := map[string]func(l *messages.Lifecycle){
		"pending": func(l *messages.Lifecycle) { l.Pending(at(time.Hour)) },
		"queue":   func(l *messages.Lifecycle) { l.Queue(at(time.Hour), 2, "") },
		"process": func(l *messages.Lifecycle) { l.Process(at(time.Hour)) },
		"call":    func(l *messages.Lifecycle) { l.Call(at(time.Hour)) },
		"complete": func(l *messages.Lifecycle) {
			l.Complete(at(time.Hour), messages.Result{StatusCode: 201, Usage: &messages.Usage{TotalTokens: 9}})
		},
		"fail": func(l *messages.Lifecycle) {
			l.Fail(at(time.Hour), errors.New("late"), messages.Result{StatusCode: 500})
		},
		"cancel": func(l *messages.Lifecycle) { l.Cancel(at(time.Hour), messages.ErrStopped) },
		"retry": func(l *messages.Lifecycle) {
			l.Retry(at(time.Hour), time.Second, errors.New("late"), messages.Result{Usage: &messages.Usage{TotalTokens: 9}})
		},
	}
	for endName, end := range ends {
		for name, f := range later {
			t.Run(endName+"/"+name, func(t *testing.T) {
				l := toCalling(t, &messages.Request{})
				final := end(l)
				v := catchPanic(func() { f(l) })
				if v == nil {
					t.Fatalf("%s after %v did not panic", name, final.Status)
				}
				if msg := fmt.Sprint(v); !strings.Contains(msg, final.Status.String()) {
					t.Errorf("panic %q does not name the terminal state", msg)
				}
				// A refused transition changes nothing.
				cur := l.Current()
				if cur.Seq != final.Seq || cur.Status != final.Status || cur.Attempt != final.Attempt ||
					cur.Timings() != final.Timings() || cur.Tokens != final.Tokens {
					t.Errorf("state changed by the refused transition: %+v, was %+v", cur, final)
				}
				gotR, gotOK := cur.Response()
				wantR, wantOK := final.Response()
				if gotOK != wantOK || gotR.StatusCode != wantR.StatusCode {
					t.Errorf("response changed by the refused transition: %+v, was %+v", gotR, wantR)
				}
				gotE, _ := cur.Failure()
				wantE, _ := final.Failure()
				if gotE.Kind != wantE.Kind || gotE.Message != wantE.Message || cur.Err() != final.Err() {
					t.Errorf("error changed by the refused transition: %+v, was %+v", gotE, wantE)
				}
				if len(cur.Log()) != len(final.Log()) {
					t.Errorf("log grew to %d entries", len(cur.Log()))
				}
				if !l.Done() {
					t.Error("Done is false after the refused transition")
				}
			})
		}
	}
}

func TestLifecycleErrorKinds(t *testing.T) {
	tests := []struct {
		name   string
		cancel bool
		err    error
		kind   string
		status messages.RequestStatus
	}{
		{"cancelled", true, messages.ErrCancelled, "cancelled", messages.StatusCancelled},
		{"cancelled wrapped", true, fmt.Errorf("%w: context canceled", messages.ErrCancelled), "cancelled", messages.StatusCancelled},
		{"stopped", true, messages.ErrStopped, "stopped", messages.StatusCancelled},
		{"timeout", false, messages.ErrTimeout, "timeout", messages.StatusFailed},
		{"timeout wrapped", false, fmt.Errorf("attempt 2: %w", messages.ErrTimeout), "timeout", messages.StatusFailed},
		{"caller crashed", false, &messages.CallerCrashError{Panic: "nil map"}, "caller_crashed", messages.StatusFailed},
		{"restart storm", false, messages.ErrRestartStorm, "restart_storm", messages.StatusFailed},
		{"own kind", false, &kindError{kind: "rate_limited"}, "rate_limited", messages.StatusFailed},
		{"own kind wins over sentinel", false, &kindError{kind: "upstream_timeout", err: messages.ErrTimeout}, "upstream_timeout", messages.StatusFailed},
		{"plain", false, errPlain, "error", messages.StatusFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := toCalling(t, &messages.Request{})
			var ev messages.Event
			if tt.cancel {
				ev = l.Cancel(at(time.Second), tt.err)
			} else {
				ev = l.Fail(at(time.Second), tt.err, messages.Result{})
			}
			if ev.Status != tt.status {
				t.Errorf("Status = %v, want %v", ev.Status, tt.status)
			}
			info, ok := ev.Failure()
			if !ok {
				t.Fatal("no ErrorInfo")
			}
			if info.Kind != tt.kind {
				t.Errorf("Kind = %q, want %q", info.Kind, tt.kind)
			}
			if info.Message != tt.err.Error() {
				t.Errorf("Message = %q, want %q", info.Message, tt.err.Error())
			}
			if info.Details != nil {
				t.Errorf("Details = %v, want nil", info.Details)
			}
			if !errors.Is(ev.Err(), tt.err) {
				t.Errorf("Err() = %v does not match the cause", ev.Err())
			}
			if ev.Timings().Finished != at(time.Second) {
				t.Errorf("Finished = %v", ev.Timings().Finished)
			}
		})
	}
}

func TestLifecycleErrorDetails(t *testing.T) {
	details := map[string]string{"http_status": "429", "provider": "openai"}
	err := fmt.Errorf("call: %w", &detailError{msg: "too many requests", details: details})
	l := toCalling(t, &messages.Request{})
	ev := l.Fail(at(time.Second), err, messages.Result{})
	info, _ := ev.Failure()
	if !maps.Equal(info.Details, details) {
		t.Errorf("Details = %v, want %v", info.Details, details)
	}
	details["http_status"] = "500" // the error's own map is not the snapshot's
	if info, _ := ev.Failure(); info.Details["http_status"] != "429" {
		t.Errorf("changing the error's map changed the snapshot: %v", info.Details)
	}

	l = toCalling(t, &messages.Request{})
	ev = l.Fail(at(time.Second), &detailError{msg: "no facts", details: map[string]string{}}, messages.Result{})
	if info, _ := ev.Failure(); info.Details != nil {
		t.Errorf("empty Details() gave %v, want nil", info.Details)
	}
}

func TestLifecycleTokens(t *testing.T) {
	tests := []struct {
		name      string
		retry     *messages.Usage // usage of a first, failed attempt
		final     *messages.Usage
		actual    int
		hasActual bool
	}{
		{"no usage", nil, nil, 0, false},
		{"input plus output", nil, &messages.Usage{InputTokens: 3, OutputTokens: 4}, 7, true},
		{"total preferred", nil, &messages.Usage{InputTokens: 3, OutputTokens: 4, TotalTokens: 10}, 10, true},
		{"zero usage reported", nil, &messages.Usage{}, 0, true},
		{"attempts add up", &messages.Usage{InputTokens: 2, OutputTokens: 1}, &messages.Usage{InputTokens: 3, OutputTokens: 4}, 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := toCalling(t, &messages.Request{Tokens: 50})
			if tt.retry != nil {
				ev := l.Retry(at(time.Second), 0, errPlain, messages.Result{Usage: tt.retry})
				if !ev.Tokens.HasActual {
					t.Error("the retry snapshot does not record the failed attempt's usage")
				}
				l.Process(at(2 * time.Second))
				l.Call(at(3 * time.Second))
			}
			ev := l.Complete(at(4*time.Second), messages.Result{StatusCode: 200, Usage: tt.final})
			want := messages.Tokens{Estimated: 50, Actual: tt.actual, HasActual: tt.hasActual}
			if ev.Tokens != want {
				t.Errorf("Tokens = %+v, want %+v", ev.Tokens, want)
			}
		})
	}
}

func TestLifecycleFailRecordsUsage(t *testing.T) {
	l := toCalling(t, &messages.Request{Tokens: 5})
	ev := l.Fail(at(time.Second), errPlain, messages.Result{Usage: &messages.Usage{InputTokens: 8}})
	if ev.Tokens != (messages.Tokens{Estimated: 5, Actual: 8, HasActual: true}) {
		t.Errorf("Tokens = %+v", ev.Tokens)
	}
	if _, ok := ev.Response(); ok {
		t.Error("a Result with only Usage recorded a response")
	}
}

// TestRetryFailureOnlyOnTheRetrySnapshot: the QUEUED snapshot that schedules a
// retry describes the attempt that failed, scrubbed like a terminal error;
// the snapshots before and after it do not.
func TestRetryFailureOnlyOnTheRetrySnapshot(t *testing.T) {
	const secret = "sk-retry-secret-0042"
	l := toCalling(t, &messages.Request{Secrets: []string{secret}})
	if _, ok := l.Current().RetryFailure(); ok {
		t.Error("the CALLING snapshot carries a retry error")
	}
	cause := &kindError{kind: "rate_limited", err: &detailError{
		msg:     "429 for key " + secret,
		details: map[string]string{"status": "429", "key": secret},
	}}
	retry := l.Retry(at(time.Second), time.Second, cause, messages.Result{StatusCode: 429})
	info, ok := retry.RetryFailure()
	if !ok {
		t.Fatal("the retry snapshot has no RetryFailure")
	}
	if info.Kind != "rate_limited" || info.Details["status"] != "429" {
		t.Errorf("RetryFailure = %+v, want kind rate_limited, status 429", info)
	}
	if strings.Contains(info.Message, secret) || strings.Contains(info.Details["key"], secret) {
		t.Errorf("RetryFailure leaks the secret: %+v", info)
	}
	if !strings.Contains(info.Message, messages.Redacted) {
		t.Errorf("RetryFailure message %q: want the secret replaced by %s", info.Message, messages.Redacted)
	}
	info.Details["status"] = "changed"
	if again, _ := retry.RetryFailure(); again.Details["status"] != "429" {
		t.Error("changing a returned RetryFailure's details changed the snapshot")
	}
	if _, ok := retry.Failure(); ok {
		t.Error("the retry snapshot carries a terminal error")
	}

	for _, ev := range []messages.Event{
		l.Process(at(2 * time.Second)),
		l.Call(at(3 * time.Second)),
		l.Complete(at(4*time.Second), messages.Result{StatusCode: 200}),
	} {
		if _, ok := ev.RetryFailure(); ok {
			t.Errorf("the %v snapshot after the retry still carries its error", ev.Status)
		}
	}
	if info, ok := retry.RetryFailure(); !ok || info.Kind != "rate_limited" {
		t.Error("later transitions changed the retry snapshot")
	}
}

// A routed request's snapshots name the deployment and model of the
// attempt they belong to: none before the first route, the first
// deployment through the failed attempt and the QUEUED that schedules its
// retry, the second from its own attempt on; the JSON form carries them.
func TestLifecycleRouteNamesTheAttempt(t *testing.T) {
	const ms = time.Millisecond
	l := messages.NewLifecycle(testID, &messages.Request{}, t0)
	pending := l.Pending(at(0))
	queued := l.Queue(at(ms), 1, "")
	l.Route("openai-a", "gpt-4o-mini")
	processing := l.Process(at(2 * ms))
	calling := l.Call(at(3 * ms))
	retry := l.Retry(at(4*ms), 0, errors.New("overloaded"), messages.Result{StatusCode: 529})
	l.Route("claude-b", "claude-haiku")
	processing2 := l.Process(at(5 * ms))
	calling2 := l.Call(at(6 * ms))
	done := l.Complete(at(7*ms), messages.Result{StatusCode: 200})

	for _, c := range []struct {
		name              string
		ev                messages.Event
		deployment, model string
	}{
		{"pending", pending, "", ""},
		{"queued", queued, "", ""},
		{"processing", processing, "openai-a", "gpt-4o-mini"},
		{"calling", calling, "openai-a", "gpt-4o-mini"},
		{"retry", retry, "openai-a", "gpt-4o-mini"},
		{"processing 2", processing2, "claude-b", "claude-haiku"},
		{"calling 2", calling2, "claude-b", "claude-haiku"},
		{"completed", done, "claude-b", "claude-haiku"},
	} {
		if c.ev.Deployment != c.deployment || c.ev.Model != c.model {
			t.Errorf("%s: deployment %q, model %q; want %q, %q", c.name, c.ev.Deployment, c.ev.Model, c.deployment, c.model)
		}
	}
	if done.Seq != 8 || done.Attempt != 2 {
		t.Errorf("final snapshot: Seq %d, Attempt %d; want 8, 2", done.Seq, done.Attempt)
	}
	b, err := json.Marshal(done)
	if err != nil {
		t.Fatal(err)
	}
	var wire struct{ Deployment, Model string }
	if err := json.Unmarshal(b, &wire); err != nil || wire.Deployment != "claude-b" || wire.Model != "claude-haiku" {
		t.Errorf("JSON %s: deployment %q, model %q (%v)", b, wire.Deployment, wire.Model, err)
	}
	b, _ = json.Marshal(pending)
	if strings.Contains(string(b), `"deployment"`) || strings.Contains(string(b), `"model"`) {
		t.Errorf("a snapshot not yet routed names a deployment: %s", b)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Route after the terminal snapshot did not panic")
			}
		}()
		l.Route("x", "y")
	}()
}
