package batchapi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/imodel"
)

func TestCustomID(t *testing.T) {
	for _, tc := range []struct {
		p         imodel.Provider
		key, want string
	}{
		{imodel.OpenAI, "id:q-17", "id:q-17"},
		{imodel.OpenAI, "sha256:ab#2", "sha256:ab#2"},
		{imodel.Anthropic, "q-17_b", "q-17_b"},
	} {
		if got := customID(tc.p, tc.key); got != tc.want {
			t.Errorf("customID(%s, %q) = %q, want %q", tc.p, tc.key, got, tc.want)
		}
	}
	seen := map[string]string{}
	for _, key := range []string{"id:q-17", "id:q-18", "sha256:" + strings.Repeat("a", 64) + "#1", strings.Repeat("x", 65), "é"} {
		id := customID(imodel.Anthropic, key)
		if !anthropicCustomID.MatchString(id) {
			t.Errorf("%q: custom_id %q is not one Anthropic takes", key, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%q and %q have one custom_id", key, other)
		}
		seen[id] = key
		if customID(imodel.Anthropic, key) != id {
			t.Errorf("%q: custom_id not stable", key)
		}
	}
}

func TestLineRanges(t *testing.T) {
	got := lineRanges([]int{7, 1, 2, 3, 0, 5, 6, 10, 3})
	want := [][2]int{{1, 3}, {5, 7}, {10, 10}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lineRanges = %v, want %v", got, want)
	}
	if lineRanges([]int{0, 0}) != nil {
		t.Error("unknown lines make ranges")
	}
}

// A record cut short by a crash is ignored, and the next one starts a line
// of its own.
func TestJournalIgnoresATornRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	os.WriteFile(path, []byte(`{"v":1,"event":"submit","part":"a","keys":["k1"]}`+"\n"+`{"v":1,"event":"created","part":"a","batch":"b1"}`+"\n"+`{"v":1,"event":"sett`), 0o600)
	j, recs, err := openJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	if err := j.append(record{Event: eventSettled, Part: "a", Batch: "b1"}); err != nil {
		t.Fatal(err)
	}
	j.close()
	if err := j.append(record{Event: eventSettled, Part: "a"}); err == nil {
		t.Error("append after close")
	}
	j.close()
	_, recs, err = openJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	parts := fold(recs)
	if len(parts) != 1 || parts[0].batch != "b1" || !parts[0].settled || parts[0].open() {
		t.Errorf("fold: %+v", parts[0])
	}
	data, _ := os.ReadFile(path)
	if lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[3], `{"v":1,"event":"settled"`) {
		t.Errorf("journal:\n%s", data)
	}
	var nilJournal *journal
	if nilJournal.append(record{}) != nil || nilJournal.close() != nil {
		t.Error("a nil journal records nothing, without error")
	}
}

func TestFold(t *testing.T) {
	parts := fold([]record{
		{Event: eventCreated, Part: "lost"}, // its submit was cut short
		{Event: eventSubmit, Part: "a"},
		{Event: eventSubmit, Part: "b"},
		{Event: eventRefused, Part: "b"},
		{Event: eventSubmit, Part: "c"},
		{Event: eventCreated, Part: "c", Batch: "bc", At: time.Unix(5, 0)},
	})
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	if a, b, c := parts[0], parts[1], parts[2]; !a.open() || a.batch != "" || b.open() || !c.open() || c.batch != "bc" || c.created.Unix() != 5 {
		t.Errorf("parts: %+v %+v %+v", a, b, c)
	}
}

func TestAnthropicStatus(t *testing.T) {
	for typ, want := range map[string]int{
		"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
		"not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
		"overloaded_error": 529, "timeout_error": 504, "something_new": 500,
	} {
		if got := anthropicStatus(typ); got != want {
			t.Errorf("%s: %d, want %d", typ, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 30 * time.Second, 100: 30 * time.Second} {
		if got := backoff(n, 30*time.Second); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	ie := itemError("expired", "its batch %s ended", "b1")
	if ie.Kind() != "expired" || !ie.Retryable() || ie.Error() != "batchapi: its batch b1 ended" {
		t.Errorf("%v %q %v", ie, ie.Kind(), ie.Retryable())
	}
	if itemError("too_large", "x").Retryable() {
		t.Error("too_large is retryable")
	}
	ce := &callError{op: "GET /x", err: errors.New("reset")}
	if ce.Kind() != "connection" || !transient(ce) || !ambiguous(ce) || ce.Error() != "batchapi: GET /x: reset" {
		t.Errorf("%v", ce)
	}
	if (&callError{err: fmt.Errorf("x: %w", contextDeadline())}).Kind() != "timeout" {
		t.Error("a deadline is not a timeout")
	}
	if transient(fmt.Errorf("%w", contextCanceled())) || ambiguous(errors.New("x")) {
		t.Error("a cancelled context is transient, or any error ambiguous")
	}
	je := &journalError{err: os.ErrPermission}
	if !errors.Is(je, os.ErrPermission) || !strings.Contains(je.Error(), "journal") {
		t.Errorf("%v", je)
	}
}

func contextDeadline() error { return context.DeadlineExceeded }
func contextCanceled() error { return context.Canceled }
