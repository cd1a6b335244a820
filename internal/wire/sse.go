package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"iter"
	"strings"
)

// SSEEvent is one event of a server-sent-events stream.
type SSEEvent struct {
	// Event is the event type from the "event" field, or "" when the
	// event had none (a browser would report "message").
	Event string

	// Data is the concatenation of the event's "data" fields, joined by
	// newlines. OpenAI's final "[DONE]" is ordinary data here.
	Data string

	// ID is the last event ID as the standard defines it: the value of
	// the most recent "id" field of this or an earlier event.
	ID string
}

// Limits of Events. A line is what lies between two line endings; an event
// is the data of all its "data" lines. Model APIs send events of a few
// kilobytes, so the limits only stop a broken or hostile server from
// making the reader buffer without bound.
const (
	MaxSSELineSize  = 1 << 20 // 1 MiB
	MaxSSEEventSize = 8 << 20 // 8 MiB
)

var (
	// ErrTruncated reports that the stream ended inside an event: after
	// a field line of an event and before the blank line that ends it.
	// A stream cut between events, or inside a comment, is not truncated
	// by this test; the caller tells those apart by the protocol, such as
	// OpenAI's "[DONE]" or Anthropic's message_stop.
	ErrTruncated = errors.New("wire: SSE stream ended inside an event")

	// ErrLineTooLong reports a line longer than MaxSSELineSize.
	ErrLineTooLong = errors.New("wire: SSE line too long")

	// ErrEventTooLarge reports an event whose data exceeds MaxSSEEventSize.
	ErrEventTooLarge = errors.New("wire: SSE event too large")
)

// Events returns the events of the server-sent-events stream read from r,
// parsed as the WHATWG HTML standard says: lines end in CRLF, LF or CR;
// lines starting with ':' are comments; a field name is separated from its
// value by the first ':' and one optional space; a blank line dispatches
// the event, unless it has no data; "retry" and unknown fields are
// ignored, since the caller, not the stream, decides on reconnection.
//
// The sequence ends at the end of r, or with one non-nil error: an error
// of r, ErrLineTooLong, ErrEventTooLarge, or ErrTruncated when r ended
// inside an event, which the standard would drop silently but which a
// client must treat as a failed response.
//
// The reader of github.com/tmaxmax/go-sse is not used because it drops an
// unfinished final event without a sign, which would hide truncation.
func Events(r io.Reader) iter.Seq2[SSEEvent, error] {
	return func(yield func(SSEEvent, error) bool) {
		var (
			lines   = newLineScanner(r)
			data    strings.Builder
			hasData bool   // a data field was seen; data may still be empty
			event   string // event type buffer
			lastID  string // last event ID buffer, kept across events
			pending bool   // a field line was seen since the last blank line
			first   = true
		)
		for lines.scan() {
			line := lines.line
			if first {
				line = bytes.TrimPrefix(line, []byte("\uFEFF"))
				first = false
			}
			if lines.partial {
				// A line cut by the end of input is discarded; it
				// truncates an event unless it is a comment.
				if pending || (len(line) > 0 && line[0] != ':') {
					yield(SSEEvent{}, ErrTruncated)
				}
				return
			}
			if len(line) == 0 {
				if hasData {
					ev := SSEEvent{Event: event, Data: data.String(), ID: lastID}
					if !yield(ev, nil) {
						return
					}
				}
				data.Reset()
				hasData, event, pending = false, "", false
				continue
			}
			if line[0] == ':' {
				continue
			}
			pending = true
			name, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(name) {
			case "data":
				if data.Len()+len(value)+1 > MaxSSEEventSize {
					yield(SSEEvent{}, ErrEventTooLarge)
					return
				}
				if hasData {
					data.WriteByte('\n')
				}
				data.Write(value)
				hasData = true
			case "event":
				event = string(value)
			case "id":
				if bytes.IndexByte(value, 0) < 0 {
					lastID = string(value)
				}
			}
		}
		switch err := lines.err(); {
		case err != nil:
			yield(SSEEvent{}, err)
		case pending:
			yield(SSEEvent{}, ErrTruncated)
		}
	}
}

// lineScanner splits its input into lines ended by CRLF, LF or CR.
type lineScanner struct {
	sc *bufio.Scanner

	// line is the current line, without its ending; it is valid until the
	// next call of scan.
	line []byte

	// partial reports that line was ended by the end of input rather than
	// by a line ending.
	partial bool

	// skipLF is set after a line that ended in CR, so that an LF right
	// after it completes a CRLF instead of ending a blank line. Acting on
	// the CR at once, instead of waiting for the next byte, lets an event
	// ended by CR CR be dispatched as soon as it arrives.
	skipLF bool

	// searched is how many bytes of the pending data hold no line ending,
	// so that a long line arriving in small reads is scanned once, not
	// once per read.
	searched int
}

// newLineScanner returns a lineScanner reading r.
func newLineScanner(r io.Reader) *lineScanner {
	ls := &lineScanner{sc: bufio.NewScanner(r)}
	// Room for the longest line, its ending, and the LF of a CRLF before it.
	ls.sc.Buffer(make([]byte, 4096), MaxSSELineSize+2)
	ls.sc.Split(ls.split)
	return ls
}

// scan advances to the next line and reports whether there is one.
func (ls *lineScanner) scan() bool {
	if !ls.sc.Scan() {
		return false
	}
	ls.line = ls.sc.Bytes()
	return true
}

// err returns the error that ended scanning, or nil at the end of input.
func (ls *lineScanner) err() error {
	err := ls.sc.Err()
	if errors.Is(err, bufio.ErrTooLong) {
		return ErrLineTooLong
	}
	return err
}

// split is the bufio.SplitFunc of the scanner. It consumes the LF of a CRLF
// together with the line that follows, because bufio.Scanner ends at the
// end of input after a call that consumes bytes without a token.
func (ls *lineScanner) split(data []byte, atEOF bool) (int, []byte, error) {
	skip := 0
	if ls.skipLF && len(data) > 0 && data[0] == '\n' {
		skip = 1
	}
	from := max(ls.searched, skip)
	if i := bytes.IndexAny(data[from:], "\r\n"); i >= 0 {
		i += from
		if i-skip > MaxSSELineSize {
			return 0, nil, ErrLineTooLong
		}
		ls.skipLF, ls.searched = data[i] == '\r', 0
		return i + 1, data[skip:i:i], nil
	}
	if len(data)-skip > MaxSSELineSize {
		return 0, nil, ErrLineTooLong
	}
	if atEOF {
		ls.skipLF, ls.searched = false, 0
		if len(data) > skip {
			ls.partial = true
			return len(data), data[skip:], nil
		}
		return len(data), nil, nil
	}
	ls.searched = len(data)
	return 0, nil, nil
}
