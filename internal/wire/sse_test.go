package wire

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// collect reads every event of Events(r) and the error that ended it.
func collect(r io.Reader) ([]SSEEvent, error) {
	var evs []SSEEvent
	for ev, err := range Events(r) {
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

func TestEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []SSEEvent
		err  error
	}{
		{"empty", "", nil, nil},
		{"one", "data: x\n\n", []SSEEvent{{Data: "x"}}, nil},
		{"done is data", "data: [DONE]\n\n", []SSEEvent{{Data: "[DONE]"}}, nil},
		{"named", "event: ping\ndata: {}\n\n", []SSEEvent{{Event: "ping", Data: "{}"}}, nil},
		{"multi-line data", "data: a\ndata:b\ndata:  c\n\n", []SSEEvent{{Data: "a\nb\n c"}}, nil},
		{"empty data dispatches", "data\n\ndata:\n\n", []SSEEvent{{}, {}}, nil},
		{"no data no dispatch", "event: x\n\nid: 7\n\ndata: y\n\n", []SSEEvent{{Data: "y", ID: "7"}}, nil},
		{"comments ignored", ": hello\ndata: a\n: mid\n\n:bye\n", []SSEEvent{{Data: "a"}}, nil},
		{"crlf", "data: a\r\ndata: b\r\n\r\n", []SSEEvent{{Data: "a\nb"}}, nil},
		{"cr", "data: a\rdata: b\r\rdata: c\r\r", []SSEEvent{{Data: "a\nb"}, {Data: "c"}}, nil},
		{"mixed endings", "data: a\r\n\rdata: b\n\r\n", []SSEEvent{{Data: "a"}, {Data: "b"}}, nil},
		{"bom stripped once", "\uFEFFdata: a\n\n\uFEFFdata: b\n\n", []SSEEvent{{Data: "a"}}, nil},
		{"id persists", "id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n", []SSEEvent{{Data: "a", ID: "1"}, {Data: "b", ID: "1"}, {Data: "c"}}, nil},
		{"id with nul ignored", "id: 1\n\nid: a\x00b\ndata: x\n\n", []SSEEvent{{Data: "x", ID: "1"}}, nil},
		{"unknown and retry ignored", "retry: 10\nfoo: bar\ndata: x\n\n", []SSEEvent{{Data: "x"}}, nil},
		{"colon in value", "data: {\"a\":1}\n\n", []SSEEvent{{Data: `{"a":1}`}}, nil},
		{"event resets", "event: a\ndata: 1\n\ndata: 2\n\n", []SSEEvent{{Event: "a", Data: "1"}, {Data: "2"}}, nil},
		{"leading blank lines", "\n\n\ndata: a\n\n", []SSEEvent{{Data: "a"}}, nil},
		{"name needs exact case", "Data: a\ndata: b\n\n", []SSEEvent{{Data: "b"}}, nil},

		{"truncated after field", "data: a\n\ndata: b\n", []SSEEvent{{Data: "a"}}, ErrTruncated},
		{"truncated mid line", "data: a\n\ndata: b", []SSEEvent{{Data: "a"}}, ErrTruncated},
		{"truncated event line", "event: x", nil, ErrTruncated},
		{"truncated comment after field", "data: a\n: c", nil, ErrTruncated},
		{"truncated mid crlf is complete", "data: a\r\n\r", []SSEEvent{{Data: "a"}}, nil},
		{"cut comment is not truncation", "data: a\n\n: keep-al", []SSEEvent{{Data: "a"}}, nil},
		{"cut between events", "data: a\n\n", []SSEEvent{{Data: "a"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Feeding the input a byte at a time must not change the result:
			// it splits every CRLF across reads.
			for _, r := range []io.Reader{strings.NewReader(tc.in), iotest.OneByteReader(strings.NewReader(tc.in))} {
				got, err := collect(r)
				if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
					t.Errorf("error %v, want %v", err, tc.err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("events %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func TestEventsLongLines(t *testing.T) {
	long := strings.Repeat("x", MaxSSELineSize-len("data: "))
	evs, err := collect(strings.NewReader("data: " + long + "\r\n\r\n"))
	if err != nil || len(evs) != 1 || evs[0].Data != long {
		t.Fatalf("line of the maximum size: %d events, %v", len(evs), err)
	}

	// After a CRLF, whose LF the scanner holds with the next line.
	evs, err = collect(strings.NewReader("data: a\r\ndata: " + long + "\r\n\r\n"))
	if err != nil || len(evs) != 1 || evs[0].Data != "a\n"+long {
		t.Fatalf("line of the maximum size after CRLF: %d events, %v", len(evs), err)
	}

	_, err = collect(strings.NewReader("data: " + long + "y\n\n"))
	if !errors.Is(err, ErrLineTooLong) {
		t.Errorf("line one byte too long: %v, want ErrLineTooLong", err)
	}
	_, err = collect(iotest.OneByteReader(strings.NewReader(": " + strings.Repeat("c", MaxSSELineSize) + "\n")))
	if !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long comment read a byte at a time: %v, want ErrLineTooLong", err)
	}
	_, err = collect(strings.NewReader("data: " + long + "y"))
	if !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long unterminated line: %v, want ErrLineTooLong", err)
	}
}

func TestEventsTooLarge(t *testing.T) {
	line := "data: " + strings.Repeat("z", 1<<20-16) + "\n"
	n := MaxSSEEventSize/(1<<20-16) + 1
	_, err := collect(strings.NewReader(strings.Repeat(line, n) + "\n"))
	if !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("got %v, want ErrEventTooLarge", err)
	}
	// Just under the limit is fine.
	line = "data: " + strings.Repeat("z", 1<<19) + "\n"
	evs, err := collect(strings.NewReader(strings.Repeat(line, MaxSSEEventSize/(1<<19)-1) + "\n"))
	if err != nil || len(evs) != 1 {
		t.Errorf("under the limit: %d events, %v", len(evs), err)
	}
}

func TestEventsReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	evs, err := collect(r)
	if !errors.Is(err, boom) || errors.Is(err, ErrTruncated) {
		t.Errorf("error %v, want boom", err)
	}
	if !reflect.DeepEqual(evs, []SSEEvent{{Data: "a"}}) {
		t.Errorf("events %q", evs)
	}
}

// stallReader returns no bytes and no error forever.
type stallReader struct{}

func (stallReader) Read([]byte) (int, error) { return 0, nil }

func TestEventsNoProgress(t *testing.T) {
	if _, err := collect(stallReader{}); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("got %v, want io.ErrNoProgress", err)
	}
}

func TestEventsStopEarly(t *testing.T) {
	in := "data: 1\n\ndata: 2\n\ndata: 3\n\n"
	var got []string
	for ev, err := range Events(strings.NewReader(in)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Data)
		if len(got) == 2 {
			break
		}
	}
	if !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("got %q", got)
	}
}
