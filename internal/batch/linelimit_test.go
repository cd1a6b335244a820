package batch

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

// withLongLine is the input lines before, then a line of size bytes of
// b, then the lines after, from a reader that never holds the long line.
func withLongLine(before []string, b byte, size int64, after []string) io.Reader {
	return io.MultiReader(
		strings.NewReader(strings.Join(before, "\n")+"\n"),
		&repeatReader{b: b, left: size, after: strings.NewReader("\n" + strings.Join(after, "\n") + "\n")},
	)
}

// A line of 64 MiB among good ones, over the default limit of 16 MiB:
// it is never held whole, it gets a FAILED line_too_long result naming
// its line, its size and the limit, and counted as invalid input; the
// others complete. A rerun knows it by the hash of its bytes, wherever it
// is: it is done, not run again.
func TestRunLineTooLong(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	const size = 64 << 20
	lines := []string{requestLine(t, 0), requestLine(t, 1), requestLine(t, 3), requestLine(t, 4)}
	results, out, sum, err := runInput(t, context.Background(), cfg, Input{R: withLongLine(lines[:2], 'x', size, lines[2:])}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := wantIndices(t, results, seq(0, 5))
	r := got[2]
	hash := hashOfRepeat('x', size)
	if r.Status != "FAILED" || r.Error == nil || r.Error.Kind != "line_too_long" {
		t.Fatalf("index 2: %s %+v, want FAILED line_too_long", r.Status, r.Error)
	}
	if want := "line 3: 67108864 bytes, more than --max-line-bytes (16777216)"; r.Error.Message != want {
		t.Errorf("message %q, want %q", r.Error.Message, want)
	}
	if r.Key != hash+"#1" || r.ContentHash != hash || r.ID != nil || r.Attempts != 0 {
		t.Errorf("index 2: key %q, hash %q, id %s, %d attempts; want the hash of its bytes, no id, no attempt", r.Key, r.ContentHash, r.ID, r.Attempts)
	}
	for _, i := range []int{0, 1, 3, 4} {
		if got[i].Status != "COMPLETED" {
			t.Errorf("index %d: %s %+v", i, got[i].Status, got[i].Error)
		}
	}
	if s := sum.Snapshot(); s.Read != 5 || s.Completed != 4 || s.InvalidInput != 1 || s.Failed != 0 || s.Remaining() != 0 {
		t.Errorf("summary %+v", s)
	}

	// The long line moved to the front: the same request, done.
	prior := readPrior(t, string(out))
	again, _, sum2, err := runInput(t, context.Background(), cfg, Input{R: withLongLine(nil, 'x', size, lines), Prior: prior}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Errorf("the rerun wrote %d lines, want none: %+v", len(again), again)
	}
	if s := sum2.Snapshot(); s.Skipped != 5 || s.New != 0 {
		t.Errorf("rerun summary %+v, want all 5 done before", s)
	}
}

// The dry run finds the line too long, with the kind and the reason of
// its result line, without holding it.
func TestDryRunLineTooLong(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	cfg.MaxLineBytes = 1 << 20
	lines := []string{requestLine(t, 0), "not json", requestLine(t, 3)}
	const size = 5 << 20
	f, err := DryRun(cfg, Input{R: withLongLine(lines[:2], '{', size, lines[2:])}, DryRunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	results, _, _, err := runInput(t, context.Background(), cfg, Input{R: withLongLine(lines[:2], '{', size, lines[2:])}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Requests != 4 || f.Sent != 2 || len(f.Invalid) != 2 {
		t.Fatalf("forecast: %d requests, %d sent, invalid %+v", f.Requests, f.Sent, f.Invalid)
	}
	byLine := byIndex(t, results)
	for _, inv := range f.Invalid {
		r := byLine[inv.Line-1]
		if r.Error == nil || r.Error.Kind != inv.Kind || r.Error.Message != fmt.Sprintf("line %d: %s", inv.Line, inv.Reason) {
			t.Errorf("dry run: line %d %s %q; the run: %+v", inv.Line, inv.Kind, inv.Reason, r.Error)
		}
	}
	if inv := f.Invalid[1]; inv.Line != 3 || inv.Kind != "line_too_long" || inv.Reason != "5242880 bytes, more than --max-line-bytes (1048576)" {
		t.Errorf("the long line in the dry run: %+v", inv)
	}
}

// Through the batch API, a line too long fails as online, with the same
// key, kind and message; the others go in a batch.
func TestViaBatchAPILineTooLong(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Seed: 3})
	cfg := apiConfig(t, imodel.OpenAI, base, t.TempDir())
	cfg.MaxLineBytes = 1 << 20
	lines := []string{requestLine(t, 0), requestLine(t, 2)}
	const size = 3 << 20
	batched, _, sum, err := runInput(t, context.Background(), cfg, Input{R: withLongLine(lines[:1], 'y', size, lines[1:])}, nil)
	if err != nil {
		t.Fatal(err)
	}
	online := cfg
	online.BatchAPI = nil
	direct, _, _, err := runInput(t, context.Background(), online, Input{R: withLongLine(lines[:1], 'y', size, lines[1:])}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, o := wantIndices(t, batched, seq(0, 3)), byIndex(t, direct)
	if got, want := b[1], o[1]; got.Error == nil || want.Error == nil || got.Error.Kind != "line_too_long" || got.Error.Message != want.Error.Message || got.Key != want.Key {
		t.Errorf("the long line through the batch API: %+v; online: %+v", got, want)
	}
	for _, i := range []int{0, 2} {
		if b[i].Status != "COMPLETED" || b[i].ProviderBatch == nil {
			t.Errorf("index %d: %s, batch %+v", i, b[i].Status, b[i].ProviderBatch)
		}
	}
	if s := sum.Snapshot(); s.Completed != 2 || s.InvalidInput != 1 {
		t.Errorf("summary %+v", s)
	}
}

// A request whose text alone is longer than 128 bytes for each token of
// the limit is refused uncounted: its too_many_tokens line says the
// estimate is a bound.
func TestRunTooManyTokensByTheSize(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	cfg := testConfig(base)
	cfg.TPM = 5000
	text := strings.Repeat("word ", 128*1000) // 640,000 bytes: at least 5,000 tokens
	huge := fmt.Sprintf(`{"messages":[{"role":"user","content":%q}],"max_tokens":8}`, text)
	results, _, _, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(requestLine(t, 0) + "\n" + huge + "\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := wantIndices(t, results, seq(0, 2))[1]
	want := "line 2: estimated at least 5008 tokens exceed the token limit of 5000 a minute (TPM): the request could never run"
	if r.Error == nil || r.Error.Kind != "too_many_tokens" || r.Error.Message != want {
		t.Errorf("index 1: %+v, want too_many_tokens %q", r.Error, want)
	}
}
