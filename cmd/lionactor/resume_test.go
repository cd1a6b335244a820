package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/internal/batch"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

// chat is an input line: a small chat request saying text, with the id if
// it is not empty.
func chat(id, text string) string {
	m := map[string]any{
		"messages":   []map[string]string{{"role": "user", "content": text}},
		"max_tokens": 5,
		"metadata":   map[string]any{"text": text},
	}
	if id != "" {
		m["id"] = id
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// writeLines writes lines as a JSONL file in dir and returns its path.
func writeLines(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// batchRun runs batch on in, appending to out, against the simulator at
// base, and returns the command's stderr; it fails the test unless the
// exit code is want.
func batchRun(t *testing.T, base, in, out string, want int, extra ...string) string {
	t.Helper()
	c := newCLI()
	args := append([]string{"batch", "--in", in, "--out", out, "--url", base, "--model", testModel, "--rpm", "600000"}, extra...)
	if code := c.run(t, context.Background(), args...); code != want {
		t.Fatalf("exit %d, want %d", code, want)
	}
	return c.stderr.String()
}

// finalByText reads the results file and returns, for each request text
// (from the metadata), the status of its last result line, failing the test
// if two keys answered the same text.
func finalByText(t *testing.T, out string) (last map[string]batch.Result, lines int) {
	t.Helper()
	results := readResults(t, out)
	byKey := map[string]batch.Result{}
	for _, r := range results {
		key := r.Key
		if key == "" { // a line from before results had keys: by id, else by index
			var id string
			if json.Unmarshal(r.ID, &id) == nil {
				key = "id:" + id
			} else {
				key = fmt.Sprint("index ", r.Index)
			}
		}
		byKey[key] = r // the last line of a key wins
	}
	last = map[string]batch.Result{}
	for key, r := range byKey {
		var md struct{ Text string }
		if err := json.Unmarshal(r.Metadata, &md); err != nil {
			t.Fatalf("key %s: metadata %s", key, r.Metadata)
		}
		if other, dup := last[md.Text]; dup {
			t.Fatalf("%q has results under two keys, %s and %s", md.Text, other.Key, key)
		}
		last[md.Text] = r
	}
	return last, len(results)
}

// checkDone checks that every text has a COMPLETED result.
func checkDone(t *testing.T, last map[string]batch.Result, texts ...string) {
	t.Helper()
	for _, text := range texts {
		if r, ok := last[text]; !ok || r.Status != "COMPLETED" {
			t.Errorf("%q: result %+v, want COMPLETED", text, r)
		}
	}
	if len(last) != len(texts) {
		t.Errorf("%d requests have results, want %d", len(last), len(texts))
	}
}

// The reproduction: a new line put before the three that ran is
// run, and none of the three runs again, with ids or without.
func TestResumeAfterPrepend(t *testing.T) {
	for _, withIDs := range []bool{true, false} {
		t.Run(fmt.Sprintf("ids=%v", withIDs), func(t *testing.T) {
			sim, base := simtest.Start(t, simulator.Config{})
			dir := t.TempDir()
			line := func(name string) string {
				if withIDs {
					return chat(name, "say "+name)
				}
				return chat("", "say "+name)
			}
			out := filepath.Join(dir, "out.jsonl")
			batchRun(t, base, writeLines(t, dir, "in.jsonl", line("a"), line("b"), line("c")), out, exitOK)

			in2 := writeLines(t, dir, "in2.jsonl", line("NEW"), line("a"), line("b"), line("c"))
			stderr := batchRun(t, base, in2, out, exitOK)
			last, lines := finalByText(t, out)
			checkDone(t, last, "say a", "say b", "say c", "say NEW")
			if lines != 4 || sim.Stats().Requests != 4 {
				t.Errorf("%d result lines, %d requests sent; want 4 and 4: each request once", lines, sim.Stats().Requests)
			}
			if s := parseSummary(t, stderr); s != (summaryCounts{completed: 1, skipped: 3, new: 1}) {
				t.Errorf("rerun summary %+v, want 1 completed, 3 done before, 1 new", s)
			}
			if r := last["say NEW"]; r.Index != 0 {
				t.Errorf("NEW's result has index %d, want its line number in this run, 0", r.Index)
			}
		})
	}
}

// Reordered lines are the same requests: after a first run of four lines,
// the six lines of a sorted file run the two that are new, wherever they
// are, and nothing else.
func TestResumeAfterReorder(t *testing.T) {
	for _, withIDs := range []bool{true, false} {
		t.Run(fmt.Sprintf("ids=%v", withIDs), func(t *testing.T) {
			sim, base := simtest.Start(t, simulator.Config{})
			dir := t.TempDir()
			var lines []string
			for i := range 6 {
				id := ""
				if withIDs {
					id = fmt.Sprint("r", i)
				}
				lines = append(lines, chat(id, fmt.Sprint("line ", i)))
			}
			out := filepath.Join(dir, "out.jsonl")
			batchRun(t, base, writeLines(t, dir, "in.jsonl", lines[:4]...), out, exitOK)
			// 5 1 4 3 0 2: the new lines 4 and 5 among the others.
			sorted := []string{lines[5], lines[1], lines[4], lines[3], lines[0], lines[2]}
			stderr := batchRun(t, base, writeLines(t, dir, "in2.jsonl", sorted...), out, exitOK)
			last, n := finalByText(t, out)
			checkDone(t, last, "line 0", "line 1", "line 2", "line 3", "line 4", "line 5")
			if sim.Stats().Requests != 6 || n != 6 {
				t.Errorf("%d requests sent, %d results, for 6 lines", sim.Stats().Requests, n)
			}
			if s := parseSummary(t, stderr); s != (summaryCounts{completed: 2, skipped: 4, new: 2}) {
				t.Errorf("summary %+v, want 4 done before, 2 new", s)
			}
			// A second reordering runs nothing.
			slices.Reverse(sorted)
			stderr = batchRun(t, base, writeLines(t, dir, "in3.jsonl", sorted...), out, exitOK)
			if s := parseSummary(t, stderr); s != (summaryCounts{skipped: 6}) || sim.Stats().Requests != 6 {
				t.Errorf("summary %+v after %d requests, want 6 done before and nothing sent", s, sim.Stats().Requests)
			}
		})
	}
}

// Two identical lines are two requests, each run once; a third identical
// line added later runs once more.
func TestResumeDuplicateLines(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	same, other := chat("", "same"), chat("", "other")
	out := filepath.Join(dir, "out.jsonl")
	batchRun(t, base, writeLines(t, dir, "in.jsonl", same, other, same), out, exitOK)
	results := readResults(t, out)
	keys := map[string]bool{}
	for _, r := range results {
		keys[r.Key] = true
	}
	if len(results) != 3 || len(keys) != 3 || sim.Stats().Requests != 3 {
		t.Fatalf("%d results under %d keys, %d requests; want 3 of each", len(results), len(keys), sim.Stats().Requests)
	}

	stderr := batchRun(t, base, writeLines(t, dir, "in.jsonl", same, same, other, same), out, exitOK)
	if s := parseSummary(t, stderr); s != (summaryCounts{completed: 1, skipped: 3, new: 1}) {
		t.Errorf("summary %+v, want the third copy alone new", s)
	}
	if sim.Stats().Requests != 4 {
		t.Errorf("%d requests sent, want 4", sim.Stats().Requests)
	}
}

// Editing a line without an id makes it another request; editing a line
// with an id is a change the summary names, rerun with --rerun-changed.
func TestResumeAfterEdit(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	batchRun(t, base, writeLines(t, dir, "in.jsonl", chat("a", "first a"), chat("", "first x"), chat("b", "b")), out, exitOK)

	in := writeLines(t, dir, "in.jsonl", chat("a", "second a"), chat("", "second x"), chat("b", "b"))
	stderr := batchRun(t, base, in, out, exitOK)
	if sim.Stats().Requests != 4 {
		t.Errorf("%d requests sent, want 4", sim.Stats().Requests)
	}
	if s := parseSummary(t, stderr); s != (summaryCounts{completed: 1, skipped: 2, new: 1}) {
		t.Errorf("summary %+v, want the edited line without an id new, a and b done before", s)
	}
	if !strings.Contains(stderr, `changed since their result: 1, not rerun (--rerun-changed reruns them): "a"`) {
		t.Errorf("the summary does not name the changed request a")
	}

	stderr = batchRun(t, base, in, out, exitOK, "--rerun-changed")
	if s := parseSummary(t, stderr); s != (summaryCounts{completed: 1, skipped: 2}) || !strings.Contains(stderr, ", 1 changed and rerun\n") {
		t.Errorf("summary %+v, want a rerun:\n%s", s, stderr)
	}
	results := readResults(t, out)
	var forA []batch.Result
	for _, r := range results {
		if r.Key == "id:a" {
			forA = append(forA, r)
		}
	}
	if len(forA) != 2 || forA[0].ContentHash == forA[1].ContentHash || !strings.Contains(string(forA[1].Metadata), "second a") {
		t.Fatalf("results of a: %+v, want the first content's, then the second's", forA)
	}
	// Now a's last result answers its content: nothing is changed any more.
	stderr = batchRun(t, base, in, out, exitOK, "--rerun-changed")
	if s := parseSummary(t, stderr); s != (summaryCounts{skipped: 3}) || strings.Contains(stderr, "changed") {
		t.Errorf("summary %+v, want everything done before:\n%s", s, stderr)
	}
	if sim.Stats().Requests != 5 {
		t.Errorf("%d requests sent, want 5", sim.Stats().Requests)
	}
}

// Two lines with one id are refused before anything is sent, naming both;
// from standard input too.
func TestBatchRefusesDuplicateIDs(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	lines := []string{chat("a", "one"), chat("b", "two"), "", chat("c", "three"), chat("b", "four")}
	out := filepath.Join(dir, "out.jsonl")
	in := writeLines(t, dir, "in.jsonl", lines...)

	c := newCLI()
	if code := c.run(t, context.Background(), "batch", "--in", in, "--out", out, "--url", base, "--model", testModel); code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	want := `lionactor: input: lines 2 and 5 have the same id "b"`
	if !strings.HasPrefix(c.stderr.String(), want) {
		t.Errorf("stderr %q, want it to start with %q", c.stderr.String(), want)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the results file was created: %v", err)
	}

	c = newCLI()
	c.stdin = strings.NewReader(strings.Join(lines, "\n"))
	if code := c.run(t, context.Background(), "batch", "--url", base, "--model", testModel); code != exitUsage {
		t.Errorf("from standard input: exit %d, want %d", code, exitUsage)
	}
	if !strings.HasPrefix(c.stderr.String(), want) || c.stdout.String() != "" {
		t.Errorf("from standard input: stderr %q, stdout %q", c.stderr.String(), c.stdout.String())
	}
	if sim.Stats().Requests != 0 {
		t.Errorf("%d requests were sent", sim.Stats().Requests)
	}
}

// Standard input gets the same resume as a file: it is read whole first.
func TestResumeFromStandardInput(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	run := func(lines ...string) string {
		c := newCLI()
		c.stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
		if code := c.run(t, context.Background(), "batch", "--out", out, "--url", base, "--model", testModel, "--rpm", "600000"); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		return c.stderr.String()
	}
	run(chat("", "a"), chat("", "b"))
	stderr := run(chat("", "new"), chat("", "b"), chat("", "a"))
	last, _ := finalByText(t, out)
	checkDone(t, last, "a", "b", "new")
	if sim.Stats().Requests != 3 {
		t.Errorf("%d requests sent, want 3", sim.Stats().Requests)
	}
	if s := parseSummary(t, stderr); s != (summaryCounts{completed: 1, skipped: 2, new: 1}) {
		t.Errorf("summary %+v", s)
	}
	if !strings.Contains(stderr, "progress: 1/1 done") {
		t.Errorf("no total in the progress line:\n%s", stderr)
	}
}

// --retry-failed reruns what failed; the new line is appended and is the
// request's result from then on.
func TestRetryFailed(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{Keys: []string{testKey}})
	dir := t.TempDir()
	in := writeLines(t, dir, "in.jsonl", chat("a", "a"), chat("", "b"), chat("c", "c"))
	out := filepath.Join(dir, "out.jsonl")

	// A run made with a wrong key: every request fails for good.
	c := newCLI()
	c.env["OPENAI_API_KEY"] = "sk-test-wrong-key"
	if code := c.run(t, context.Background(), "batch", in, "--out", out, "--url", base, "--model", testModel); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	last, _ := finalByText(t, out)
	for text, r := range last {
		if r.Status != "FAILED" || r.Error == nil || r.Error.Kind != "auth" {
			t.Fatalf("%q: %+v, want FAILED auth", text, r)
		}
	}
	// FAILED is a final result: a plain rerun sends nothing.
	stderr := batchRun(t, base, in, out, exitOK)
	if s := parseSummary(t, stderr); s != (summaryCounts{skipped: 3}) || sim.Stats().Requests != 3 {
		t.Errorf("summary %+v after %d requests, want 3 done before and no request", s, sim.Stats().Requests)
	}

	stderr = batchRun(t, base, in, out, exitOK, "--retry-failed", "--ordered")
	if !strings.Contains(stderr, "0 done before, 0 new, 3 failed before and retried") {
		t.Errorf("summary does not count the retried:\n%s", stderr)
	}
	last, lines := finalByText(t, out)
	checkDone(t, last, "a", "b", "c")
	if lines != 6 || sim.Stats().Requests != 6 {
		t.Errorf("%d result lines, %d requests; want 6 and 6", lines, sim.Stats().Requests)
	}
	// The retried results were written in input order (--ordered).
	results := readResults(t, out)
	for k, r := range results[3:] {
		if r.Index != k {
			t.Errorf("retried result %d has index %d", k, r.Index)
		}
	}
	// Their last results COMPLETED: nothing is left to retry.
	stderr = batchRun(t, base, in, out, exitOK, "--retry-failed")
	if s := parseSummary(t, stderr); s != (summaryCounts{skipped: 3}) || sim.Stats().Requests != 6 {
		t.Errorf("summary %+v, want 3 done before, nothing sent", s)
	}
}

// --retry-failed=KINDS reruns only the failures of those kinds; a kind no
// failure has is pointed out, as a typo would be.
func TestRetryFailedByKind(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	in := writeLines(t, dir, "in.jsonl", chat("a", "a"), chat("b", "b"), chat("c", "c"), chat("d", "d"))
	out := writeLines(t, dir, "out.jsonl",
		`{"index":0,"key":"id:a","status":"FAILED","error":{"kind":"auth","message":"401"},"metadata":{"text":"a"}}`,
		`{"index":1,"key":"id:b","status":"FAILED","error":{"kind":"server","message":"500"},"metadata":{"text":"b"}}`,
		`{"index":2,"key":"id:c","status":"FAILED","error":{"kind":"rate_limited","message":"429"},"metadata":{"text":"c"}}`,
		`{"index":3,"key":"id:d","status":"COMPLETED","metadata":{"text":"d"}}`)

	stderr := batchRun(t, base, in, out, exitOK, "--retry-failed=auth,rate_limited")
	if s := parseSummary(t, stderr); s.completed != 2 || s.skipped != 2 {
		t.Errorf("summary %+v, want a and c rerun, b and d done before", s)
	}
	last, _ := finalByText(t, out)
	for text, want := range map[string]string{"a": "COMPLETED", "b": "FAILED", "c": "COMPLETED", "d": "COMPLETED"} {
		if last[text].Status != want {
			t.Errorf("%q: %s, want %s", text, last[text].Status, want)
		}
	}
	if strings.Contains(stderr, "--retry-failed:") {
		t.Errorf("a notice for kinds that matched:\n%s", stderr)
	}

	stderr = batchRun(t, base, in, out, exitOK, "--retry-failed=servr")
	if want := `lionactor: --retry-failed: no request's last result failed with kind "servr"; the failed ones have: server (1)`; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if sim.Stats().Requests != 2 {
		t.Errorf("%d requests sent, want 2", sim.Stats().Requests)
	}
	stderr = batchRun(t, base, in, out, exitOK, "--retry-failed=server")
	last, _ = finalByText(t, out)
	checkDone(t, last, "a", "b", "c", "d")
	if sim.Stats().Requests != 3 {
		t.Errorf("%d requests sent, want 3", sim.Stats().Requests)
	}

	// The kinds are checked before anything is sent.
	batchRun(t, base, in, out, exitUsage, "--retry-failed=auth,,server")
}

// A results file written before results had keys is still read: lines with
// an id match by id wherever the line is now, lines without one by line
// number, as then; one notice says so.
func TestResumeFromOldResults(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	// What the previous release wrote for "in.jsonl" = a, b, (no id) x.
	out := writeLines(t, dir, "out.jsonl",
		`{"index":0,"id":"a","request_id":"r0","status":"COMPLETED","attempts":1,"tokens":{"estimated":9},"timings":{"created":"2025-01-01T00:00:00Z","queue_ms":0,"permit_ms":0,"call_ms":1,"total_ms":1},"metadata":{"text":"a"}}`,
		`{"index":1,"id":"b","request_id":"r1","status":"FAILED","error":{"kind":"server","message":"500"},"attempts":1,"tokens":{"estimated":9},"timings":{"created":"2025-01-01T00:00:00Z","queue_ms":0,"permit_ms":0,"call_ms":1,"total_ms":1},"metadata":{"text":"b"}}`,
		`{"index":2,"request_id":"r2","status":"COMPLETED","attempts":1,"tokens":{"estimated":9},"timings":{"created":"2025-01-01T00:00:00Z","queue_ms":0,"permit_ms":0,"call_ms":1,"total_ms":1},"metadata":{"text":"x"}}`)
	// Now: a new line first, a and b moved down, x at line 2 still.
	in := writeLines(t, dir, "in.jsonl", chat("new", "new"), chat("a", "a"), chat("", "x"), chat("b", "b"))
	stderr := batchRun(t, base, in, out, exitOK)
	if sim.Stats().Requests != 1 {
		t.Errorf("%d requests sent, want 1", sim.Stats().Requests)
	}
	if r := readResults(t, out); len(r) != 4 || !strings.Contains(string(r[3].Metadata), `"new"`) {
		t.Errorf("the run wrote %+v, want one result, for new", r[3:])
	}
	if s := parseSummary(t, stderr); s != (summaryCounts{completed: 1, skipped: 3, new: 1}) {
		t.Errorf("summary %+v, want new alone run", s)
	}
	notice := "lionactor: " + out + ": 3 results from before results had keys: those with an id are matched by id, the others by line number as then\n"
	if strings.Count(stderr, notice) != 1 {
		t.Errorf("stderr lacks the notice %q once:\n%s", notice, stderr)
	}
	// An old FAILED result is retried like a new one.
	batchRun(t, base, in, out, exitOK, "--retry-failed")
	last, _ := finalByText(t, out)
	checkDone(t, last, "new", "a", "b", "x")
	if sim.Stats().Requests != 2 {
		t.Errorf("%d requests sent, want 2", sim.Stats().Requests)
	}
}

// A config file gives the rerun settings by flag name, kinds as a list.
func TestRerunSettingsFromConfigFile(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	in := writeLines(t, dir, "in.jsonl", chat("a", "a"), chat("b", "b"), chat("c", "c changed"))
	out := writeLines(t, dir, "out.jsonl",
		`{"index":0,"key":"id:a","status":"FAILED","error":{"kind":"auth","message":"401"},"metadata":{"text":"a"}}`,
		`{"index":1,"key":"id:b","status":"FAILED","error":{"kind":"server","message":"500"},"metadata":{"text":"b"}}`,
		`{"index":2,"key":"id:c","content_hash":"sha256:0","status":"COMPLETED","metadata":{"text":"c"}}`)
	config := filepath.Join(dir, "batch.yaml")
	if err := os.WriteFile(config, []byte("retry-failed: [auth, timeout]\nrerun-changed: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr := batchRun(t, base, in, out, exitOK, "--config", config)
	if !strings.Contains(stderr, "; 1 done before, 0 new, 1 failed before and retried, 1 changed and rerun\n") {
		t.Errorf("summary:\n%s", stderr)
	}
	last, _ := finalByText(t, out)
	if last["a"].Status != "COMPLETED" || last["b"].Status != "FAILED" || last["c changed"].Status != "COMPLETED" {
		t.Errorf("results %+v", last)
	}
	if sim.Stats().Requests != 2 {
		t.Errorf("%d requests sent, want 2", sim.Stats().Requests)
	}
}
