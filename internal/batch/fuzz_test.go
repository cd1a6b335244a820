package batch

import (
	"bytes"
	"encoding/json"
	"maps"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

// FuzzJSONLLine fuzzes the parser of result lines, ReadDone, which decides
// on a rerun which requests are done. (The parser of input lines lives
// inside the runner's submit and cannot be called on its own.)
//
// For arbitrary bytes a and b, and a result line made from the fuzzed
// index, status and message:
//   - ReadDone never fails on an in-memory file and reports a missing final
//     newline exactly when there is one;
//   - lines are independent: ReadDone(a + "\n" + b) is the union of
//     ReadDone(a) and ReadDone(b);
//   - a line Run writes is done exactly when its status is final, and
//     the same line cut short, as by a crash, is never done.
func FuzzJSONLLine(f *testing.F) {
	f.Add([]byte(`{"index":0,"status":"COMPLETED"}`+"\n"), []byte(`{"index":1,"status":"FAILED"}`), 2, "COMPLETED", "ok", 5)
	f.Add([]byte(`{"index":3,"status":"CANCELLED"}`+"\n"+`{"index":4,"status":"QUEUED"}`), []byte("\n\n"), 7, "FAILED", "line 8: not a JSON object", 10)
	f.Add([]byte(`{"index":1,"status":"COMPLETED"`), []byte(`{"status":"COMPLETED"}`), 0, "CANCELLED", "", 1)
	f.Add([]byte(`{"INDEX":5,"Status":"FAILED"}`+"\r\n"+`[1]`+"\n"+`null`), []byte(`{"index":"5","status":"FAILED"}`), -1, "completed", "\x00\u2028", 0)
	f.Add([]byte(`{"index":9223372036854775808,"status":"FAILED"}`), []byte(`{"index":1.5,"status":"FAILED"}{"index":2}`), 1<<40, "FAILED", "\"}\n{\"index\":99,\"status\":\"COMPLETED\"}", 30)
	f.Add([]byte{}, []byte{0xff, '\n', 0xfe}, 42, "RequestStatus(9)", "x", 3)
	f.Fuzz(func(t *testing.T, a, b []byte, index int, status, message string, cut int) {
		read := func(data []byte) map[int]bool {
			t.Helper()
			done, needsNewline, err := ReadDone(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("ReadDone(%q): %v", data, err)
			}
			if want := len(data) > 0 && data[len(data)-1] != '\n'; needsNewline != want {
				t.Fatalf("ReadDone(%q): needsNewline %v, want %v", data, needsNewline, want)
			}
			return done
		}

		doneA, doneB := read(a), read(b)
		joined := append(append(append([]byte{}, a...), '\n'), b...)
		union := maps.Clone(doneA)
		maps.Copy(union, doneB)
		if got := read(joined); !maps.Equal(got, union) {
			t.Fatalf("ReadDone(a+\\n+b) = %v, want the union %v of %v and %v", got, union, doneA, doneB)
		}

		line := encode(&Result{Index: index, Status: status, Error: &ResultError{Kind: "error", Message: message},
			Metadata: json.RawMessage(`{"k":"v"}`)})
		withLine := append(append([]byte{}, joined...), '\n')
		withLine = append(withLine, line...)
		got := read(withLine)
		want := maps.Clone(union)
		if s, err := messages.ParseStatus(status); err == nil && s.Terminal() && s != messages.StatusCancelled {
			want[index] = true
		}
		if !maps.Equal(got, want) {
			t.Fatalf("after result line %q: done %v, want %v", line, got, want)
		}

		// A line cut short before its end is never taken as done.
		if n := len(line) - 1; n > 0 {
			k := cut % n
			if k < 0 {
				k += n
			}
			cutShort := append(append([]byte{}, joined...), '\n')
			cutShort = append(cutShort, line[:k]...)
			if got := read(cutShort); !maps.Equal(got, union) {
				t.Fatalf("cut line %q: done %v, want %v", line[:k], got, union)
			}
		}
	})
}
