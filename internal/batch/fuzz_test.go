package batch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

// FuzzJSONLLine fuzzes the parser of result lines, ReadPrior, which decides
// on a rerun which requests are done. (The parser of input lines is fuzzed
// by FuzzInputLine.)
//
// For arbitrary bytes a and b, and a result line made from the fuzzed
// index, status and message:
//   - ReadPrior never fails on an in-memory file and reports a missing final
//     newline exactly when there is one;
//   - lines are independent and the last line of a request wins:
//     ReadPrior(a + "\n" + b) is ReadPrior(a) updated with ReadPrior(b);
//   - a line Run writes is done exactly when its status is final, and
//     the same line cut short, as by a crash, is never done.
func FuzzJSONLLine(f *testing.F) {
	f.Add([]byte(`{"index":0,"key":"id:a","status":"COMPLETED"}`+"\n"), []byte(`{"index":1,"status":"FAILED"}`), 2, "COMPLETED", "ok", 5)
	f.Add([]byte(`{"index":3,"status":"CANCELLED"}`+"\n"+`{"index":4,"status":"QUEUED"}`), []byte("\n\n"), 7, "FAILED", "line 8: not a JSON object", 10)
	f.Add([]byte(`{"index":1,"status":"COMPLETED"`), []byte(`{"status":"COMPLETED"}`), 0, "CANCELLED", "", 1)
	f.Add([]byte(`{"INDEX":5,"Status":"FAILED"}`+"\r\n"+`[1]`+"\n"+`null`), []byte(`{"index":"5","status":"FAILED"}`), -1, "completed", "\x00\u2028", 0)
	f.Add([]byte(`{"index":9223372036854775808,"status":"FAILED"}`), []byte(`{"index":1.5,"status":"FAILED"}{"index":2}`), 1<<40, "FAILED", "\"}\n{\"index\":99,\"status\":\"COMPLETED\"}", 30)
	f.Add([]byte{}, []byte{0xff, '\n', 0xfe}, 42, "RequestStatus(9)", "x", 3)
	f.Add([]byte(`{"index":0,"id":"k2","status":"FAILED","error":{"kind":"auth"}}`), []byte(`{"index":0,"key":"id:k2","status":"COMPLETED"}`), 2, "FAILED", "again", 4)
	f.Fuzz(func(t *testing.T, a, b []byte, index int, status, message string, cut int) {
		read := func(data []byte) map[string]string {
			t.Helper()
			p, needsNewline, err := ReadPrior(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("ReadPrior(%q): %v", data, err)
			}
			if want := len(data) > 0 && data[len(data)-1] != '\n'; needsNewline != want {
				t.Fatalf("ReadPrior(%q): needsNewline %v, want %v", data, needsNewline, want)
			}
			return dump(p)
		}

		priorA, priorB := read(a), read(b)
		joined := append(append(append([]byte{}, a...), '\n'), b...)
		merged := maps.Clone(priorA)
		maps.Copy(merged, priorB)
		if got := read(joined); !maps.Equal(got, merged) {
			t.Fatalf("ReadPrior(a+\\n+b) = %v, want %v updated with %v", got, priorA, priorB)
		}

		key := fmt.Sprintf("id:k%d", index)
		line := encode(&Result{Index: index, Key: key, ContentHash: "sha256:ab", Status: status,
			Error: &ResultError{Kind: "error", Message: message}, Metadata: json.RawMessage(`{"k":"v"}`)})
		withLine := append(append([]byte{}, joined...), '\n')
		withLine = append(withLine, line...)
		got := read(withLine)
		want := maps.Clone(merged)
		if s, err := messages.ParseStatus(status); err == nil && s.Terminal() && s != messages.StatusCancelled {
			want["key "+key] = dump(&Prior{byKey: map[string]priorResult{key: {failed: s == messages.StatusFailed, kind: "error", hash: "sha256:ab"}}})["key "+key]
		}
		if !maps.Equal(got, want) {
			t.Fatalf("after result line %q: %v, want %v", line, got, want)
		}

		// A line cut short before its end is never taken as done.
		if n := len(line) - 1; n > 0 {
			k := cut % n
			if k < 0 {
				k += n
			}
			cutShort := append(append([]byte{}, joined...), '\n')
			cutShort = append(cutShort, line[:k]...)
			if got := read(cutShort); !maps.Equal(got, merged) {
				t.Fatalf("cut line %q: %v, want %v", line[:k], got, merged)
			}
		}
	})
}

// FuzzInputLine fuzzes the parser of input lines and the canonical form
// their identity hashes. For any line that parses, the canonical form of
// its content is JSON, and is a fixed point: a line holding it has the same
// hash. The identity of any line never panics and has a key.
func FuzzInputLine(f *testing.F) {
	f.Add([]byte(`{"id":"a","messages":[{"role":"user","content":"hi"}],"metadata":{"k":[1,2.50,null]}}`))
	f.Add([]byte(`{"b":"\u00e9\ud800\n","a":{"z":{},"y":[]},"n":-0.0e-7}`))
	f.Add([]byte(`{"id":{"x":[1]},"s":"\"\\\u0000"}`))
	f.Add([]byte("not json\xff"))
	f.Add([]byte(`{"a":1}{"b":2}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		p, err := parseLine(line)
		id, _ := newIdentifier().identify(0, line, p)
		if id.key == "" || id.hash == "" {
			t.Fatalf("identity %+v of %q", id, line)
		}
		if err != nil {
			return
		}
		canon := appendCanonical(nil, p.body)
		if !json.Valid(canon) {
			t.Fatalf("canonical form %q of %q is not JSON", canon, line)
		}
		// The body has lost its metadata by now: put it back to compare
		// the content hash.
		if p.metadata != nil {
			var md any
			dec := json.NewDecoder(bytes.NewReader(p.metadata))
			dec.UseNumber()
			if err := dec.Decode(&md); err != nil {
				t.Fatal(err)
			}
			p.body["metadata"] = md
			canon = appendCanonical(nil, p.body)
		}
		again, err := parseLine(canon)
		if err != nil || again.hash != p.hash {
			t.Fatalf("the canonical form %q of %q hashes to %v (%v), want %s", canon, line, again, err, p.hash)
		}
	})
}
