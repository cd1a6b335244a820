package messages_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
)

func TestZeroEventAccessors(t *testing.T) {
	var ev messages.Event
	if ep := ev.Endpoint(); ep.Method != "" || ep.URL != "" || ep.Header != nil || ep.Payload != nil {
		t.Errorf("Endpoint = %+v, want zero", ep)
	}
	if md := ev.Metadata(); md != nil {
		t.Errorf("Metadata = %v, want nil", md)
	}
	if log := ev.Log(); len(log) != 0 {
		t.Errorf("Log = %v, want empty", log)
	}
	if _, ok := ev.Response(); ok {
		t.Error("Response reported")
	}
	if _, ok := ev.Failure(); ok {
		t.Error("Error reported")
	}
	if ev.Err() != nil {
		t.Errorf("Err = %v", ev.Err())
	}
	if b, err := json.Marshal(ev); err == nil {
		t.Errorf("MarshalJSON of the zero Event = %s, want an error (it has no status)", b)
	}
}

// immutabilityFixture runs a request to FAILED with a response and error
// details, and returns its request, the PENDING snapshot and the final one.
func immutabilityFixture(t *testing.T) (*messages.Request, messages.Event, messages.Event, messages.Result) {
	t.Helper()
	r := &messages.Request{
		Tokens: 10,
		Endpoint: messages.Endpoint{
			Method:  "POST",
			URL:     "https://api.example.com/v1/chat",
			Header:  http.Header{"Content-Type": {"application/json"}, "Accept": {"a", "b"}},
			Payload: []byte(`{"prompt":"hello"}`),
		},
		Metadata: map[string]string{"tenant": "acme"},
		Secrets:  []string{"sk-test-0123456789"},
	}
	l := messages.NewLifecycle(testID, r, t0)
	pending := l.Pending(at(0))
	l.Queue(at(time.Millisecond), 1, "")
	l.Process(at(2 * time.Millisecond))
	l.Call(at(3 * time.Millisecond))
	res := messages.Result{
		StatusCode: 502,
		Header:     http.Header{"X-Request-Id": {"req-1"}},
		Body:       []byte(`{"error":"bad gateway"}`),
	}
	err := &detailError{msg: "bad gateway for sk-test-0123456789", details: map[string]string{"http_status": "502"}}
	final := l.Fail(at(4*time.Millisecond), err, res)
	return r, pending, final, res
}

func checkFixtureSnapshot(t *testing.T, when string, pending, ev messages.Event) {
	t.Helper()
	for _, e := range []messages.Event{pending, ev} {
		ep := e.Endpoint()
		if ep.Method != "POST" || ep.URL != "https://api.example.com/v1/chat" {
			t.Errorf("%s: endpoint = %s %s", when, ep.Method, ep.URL)
		}
		wantHeader := http.Header{"Content-Type": {"application/json"}, "Accept": {"a", "b"}}
		if !maps.EqualFunc(ep.Header, wantHeader, slices.Equal) {
			t.Errorf("%s: endpoint header = %v, want %v", when, ep.Header, wantHeader)
		}
		if string(ep.Payload) != `{"prompt":"hello"}` {
			t.Errorf("%s: payload = %s", when, ep.Payload)
		}
		if md := e.Metadata(); !maps.Equal(md, map[string]string{"tenant": "acme"}) {
			t.Errorf("%s: metadata = %v", when, md)
		}
	}
	if pending.Status != messages.StatusPending || len(pending.Log()) != 1 {
		t.Errorf("%s: pending snapshot is now %v with %d log entries", when, pending.Status, len(pending.Log()))
	}
	log := ev.Log()
	if len(log) != 5 || log[0].Message != "accepted" || log[0].Status != messages.StatusPending ||
		log[4].Status != messages.StatusFailed || log[4].Message != "bad gateway for [REDACTED]" {
		t.Errorf("%s: log = %+v", when, log)
	}
	r, ok := ev.Response()
	if !ok || r.StatusCode != 502 || string(r.Body) != `{"error":"bad gateway"}` ||
		!maps.EqualFunc(r.Header, http.Header{"X-Request-Id": {"req-1"}}, slices.Equal) {
		t.Errorf("%s: response = %+v, %v", when, r, ok)
	}
	info, ok := ev.Failure()
	if !ok || info.Message != "bad gateway for [REDACTED]" || !maps.Equal(info.Details, map[string]string{"http_status": "502"}) {
		t.Errorf("%s: error = %+v, %v", when, info, ok)
	}
}

