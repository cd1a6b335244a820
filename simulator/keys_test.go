package simulator

import (
	"errors"
	"net/http"
	"strconv"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

// Keys with limits of their own: each key's buckets are its own, with its
// limits in its rate-limit headers; a key without is held to Config's.
func TestKeyLimits(t *testing.T) {
	ts := start(t, Config{RequestsPerMinute: 5, Keys: []string{"sk-test"}, KeyLimits: map[string]Limits{
		"sk-a": {RequestsPerMinute: 2},
		"sk-b": {RequestsPerMinute: 3, RequestBurst: 1},
	}})
	body := chatBody("gpt-4o", "hello", nil)
	admitted := func(key string, n int) int {
		ok := 0
		for range n {
			r := ts.do(request{path: "/v1/chat/completions", key: key, body: body})
			switch r.status {
			case http.StatusOK:
				ok++
				if key == "sk-a" && r.header.Get("x-ratelimit-limit-requests") != "2" {
					t.Errorf("sk-a's limit header %q", r.header.Get("x-ratelimit-limit-requests"))
				}
			case http.StatusTooManyRequests:
			default:
				t.Fatalf("key %s: status %d", key, r.status)
			}
		}
		return ok
	}
	// Each bucket starts full: 2, a burst of 1, and Config's 5.
	if a, b, def := admitted("sk-a", 4), admitted("sk-b", 4), admitted("sk-test", 7); a != 2 || b != 1 || def != 5 {
		t.Errorf("admitted sk-a %d, sk-b %d, sk-test %d; want 2, 1, 5", a, b, def)
	}
	if r := ts.do(request{path: "/v1/chat/completions", key: "sk-other", body: body}); r.status != http.StatusUnauthorized {
		t.Errorf("a key in neither Keys nor KeyLimits: status %d", r.status)
	}
	if st := ts.Stats(); st.ByKey["sk-a"].Admitted != 2 || st.ByKey["sk-b"].RateLimited != 3 {
		t.Errorf("by key %+v", st.ByKey)
	}
}

// SetFaults turns one key's faults on and off at run time, and the
// faults of every key without its own.
func TestSetFaults(t *testing.T) {
	ts := start(t, Config{Seed: 1})
	body := chatBody("gpt-4o", "hi", nil)
	status := func(key string) int {
		return ts.do(request{path: "/v1/chat/completions", key: key, body: body}).status
	}
	if err := ts.SetFaults("sk-sick", Faults{Overloaded: 1}); err != nil {
		t.Fatal(err)
	}
	if a, b := status("sk-sick"), status("sk-well"); a != 529 || b != 200 {
		t.Errorf("one key sick: %d and %d, want 529 and 200", a, b)
	}
	if err := ts.SetFaults("", Faults{ServerError: 1}); err != nil {
		t.Fatal(err)
	}
	if a, b := status("sk-sick"), status("sk-well"); a != 529 || b != 500 {
		t.Errorf("every key sick, one its own way: %d and %d, want 529 and 500", a, b)
	}
	if err := ts.SetFaults("sk-sick", Faults{}); err != nil {
		t.Fatal(err)
	}
	if err := ts.SetFaults("", Faults{}); err != nil {
		t.Fatal(err)
	}
	if a, b := status("sk-sick"), status("sk-well"); a != 200 || b != 200 {
		t.Errorf("healed: %d and %d", a, b)
	}
	var ce *messages.ConfigError
	if err := ts.SetFaults("sk-a", Faults{Reset: 2}); !errors.As(err, &ce) || ce.Field != "Faults.Reset" {
		t.Errorf("a rate of 2: %v", err)
	}
	if err := ts.SetFaults("sk-a", Faults{Reset: 0.6, Slow: 0.6}); !errors.As(err, &ce) || ce.Field != "Faults" {
		t.Errorf("rates over 1: %v", err)
	}
}

func TestKeyLimitsValidation(t *testing.T) {
	for _, c := range []struct {
		limits map[string]Limits
		field  string
	}{
		{map[string]Limits{"": {}}, "KeyLimits"},
		{map[string]Limits{"k": {RequestsPerMinute: -1}}, `KeyLimits["k"].RequestsPerMinute`},
		{map[string]Limits{"k": {TokensPerMinute: -1}}, `KeyLimits["k"].TokensPerMinute`},
		{map[string]Limits{"k": {RequestsPerMinute: 5, RequestBurst: 6}}, `KeyLimits["k"].RequestBurst`},
		{map[string]Limits{"k": {TokenBurst: 1}}, `KeyLimits["k"].TokenBurst`},
	} {
		_, err := New(Config{KeyLimits: c.limits})
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%v: %v, want a ConfigError for %s", c.limits, err, strconv.Quote(c.field))
		}
	}
}
