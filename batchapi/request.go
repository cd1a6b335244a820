package batchapi

import (
	"fmt"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
)

// Request is one request of a run.
type Request struct {
	// Key names the request: unique in a run, and the same in the run that
	// resumes it. It is the request's custom_id in its batches (for
	// Anthropic, which takes 1 to 64 letters, digits, '_' and '-', a hash of
	// it when it is not such a name).
	Key string
	// Payload is the request body, merged with the model's fields as
	// Model.Submit merges it.
	Payload map[string]any
	// Options adjust the request as they adjust a call (imodel.WithField,
	// imodel.WithMetadata, ...).
	Options []imodel.CallOption
	// Line is the request's 1-based line in its input file, if it has one,
	// recorded in the journal for a reader; 0 means none.
	Line int
	// Answered names a batch whose answer to this request has already been
	// taken (a result written from it): if the journal's unsettled batch of
	// this key is that one, the request goes into a new batch instead of
	// waiting for that one's answer again.
	Answered string
}

// Outcome is how one request of a run ended.
type Outcome struct {
	Key string
	// Event is the request's terminal snapshot, with the statuses and error
	// kinds of a model call: COMPLETED with the answer (Response) and its
	// usage (Tokens.Actual); FAILED with the error (Failure, Err: an
	// *imodel.APIError for an error answer, of the kind a call would get;
	// an *ItemError for a request that no batch ran), and the answer if
	// there was one; CANCELLED when its batch was cancelled by someone
	// else. Its attempts are the batches it went through. For a request
	// sent online (Config.FallbackOnline), the snapshot of that online
	// request.
	Event messages.Event
	// Batch is the provider batch that answered the request (for a
	// request sent online, the last one it was in); CustomID is its
	// custom_id there.
	Batch, CustomID string
	// Batches is how many provider batches the request went through.
	Batches int
	// Online reports a request answered online after its batches.
	Online bool
}

// Stats counts what a run did with provider batches.
type Stats struct {
	// Created counts the batches this run created; Resumed those created
	// by an earlier run that this one polled.
	Created, Resumed int
	// Ended counts the batches that ended while the run polled them;
	// Running those left running at the provider when the run stopped (a
	// later run with the same journal collects them), of which Cancelled
	// were asked to cancel.
	Ended, Running, Cancelled int
	// Resubmitted counts the requests put in a new batch after theirs
	// ended without their answer; Online those sent online instead.
	Resubmitted, Online int
}

// ItemError is why a request of a batch has no answer: the provider ran
// out of time (Kind "expired") or did not run it for another reason it
// gave ("not_run"); or the request can never go into a batch
// ("too_many_tokens", "too_large", "duplicate_key").
type ItemError struct {
	kind, msg string
}

// Error says why the request has no answer.
func (e *ItemError) Error() string { return "batchapi: " + e.msg }

// Kind names the error's class, as a snapshot shows it.
func (e *ItemError) Kind() string { return e.kind }

// Retryable reports whether the request may get an answer in another
// batch.
func (e *ItemError) Retryable() bool { return e.kind == "expired" || e.kind == "not_run" }

// kindDuplicateKey is the kind of the refusal of a request whose key an
// earlier request of the run has.
const kindDuplicateKey = "duplicate_key"

func itemError(kind, format string, args ...any) *ItemError {
	return &ItemError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