func TestEventAccessorsReturnCopies(t *testing.T) {
	_, pending, ev, _ := immutabilityFixture(t)
	checkFixtureSnapshot(t, "before", pending, ev)

	ep := ev.Endpoint()
	ep.Header.Set("Content-Type", "text/plain")
	ep.Header["Accept"][1] = "mutated"
	ep.Header.Set("X-Added", "1")
	ep.Payload[0] = 'X'
	md := ev.Metadata()
	md["tenant"] = "evil"
	md["added"] = "1"
	log := ev.Log()
	log[0].Message = "mutated"
	log[4].Status = messages.StatusCompleted
	_ = append(log[:2], messages.Transition{Message: "overwrite"})
	r, _ := ev.Response()
	r.Header["X-Request-Id"][0] = "mutated"
	r.Header.Set("X-Added", "1")
	r.Body[0] = 'X'
	info, _ := ev.Failure()
	info.Details["http_status"] = "200"
	info.Details["added"] = "1"

	checkFixtureSnapshot(t, "after mutating accessor results", pending, ev)
}

func TestEventUnaffectedByRequestAndResultMutation(t *testing.T) {
	r, pending, ev, res := immutabilityFixture(t)
	r.Endpoint.Method = "GET"
	r.Endpoint.URL = "https://evil.example.com"
	r.Endpoint.Header.Set("Content-Type", "text/plain")
	r.Endpoint.Header["Accept"][0] = "mutated"
	r.Endpoint.Payload[0] = 'X'
	r.Metadata["tenant"] = "evil"
	r.Metadata["added"] = "1"
	r.Secrets[0] = "something-else"
	res.Header["X-Request-Id"][0] = "mutated"
	res.Body[0] = 'X'

	checkFixtureSnapshot(t, "after mutating the request and result", pending, ev)
}

func TestLifecycleCopiesSecretsAtCreation(t *testing.T) {
	const secret = "sk-live-abcdef123456"
	r := &messages.Request{Secrets: []string{secret}}
	l := toCalling(t, r)
	r.Secrets[0] = "unrelated-string"
	ev := l.Fail(at(time.Second), &kindError{kind: "auth: key " + secret + " revoked"}, messages.Result{})
	info, _ := ev.Failure()
	if strings.Contains(info.Message, secret) {
		t.Errorf("secret leaked after the request's Secrets were changed: %q", info.Message)
	}
}

func TestEarlierSnapshotsSurviveLaterTransitions(t *testing.T) {
	l := messages.NewLifecycle(testID, &messages.Request{}, t0)
	var events []messages.Event
	step := time.Duration(0)
	next := func() time.Time { step += time.Millisecond; return at(step) }
	events = append(events, l.Pending(next()), l.Queue(next(), 1, ""))
	for range 4 { // several attempts, so the log grows past spare capacity
		events = append(events, l.Process(next()), l.Call(next()))
		events = append(events, l.Retry(next(), time.Second, errPlain, messages.Result{}))
	}
	events = append(events, l.Process(next()), l.Call(next()), l.Complete(next(), messages.Result{}))

	type view struct {
		status messages.RequestStatus
		log    []messages.Transition
	}
	views := make([]view, len(events))
	for i, ev := range events {
		views[i] = view{ev.Status, ev.Log()}
	}
	// Each snapshot is read again only after every later transition has
	// appended to the shared log, which is when an overwrite would show.
	final := events[len(events)-1].Log()
	for i, ev := range events {
		log := ev.Log()
		if ev.Seq != uint64(i+1) {
			t.Errorf("event %d: Seq = %d", i, ev.Seq)
		}
		if len(log) != i+1 {
			t.Errorf("event %d: len(Log) = %d, want %d", i, len(log), i+1)
			continue
		}
		if log[i].Status != ev.Status || ev.Status != views[i].status {
			t.Errorf("event %d: last log status %v, Status %v, was %v", i, log[i].Status, ev.Status, views[i].status)
		}
		if !slices.Equal(log, views[i].log) {
			t.Errorf("event %d: log changed from %v to %v", i, views[i].log, log)
		}
		if !slices.Equal(log, final[:i+1]) {
			t.Errorf("event %d: log is not a prefix of the final log", i)
		}
	}
}

