package batch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

func TestCanonicalForm(t *testing.T) {
	tests := []struct{ line, want string }{
		{`{"b": 1, "a": [true, null, "x"]}`, `{"a":[true,null,"x"],"b":1}`},
		// Numbers as written: no float rounding, so large integers stay
		// apart, and 1.0 is not 1 (it is not what would be sent).
		{`{"n": 12345678901234567890, "m": 1.0, "e": -2E+3}`, `{"e":-2E+3,"m":1.0,"n":12345678901234567890}`},
		// Only what JSON requires is escaped; HTML characters and
		// non-ASCII stay as they are; escapes written differently agree.
		{`{"s": "<a & b>\u00e9\"\\\n\t\u0001", "t": "é"}`, "{\"s\":\"<a & b>é\\\"\\\\\\u000a\\u0009\\u0001\",\"t\":\"é\"}"},
		// Keys sorted by their bytes, at every depth.
		{`{"z": {"y": 1, "x": {"b": 2, "a": 1}}, "B": 0, "a": 0}`, `{"B":0,"a":0,"z":{"x":{"a":1,"b":2},"y":1}}`},
		{`{}`, `{}`},
		{`{"a": []}`, `{"a":[]}`},
	}
	for _, tt := range tests {
		p, err := parseLine([]byte(tt.line))
		if err != nil {
			t.Fatalf("%s: %v", tt.line, err)
		}
		sum := sha256.Sum256([]byte(tt.want))
		if want := "sha256:" + hex.EncodeToString(sum[:]); p.hash != want {
			t.Errorf("%s: hash %s, want that of %s", tt.line, p.hash, tt.want)
		}
		var v any
		if err := json.Unmarshal([]byte(tt.want), &v); err != nil {
			t.Errorf("the canonical form %s is not JSON: %v", tt.want, err)
		}
	}
	// A stray byte decodes as U+FFFD, as encoding/json makes it.
	if got := string(appendString(nil, "a\xffb")); got != "\"a\uFFFDb\"" {
		t.Errorf("appendString = %q", got)
	}
}

func TestIdentify(t *testing.T) {
	lines := []string{
		`{"id": "a", "messages": [], "metadata": {"k": 1}}`, // 1
		`{"messages": [], "metadata": {"k": 1}}`,            // 2: a's content without its id
		`{"metadata": {"k": 1}, "messages": []}`,            // 3: the same, keys in another order
		`{"id": 7, "messages": []}`,                         // 4
		`{"id": null, "messages": []}`,                      // 5: a null id is no id
		`{"id": {"y": 1, "x": 2}, "messages": []}`,          // 6
		`not json`,                               // 7
		`not json`,                               // 8
		`{"messages": [], "metadata": {"k": 2}}`, // 9: other metadata, other content
	}
	d := newIdentifier()
	var ids []identity
	for i, l := range lines {
		p, _ := parseLine([]byte(l))
		id, err := d.identify(i, []byte(l), p)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		ids = append(ids, id)
	}
	content := ids[1].hash
	want := []struct{ key, hash string }{
		{"id:a", content},
		{content + "#1", content},
		{content + "#2", content},
		{"id:7", ids[3].hash},
		{ids[4].hash + "#1", ids[4].hash},
		{`id:{"x":2,"y":1}`, ids[5].hash},
		{ids[6].hash + "#1", ids[6].hash},
		{ids[6].hash + "#2", ids[6].hash},
		{ids[8].hash + "#1", ids[8].hash},
	}
	for i, w := range want {
		if ids[i].key != w.key || ids[i].hash != w.hash {
			t.Errorf("line %d: key %q hash %q, want %q %q", i+1, ids[i].key, ids[i].hash, w.key, w.hash)
		}
	}
	if ids[3].hash != ids[4].hash || ids[8].hash == content || ids[6].hash == content {
		t.Errorf("ids are part of the content, or metadata is not")
	}
	if ids[4].id != nil || string(ids[0].id) != `"a"` {
		t.Errorf("ids %s and %s", ids[4].id, ids[0].id)
	}

	// The string "7" and the number 7 are one id.
	p, _ := parseLine([]byte(`{"id": "7"}`))
	_, err := d.identify(9, nil, p)
	var dup *DuplicateIDError
	if !errors.As(err, &dup) || !errors.Is(err, ErrDuplicateID) || dup.First != 4 || dup.Second != 10 || dup.ID != `"7"` {
		t.Errorf("identify = %v, want lines 4 and 10 named", err)
	}
}

