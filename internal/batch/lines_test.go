package batch

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// repeatReader is size bytes of b, then the reader after: a line of any
// length without the memory to hold it.
type repeatReader struct {
	b     byte
	left  int64
	after io.Reader
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return r.after.Read(p)
	}
	n := int(min(int64(len(p)), r.left))
	for i := range n {
		p[i] = r.b
	}
	r.left -= int64(n)
	return n, nil
}

// hashOfRepeat is the hash a line of size bytes of b is known by.
func hashOfRepeat(b byte, size int64) string {
	h := sha256.New()
	chunk := []byte(strings.Repeat(string(b), 1<<16))
	for size > 0 {
		n := min(size, int64(len(chunk)))
		h.Write(chunk[:n])
		size -= n
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// readAll reads every line of in with a lineReader of limit, checking
// after each that it holds no more than the limit (and a newline).
func readAll(t *testing.T, in io.Reader, limit int) ([]inputLine, error) {
	t.Helper()
	lr := newLineReader(in, limit)
	var lines []inputLine
	for {
		l, err := lr.next()
		if c := cap(lr.buf); c > limit+1 {
			t.Fatalf("after line %d the reader holds a buffer of %d bytes, limit %d", len(lines)+1, c, limit)
		}
		if len(l.text) > 0 || l.long != nil {
			l.text = []byte(string(l.text)) // valid until the next read only
			lines = append(lines, l)
		}
		if err != nil {
			if err == io.EOF {
				return lines, nil
			}
			return lines, err
		}
	}
}

// Lines within the limit read as bufio.Reader.ReadBytes reads them,
// whether they fit in the reader's buffer or not, newline or none at the
// end; a line one byte over the limit is too long, one at the limit is not.
func TestLineReaderReadsLinesWithinTheLimit(t *testing.T) {
	const limit = 3 * lineBufferBytes
	lines := []string{
		"short\n",
		"\n",
		"crlf\r\n",
		strings.Repeat("b", lineBufferBytes+10) + "\n", // gathered from two buffers
		strings.Repeat("c", limit) + "\n",              // at the limit
		"last, no newline",
	}
	in := strings.Join(lines, "")
	var want []string
	br := bufio.NewReader(strings.NewReader(in))
	for {
		l, err := br.ReadBytes('\n')
		if len(l) > 0 {
			want = append(want, string(l))
		}
		if err != nil {
			break
		}
	}
	got, err := readAll(t, iotest.HalfReader(strings.NewReader(in)), limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].long != nil || string(got[i].text) != want[i] {
			t.Errorf("line %d: %.30q (long %v), want %.30q", i+1, got[i].text, got[i].long, want[i])
		}
	}
	if !got[1].blank() || got[0].blank() {
		t.Error("blank lines misjudged")
	}

	over := strings.Repeat("d", limit+1)
	got, err = readAll(t, strings.NewReader(over+"\nafter\n"), limit)
	if err != nil || len(got) != 2 {
		t.Fatalf("%d lines, %v", len(got), err)
	}
	if l := got[0].long; l == nil || l.size != limit+1 || l.hash != hashOfRepeat('d', limit+1) || got[0].blank() {
		t.Errorf("a line one byte over: %+v, want it too long, of %d bytes, hashed", l, limit+1)
	}
	if string(got[1].text) != "after\n" {
		t.Errorf("the line after: %q", got[1].text)
	}
}

// A line of 64 MiB, given by a reader that never holds it, is read to its
// end with no more than the limit held: it is known by its size and the
// hash of its bytes, and the lines around it read as they are.
func TestLineReaderSkipsALongLineWithoutHoldingIt(t *testing.T) {
	const size = 64 << 20
	const limit = 1 << 20
	in := io.MultiReader(strings.NewReader("before\n"), &repeatReader{b: 'x', left: size, after: strings.NewReader("\nafter")})
	got, err := readAll(t, in, limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[0].text) != "before\n" || string(got[2].text) != "after" {
		t.Fatalf("lines %+v", got)
	}
	long := got[1].long
	if long == nil || long.size != size || long.limit != limit || long.hash != hashOfRepeat('x', size) {
		t.Fatalf("the long line: %+v", long)
	}
	if want := "67108864 bytes, more than --max-line-bytes (1048576)"; long.Error() != want {
		t.Errorf("reason %q, want %q", long.Error(), want)
	}
	if inputKind(long) != "line_too_long" || inputKind(errors.New("not a JSON object")) != "invalid_input" {
		t.Error("kinds of invalid input")
	}
}

// A read error inside a long line, or before its end, ends the input as
// it does any line.
func TestLineReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	in := io.MultiReader(strings.NewReader(strings.Repeat("y", 1000)), iotest.ErrReader(boom))
	lines, err := readAll(t, in, 100)
	if !errors.Is(err, boom) || len(lines) != 1 || lines[0].long == nil || lines[0].long.size != 1000 {
		t.Errorf("lines %+v, %v; want the long line and the error", lines, err)
	}
	in = io.MultiReader(strings.NewReader(strings.Repeat("z", 50)), iotest.ErrReader(boom))
	lines, err = readAll(t, in, 100)
	if !errors.Is(err, boom) || len(lines) != 1 || len(lines[0].text) != 50 {
		t.Errorf("lines %+v, %v; want the partial line and the error", lines, err)
	}
}