func TestEarlierSnapshotsUnchangedAfterEachTransition(t *testing.T) {
	l := messages.NewLifecycle(testID, &messages.Request{}, t0)
	first := l.Pending(at(0))
	second := l.Queue(at(1), 1, "")
	// Take copies of the earlier logs, then move on and compare.
	firstLog, secondLog := first.Log(), second.Log()
	l.Process(at(2))
	l.Call(at(3))
	l.Retry(at(4), 0, errPlain, messages.Result{})
	l.Process(at(5))
	if got := first.Log(); len(got) != 1 || !slices.Equal(got, firstLog) || first.Status != messages.StatusPending {
		t.Errorf("PENDING snapshot changed: %v %v", first.Status, got)
	}
	if got := second.Log(); len(got) != 2 || !slices.Equal(got, secondLog) || second.Status != messages.StatusQueued {
		t.Errorf("QUEUED snapshot changed: %v %v", second.Status, got)
	}
	if first.Attempt != 0 || second.Attempt != 0 || !second.Timings().Processing.IsZero() {
		t.Errorf("scalar fields changed: %+v %+v", first, second)
	}
}

func decodeEvent(t *testing.T, ev messages.Event) map[string]any {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatalf("MarshalJSON: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, b)
	}
	return m
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func TestEventMarshalJSONCompleted(t *testing.T) {
	const ms = time.Millisecond
	r := &messages.Request{
		Tokens: 10,
		Endpoint: messages.Endpoint{
			Method: "POST",
			URL:    "https://api.example.com/v1/chat",
			Header: http.Header{
				"Authorization": {"Bearer sk-abc"},
				"Content-Type":  {"application/json"},
			},
			Payload: []byte(`{"prompt":"do not show"}`),
		},
		Metadata: map[string]string{"tenant": "acme"},
	}
	l := messages.NewLifecycle(testID, r, t0)
	l.Pending(t0)
	l.Queue(at(10*ms), 1, "")
	l.Process(at(30 * ms))
	l.Call(at(31500 * time.Microsecond))
	ev := l.Complete(at(131500*time.Microsecond), messages.Result{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"session=xyz"}},
		Body:       []byte(`{"answer": 42, "text": "hi"}`),
		Usage:      &messages.Usage{InputTokens: 3, OutputTokens: 4},
	})
	m := decodeEvent(t, ev)

	wantKeys := []string{"attempt", "durations_ms", "headers", "id", "log", "metadata", "method", "response", "seq", "status", "timings", "tokens", "url"}
	if got := sortedKeys(m); !slices.Equal(got, wantKeys) {
		t.Errorf("keys = %v, want %v", got, wantKeys)
	}
	scalars := map[string]any{
		"id": testID.String(), "seq": 5.0, "status": "COMPLETED", "attempt": 1.0,
		"method": "POST", "url": "https://api.example.com/v1/chat",
	}
	for k, want := range scalars {
		if m[k] != want {
			t.Errorf("%s = %#v, want %#v", k, m[k], want)
		}
	}
	if got, want := m["tokens"], map[string]any{"estimated": 10.0, "actual": 7.0, "has_actual": true}; !maps.Equal(got.(map[string]any), want) {
		t.Errorf("tokens = %v, want %v", got, want)
	}
	if got, want := m["durations_ms"], map[string]any{"queue": 20.0, "permit": 1.5, "call": 100.0, "total": 131.5}; !maps.Equal(got.(map[string]any), want) {
		t.Errorf("durations_ms = %v, want %v", got, want)
	}
	headers := m["headers"].(map[string]any)
	if got := headers["Authorization"].([]any); len(got) != 1 || got[0] != messages.Redacted {
		t.Errorf("Authorization = %v", got)
	}
	if got := headers["Content-Type"].([]any); len(got) != 1 || got[0] != "application/json" {
		t.Errorf("Content-Type = %v", got)
	}
	if got := m["metadata"].(map[string]any); len(got) != 1 || got["tenant"] != "acme" {
		t.Errorf("metadata = %v", got)
	}
	timings := m["timings"].(map[string]any)
	wantTimings := map[string]any{
		"created":      t0.Format(time.RFC3339Nano),
		"queued":       at(10 * ms).Format(time.RFC3339Nano),
		"processing":   at(30 * ms).Format(time.RFC3339Nano),
		"call_started": at(31500 * time.Microsecond).Format(time.RFC3339Nano),
		"finished":     at(131500 * time.Microsecond).Format(time.RFC3339Nano),
	}
	if !maps.Equal(timings, wantTimings) {
		t.Errorf("timings = %v, want %v", timings, wantTimings)
	}
	resp := m["response"].(map[string]any)
	if resp["status_code"] != 200.0 {
		t.Errorf("response status_code = %v", resp["status_code"])
	}
	body, ok := resp["body"].(map[string]any)
	if !ok || body["answer"] != 42.0 || body["text"] != "hi" {
		t.Errorf("JSON body not embedded as JSON: %#v", resp["body"])
	}
	rh := resp["headers"].(map[string]any)
	if got := rh["Set-Cookie"].([]any); got[0] != messages.Redacted {
		t.Errorf("response Set-Cookie = %v", got)
	}
	log := m["log"].([]any)
	wantLog := []string{"PENDING", "QUEUED", "PROCESSING", "CALLING", "COMPLETED"}
	if len(log) != len(wantLog) {
		t.Fatalf("log = %v", log)
	}
	for i, e := range log {
		entry := e.(map[string]any)
		if entry["status"] != wantLog[i] {
			t.Errorf("log[%d].status = %v, want %s", i, entry["status"], wantLog[i])
		}
		if _, ok := entry["at"].(string); !ok {
			t.Errorf("log[%d] has no time: %v", i, entry)
		}
	}
	if b, _ := json.Marshal(ev); strings.Contains(string(b), "do not show") || strings.Contains(string(b), "sk-abc") {
		t.Errorf("payload or credential in JSON: %s", b)
	}
}