func TestScan(t *testing.T) {
	n, err := Scan(strings.NewReader("\n"+requestLine(t, 0)+"\n\n  \n"+requestLine(t, 1)+"\nnot json\n"+requestLine(t, 2)), 0)
	if n != 4 || err != nil {
		t.Errorf("Scan = %d, %v; want 4 requests", n, err)
	}
	// A line too long is a request, which fails; it has no id, and two
	// of them (identical) are no duplicate ids.
	long := `{"id":"same","messages":[{"role":"user","content":"` + strings.Repeat("a", 200) + `"}]}`
	n, err = Scan(strings.NewReader(requestLine(t, 0)+"\n"+long+"\n"+long+"\n"+requestLine(t, 1)+"\n"), 100)
	if n != 4 || err != nil {
		t.Errorf("Scan with lines too long = %d, %v; want 4 requests", n, err)
	}
	in := requestLine(t, 0) + "\n\n" + requestLine(t, 1) + "\n" + requestLine(t, 0) + "\n"
	_, err = Scan(strings.NewReader(in), 0)
	var dup *DuplicateIDError
	if !errors.As(err, &dup) || dup.First != 1 || dup.Second != 4 {
		t.Fatalf("Scan = %v, want lines 1 and 4", err)
	}
	if want := `lines 1 and 4 have the same id "req-0000"`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
	boom := errors.New("boom")
	if _, err := Scan(io.MultiReader(strings.NewReader(requestLine(t, 0)+"\n"), iotest.ErrReader(boom)), 0); !errors.Is(err, boom) {
		t.Errorf("Scan = %v, want the read error", err)
	}
}

func TestVerdict(t *testing.T) {
	prior := readPrior(t, `{"index":0,"key":"id:done","content_hash":"sha256:1","status":"COMPLETED"}
{"index":1,"key":"id:auth","content_hash":"sha256:2","status":"FAILED","error":{"kind":"auth"}}
{"index":2,"key":"id:server","content_hash":"sha256:3","status":"FAILED","error":{"kind":"server"}}
{"index":3,"key":"sha256:4#1","content_hash":"sha256:4","status":"COMPLETED"}
{"index":4,"id":"old","status":"COMPLETED"}
{"index":5,"status":"COMPLETED"}
`)
	id := func(key, hash string) identity {
		i := identity{key: key, hash: hash}
		if strings.HasPrefix(key, "id:") {
			i.id = json.RawMessage(`"` + strings.TrimPrefix(key, "id:") + `"`)
		}
		return i
	}
	tests := []struct {
		name  string
		cfg   Config
		id    identity
		index int
		want  verdict
	}{
		{"no result", Config{}, id("id:other", "sha256:9"), 0, runNew},
		{"done", Config{}, id("id:done", "sha256:1"), 7, skipDone},
		{"done, by content", Config{}, id("sha256:4#1", "sha256:4"), 0, skipDone},
		{"another occurrence", Config{}, id("sha256:4#2", "sha256:4"), 0, runNew},
		{"failed is final", Config{}, id("id:auth", "sha256:2"), 1, skipDone},
		{"failed, retried", Config{RetryFailed: true}, id("id:auth", "sha256:2"), 1, runRetry},
		{"failed, its kind retried", Config{RetryFailed: true, RetryKinds: []string{"server", "auth"}}, id("id:auth", "sha256:2"), 1, runRetry},
		{"failed, another kind retried", Config{RetryFailed: true, RetryKinds: []string{"server"}}, id("id:auth", "sha256:2"), 1, skipDone},
		{"completed is not retried", Config{RetryFailed: true}, id("id:done", "sha256:1"), 0, skipDone},
		{"changed", Config{}, id("id:done", "sha256:5"), 0, skipChanged},
		{"changed, rerun", Config{RerunChanged: true}, id("id:done", "sha256:5"), 0, runChanged},
		{"changed and failed, retried", Config{RetryFailed: true}, id("id:server", "sha256:5"), 0, runRetry},
		{"an old result by id: content unknown", Config{RerunChanged: true}, id("id:old", "sha256:6"), 9, skipDone},
		{"an old result by index", Config{}, id("sha256:7#1", "sha256:7"), 5, skipDone},
		{"an old result by index is not for a line with an id", Config{}, id("id:new", "sha256:7"), 5, runNew},
	}
	for _, tt := range tests {
		if got := tt.cfg.verdict(prior, tt.id, tt.index); got != tt.want {
			t.Errorf("%s: verdict %d, want %d", tt.name, got, tt.want)
		}
	}
	if got := (Config{}).verdict(nil, id("id:done", "sha256:1"), 0); got != runNew {
		t.Errorf("without a prior: %d", got)
	}
}

