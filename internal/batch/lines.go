package batch

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxLineBytes is the longest input line a run reads unless
// Config.MaxLineBytes says otherwise: 16 MiB, above what a request usually
// holds (a million tokens of text are about 4 MB; a line with large images
// inline may need more), and small enough that one line cannot exhaust
// memory.
const DefaultMaxLineBytes = 16 << 20

// lineBufferBytes is the buffer an input is read through.
const lineBufferBytes = 1 << 16

// lineReader reads the lines of an input (a run's, a dry run's, Scan's)
// holding at most its limit of any one: a longer line is read to its end
// without being kept, its bytes hashed as they pass, so that it becomes a
// line_too_long result, with an identity, instead of a line that fills
// memory.
type lineReader struct {
	br    *bufio.Reader
	limit int
	// buf gathers a line longer than br's buffer; its capacity never
	// passes limit.
	buf []byte
}

func newLineReader(r io.Reader, limit int) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, lineBufferBytes), limit: limit}
}

// inputLine is a line as lineReader reads it: its text, or, for a line
// longer than the limit, what was learnt of it.
type inputLine struct {
	// text is the line with its newline, when it has one; valid until
	// the next read. Nil for a line too long.
	text []byte
	long *longLineError
}

// blank reports whether the line holds nothing but white space: blank
// lines are no requests. A line too long is never blank.
func (l inputLine) blank() bool { return l.long == nil && len(bytes.TrimSpace(l.text)) == 0 }

// longLineError is why a line longer than the limit is invalid input.
type longLineError struct {
	size  int64  // the line's bytes, its newline left out
	limit int    // the limit it passed
	hash  string // "sha256:" and the hex SHA-256 of those bytes
}

func (e *longLineError) Error() string {
	return fmt.Sprintf("%d bytes, more than --max-line-bytes (%d)", e.size, e.limit)
}

// inputKind is the error kind of a line's result when the line is invalid
// input for reason: line_too_long for a line longer than the limit (which
// a rerun with a higher --max-line-bytes can take), invalid_input for any
// other.
func inputKind(reason error) string {
	var long *longLineError
	if errors.As(reason, &long) {
		return "line_too_long"
	}
	return "invalid_input"
}

// next reads the next line. As with bufio.Reader.ReadBytes, the last line
// may come with io.EOF, and an empty one with io.EOF means the input has
// ended; any other error ends the input too.
func (r *lineReader) next() (inputLine, error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		content := bytes.TrimSuffix(chunk, []byte{'\n'})
		if len(r.buf)+len(content) > r.limit {
			return r.skipLong(chunk, err)
		}
		if err != bufio.ErrBufferFull {
			if len(r.buf) == 0 {
				// The line was whole in br's buffer: no copy.
				return inputLine{text: chunk}, err
			}
			r.buf = r.append(chunk)
			return inputLine{text: r.buf}, err
		}
		r.buf = r.append(chunk)
	}
}

// append appends b to r.buf without letting its capacity pass the limit
// and a newline.
func (r *lineReader) append(b []byte) []byte {
	need := len(r.buf) + len(b)
	if need > cap(r.buf) {
		grown := make([]byte, len(r.buf), min(max(2*cap(r.buf), need), r.limit+1))
		copy(grown, r.buf)
		r.buf = grown
	}
	return append(r.buf, b...)
}

// skipLong reads the rest of a line found longer than the limit, from
// chunk, the slice that passed it (err being what reading it returned),
// hashing what was gathered and what follows up to the newline.
func (r *lineReader) skipLong(chunk []byte, err error) (inputLine, error) {
	h := sha256.New()
	h.Write(r.buf)
	size := int64(len(r.buf))
	r.buf = r.buf[:0]
	add := func(b []byte) {
		b = bytes.TrimSuffix(b, []byte{'\n'})
		h.Write(b)
		size += int64(len(b))
	}
	add(chunk)
	for err == bufio.ErrBufferFull {
		chunk, err = r.br.ReadSlice('\n')
		add(chunk)
	}
	return inputLine{long: &longLineError{size: size, limit: r.limit, hash: "sha256:" + hex.EncodeToString(h.Sum(nil))}}, err
}