func TestEventMarshalJSONBodies(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want any // decoded "body", or nil for no key
	}{
		{"json object", []byte(`{"ok":true}`), map[string]any{"ok": true}},
		{"json array", []byte(`[1,2]`), []any{1.0, 2.0}},
		{"json string", []byte(`"done"`), "done"},
		{"plain text", []byte("upstream <b>overloaded</b>"), "upstream <b>overloaded</b>"},
		{"truncated json", []byte(`{"ok":tr`), `{"ok":tr`},
		{"empty", []byte{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := toCalling(t, &messages.Request{})
			ev := l.Complete(at(time.Second), messages.Result{StatusCode: 200, Body: tt.body})
			resp := decodeEvent(t, ev)["response"].(map[string]any)
			got, present := resp["body"]
			if tt.want == nil {
				if present {
					t.Errorf("body = %#v, want no body key", got)
				}
				return
			}
			if gj, _ := json.Marshal(got); string(gj) != string(mustJSON(t, tt.want)) {
				t.Errorf("body = %s, want %s", gj, mustJSON(t, tt.want))
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEventMarshalJSONFailed(t *testing.T) {
	l := toCalling(t, &messages.Request{})
	err := &kindError{kind: "timeout", err: messages.ErrTimeout}
	ev := l.Fail(at(time.Second), &detailError{msg: err.Error(), details: map[string]string{"limit": "30s"}}, messages.Result{})
	m := decodeEvent(t, ev)
	if m["status"] != "FAILED" {
		t.Errorf("status = %v", m["status"])
	}
	if _, ok := m["response"]; ok {
		t.Error("response key present without a response")
	}
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("error = %#v", m["error"])
	}
	if e["kind"] != "error" || e["message"] != err.Error() {
		t.Errorf("error = %v", e)
	}
	if d := e["details"].(map[string]any); len(d) != 1 || d["limit"] != "30s" {
		t.Errorf("details = %v", d)
	}

	l = toCalling(t, &messages.Request{})
	m = decodeEvent(t, l.Cancel(at(time.Second), messages.ErrCancelled))
	e = m["error"].(map[string]any)
	if m["status"] != "CANCELLED" || e["kind"] != "cancelled" || e["message"] != messages.ErrCancelled.Error() {
		t.Errorf("cancelled: status %v, error %v", m["status"], e)
	}
	if _, ok := e["details"]; ok {
		t.Errorf("details present without any: %v", e)
	}
}

func TestEventMarshalJSONPending(t *testing.T) {
	l := messages.NewLifecycle(testID, &messages.Request{Tokens: 3}, t0)
	m := decodeEvent(t, l.Pending(t0))
	wantKeys := []string{"attempt", "durations_ms", "id", "log", "seq", "status", "timings", "tokens"}
	if got := sortedKeys(m); !slices.Equal(got, wantKeys) {
		t.Errorf("keys = %v, want %v", got, wantKeys)
	}
	if got := m["timings"].(map[string]any); len(got) != 1 || got["created"] != t0.Format(time.RFC3339Nano) {
		t.Errorf("timings = %v, want only created", got)
	}
	for k, v := range m["durations_ms"].(map[string]any) {
		if v != 0.0 {
			t.Errorf("durations_ms.%s = %v, want 0", k, v)
		}
	}
	if m["status"] != "PENDING" || m["seq"] != 1.0 || m["attempt"] != 0.0 {
		t.Errorf("status %v seq %v attempt %v", m["status"], m["seq"], m["attempt"])
	}
}