// Run refuses nothing it was not told to: given an input with a duplicate
// id that was not scanned, it runs the first line and fails the second,
// under a key of its own, so the first line's result stands.
func TestRunDuplicateIDNotScanned(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	input := requestLine(t, 0) + "\n" + requestLine(t, 1) + "\n" + requestLine(t, 0) + "\n"
	results, _, sum, err := runInput(t, context.Background(), testConfig(base), Input{R: strings.NewReader(input)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := wantIndices(t, results, seq(0, 3))
	if got[0].Status != "COMPLETED" || got[0].Key != "id:req-0000" {
		t.Errorf("line 1: %+v", got[0])
	}
	r := got[2]
	if r.Status != "FAILED" || r.Error == nil || r.Error.Kind != "invalid_input" ||
		!strings.Contains(r.Error.Message, `line 3: lines 1 and 3 have the same id "req-0000"`) || r.Key == "id:req-0000" || r.Key == "" {
		t.Errorf("line 3: %+v %+v", r, r.Error)
	}
	if s := sum.Snapshot(); s.InvalidInput != 1 || s.Completed != 2 || sim.Stats().Requests != 2 {
		t.Errorf("summary %+v, %d requests", s, sim.Stats().Requests)
	}
}

// A rerun with RetryFailed and RerunChanged, through Run: the retried and
// changed requests run again, and their new lines carry the new content's
// hash.
func TestRunRetriesAndReruns(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	input := jsonl(t, 6)
	prior := readPrior(t, resultLines(t, input, "COMPLETED", 0, 1, 2)+resultLines(t, input, "FAILED", 3, 4))
	// Line 2 changes (its id keeps its result); line 5 is new.
	edited := strings.Replace(input, "Say hello to number 2.", "Say goodbye to number 2.", 1)
	cfg := testConfig(base)
	cfg.RetryFailed, cfg.RetryKinds, cfg.RerunChanged = true, []string{"server"}, true
	results, _, sum, err := runInput(t, context.Background(), cfg, Input{R: strings.NewReader(edited), Prior: prior}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := wantIndices(t, results, []int{2, 3, 4, 5})
	newIDs := identities(t, edited)
	for i, r := range got {
		if r.Status != "COMPLETED" || r.Key != newIDs[i].key || r.ContentHash != newIDs[i].hash {
			t.Errorf("index %d: %s key %s hash %s, want COMPLETED %s %s", i, r.Status, r.Key, r.ContentHash, newIDs[i].key, newIDs[i].hash)
		}
	}
	if got[2].ContentHash == identities(t, input)[2].hash {
		t.Errorf("the changed line's result has the old content's hash")
	}
	s := sum.Snapshot()
	if s.Skipped != 2 || s.New != 1 || s.RetriedFailed != 2 || s.Changed != 1 || s.ToDo() != 4 || s.Remaining() != 0 || len(s.ChangedIDs) != 1 || s.ChangedIDs[0] != `"req-0002"` {
		t.Errorf("summary %+v", s)
	}
	if sim.Stats().Requests != 4 {
		t.Errorf("%d requests sent, want 4", sim.Stats().Requests)
	}
}
