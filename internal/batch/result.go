package batch

import (
	"bufio"
	"encoding/json"
	"io"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// Result is one line of the results file.
type Result struct {
	// Index is the request's 0-based line number in the input.
	Index int `json:"index"`
	// ID is the input line's "id", as given.
	ID json.RawMessage `json:"id,omitempty"`
	// RequestID is the executor's ID of the request.
	RequestID string `json:"request_id,omitempty"`
	Status    string `json:"status"`
	// Response is the provider's reply body (JSON), for a completed request.
	Response json.RawMessage `json:"response,omitempty"`
	Error    *ResultError    `json:"error,omitempty"`
	Attempts int             `json:"attempts"`
	Tokens   ResultTokens    `json:"tokens"`
	Timings  ResultTimings   `json:"timings"`
	// Metadata is the input line's "metadata", untouched.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// ResultError says why a request failed.
type ResultError struct {
	Kind    string            `json:"kind"`
	Message string            `json:"message"`
	Status  int               `json:"status,omitempty"`
	Details map[string]string `json:"details,omitempty"`
}

// ResultTokens are a request's API tokens.
type ResultTokens struct {
	Estimated int  `json:"estimated"`
	Actual    *int `json:"actual,omitempty"`
}

// ResultTimings are a request's times, in milliseconds since it was created.
type ResultTimings struct {
	Created time.Time `json:"created"`
	QueueMS float64   `json:"queue_ms"`
	WaitMS  float64   `json:"permit_ms"`
	CallMS  float64   `json:"call_ms"`
	TotalMS float64   `json:"total_ms"`
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// terminal reports whether status ends a request for good, so that a rerun
// skips it. CANCELLED is not written by batch: a cancelled request is one
// an interrupt kept from finishing, and a rerun must do it.
func terminal(status string) bool {
	s, err := messages.ParseStatus(status)
	return err == nil && s.Terminal() && s != messages.StatusCancelled
}

// ReadDone reads an existing results file and returns the indices that
// already have a final result. Lines that do not parse (such as a line cut
// short by a crash) are ignored, so their requests run again. It also
// reports whether the file ends without a newline, which the caller must add
// before appending.
func ReadDone(r io.Reader) (done map[int]bool, needsNewline bool, err error) {
	done = map[int]bool{}
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			needsNewline = line[len(line)-1] != '\n'
			var res struct {
				Index  *int   `json:"index"`
				Status string `json:"status"`
			}
			if json.Unmarshal(line, &res) == nil && res.Index != nil && terminal(res.Status) {
				done[*res.Index] = true
			}
		}
		if err == io.EOF {
			return done, needsNewline, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}
