package wire

import (
	"encoding/json"
	"time"
)

// OpenAI's Batch API runs the requests of an uploaded JSONL file, one
// BatchRequestLine per line, and writes their answers to an output file
// (the successes) and an error file (the rest), one BatchResponseLine per
// line. Anthropic's Message Batches API takes the requests in the body of
// one call and serves their results as JSONL, one MessageBatchResultLine
// per line. In both, results come in no particular order: a client matches
// them to its requests by custom_id.

// Object types, purposes and limits of OpenAI's Files and Batch APIs.
const (
	ObjectFile  = "file"
	ObjectBatch = "batch"

	// PurposeBatch is the purpose of an uploaded batch input file, and
	// PurposeBatchOutput that of the output and error files of a batch.
	PurposeBatch       = "batch"
	PurposeBatchOutput = "batch_output"

	// CompletionWindow24h is the only completion window OpenAI offers.
	CompletionWindow24h = "24h"

	// OpenAIBatchMaxRequests and OpenAIBatchMaxBytes are the documented
	// limits of one batch input file.
	OpenAIBatchMaxRequests = 50_000
	OpenAIBatchMaxBytes    = 200 << 20
)

// Statuses of an OpenAI Batch. A batch is validated, then processed, then
// its output files are written; it ends completed, failed (validation
// refused it), expired (the completion window ran out) or cancelled.
const (
	BatchValidating = "validating"
	BatchFailed     = "failed"
	BatchInProgress = "in_progress"
	BatchFinalizing = "finalizing"
	BatchCompleted  = "completed"
	BatchExpired    = "expired"
	BatchCancelling = "cancelling"
	BatchCancelled  = "cancelled"
)

// Codes of the BatchLineError of a request that was never executed.
const (
	BatchErrorExpired   = "batch_expired"
	BatchErrorCancelled = "batch_cancelled"
)

// OpenAIFile is OpenAI's File object, the answer to an upload and to a
// retrieval of a file's metadata.
type OpenAIFile struct {
	ID        string `json:"id"`
	Object    string `json:"object"` // always ObjectFile
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"` // Unix seconds
	ExpiresAt *int64 `json:"expires_at"` // Unix seconds; nil: never
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`

	// Status ("uploaded", "processed" or "error") and StatusDetails are
	// deprecated but still sent.
	Status        string  `json:"status"`
	StatusDetails *string `json:"status_details"`
}

// OpenAIFileDeleted is the answer to a DELETE of a file.
type OpenAIFileDeleted struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // always ObjectFile
	Deleted bool   `json:"deleted"`
}

// OpenAIList is a page of an OpenAI list endpoint. A client asks for the
// next page with after=LastID while HasMore is set.
type OpenAIList[T any] struct {
	Object  string  `json:"object"` // always ObjectList
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// BatchRequestLine is one line of a batch input file: a request to the
// batch's endpoint, named by CustomID, which must be unique in the file.
type BatchRequestLine struct {
	CustomID string          `json:"custom_id"`
	Method   string          `json:"method"` // always "POST"
	URL      string          `json:"url"`    // the batch's endpoint, such as "/v1/chat/completions"
	Body     json.RawMessage `json:"body"`   // the request body the endpoint takes online
}

// BatchCreateRequest is the body of a POST to /v1/batches.
type BatchCreateRequest struct {
	InputFileID      string            `json:"input_file_id"`
	Endpoint         string            `json:"endpoint"`
	CompletionWindow string            `json:"completion_window"`
	Metadata         map[string]string `json:"metadata,omitempty"`
}

// Batch is OpenAI's Batch object. Timestamps are Unix seconds, nil until
// the batch reaches the state they name.
type Batch struct {
	ID               string       `json:"id"`
	Object           string       `json:"object"` // always ObjectBatch
	Endpoint         string       `json:"endpoint"`
	Model            string       `json:"model,omitempty"`
	Errors           *BatchErrors `json:"errors"` // why validation failed
	InputFileID      string       `json:"input_file_id"`
	CompletionWindow string       `json:"completion_window"`
	Status           string       `json:"status"`

	// OutputFileID names the file of the successful answers, and
	// ErrorFileID that of the failed and unexecuted requests; each is nil
	// until the batch ends, and stays nil when it would be empty.
	OutputFileID *string `json:"output_file_id"`
	ErrorFileID  *string `json:"error_file_id"`

	CreatedAt    int64  `json:"created_at"`
	InProgressAt *int64 `json:"in_progress_at"`
	ExpiresAt    *int64 `json:"expires_at"`
	FinalizingAt *int64 `json:"finalizing_at"`
	CompletedAt  *int64 `json:"completed_at"`
	FailedAt     *int64 `json:"failed_at"`
	ExpiredAt    *int64 `json:"expired_at"`
	CancellingAt *int64 `json:"cancelling_at"`
	CancelledAt  *int64 `json:"cancelled_at"`

	RequestCounts BatchRequestCounts `json:"request_counts"`
	Usage         *BatchUsage        `json:"usage,omitempty"`
	Metadata      map[string]string  `json:"metadata"`
}

// BatchRequestCounts counts a batch's requests: Completed and Failed grow
// as requests are executed; requests that never run (expired or cancelled)
// count in neither.
type BatchRequestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// BatchErrors lists why a batch failed validation.
type BatchErrors struct {
	Object string       `json:"object"` // always ObjectList
	Data   []BatchError `json:"data"`
}

// BatchError is one reason why a batch failed validation, such as
// "duplicate_custom_id" on a line of the input file.
type BatchError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int    `json:"line"` // 1-based line of the input file
}

// BatchUsage is the token usage of a batch's executed requests.
type BatchUsage struct {
	InputTokens         int                `json:"input_tokens"`
	InputTokensDetails  BatchInputDetails  `json:"input_tokens_details"`
	OutputTokens        int                `json:"output_tokens"`
	OutputTokensDetails BatchOutputDetails `json:"output_tokens_details"`
	TotalTokens         int                `json:"total_tokens"`
}

// BatchInputDetails breaks down BatchUsage.InputTokens.
type BatchInputDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// BatchOutputDetails breaks down BatchUsage.OutputTokens.
type BatchOutputDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// BatchResponseLine is one line of a batch's output or error file. A
// request that was executed has a Response, whatever its status: a 4xx or
// 5xx answer goes to the error file with the error body the endpoint
// would have sent online. A request that was never executed has an Error
// instead, with the code BatchErrorExpired or BatchErrorCancelled.
type BatchResponseLine struct {
	ID       string             `json:"id"`
	CustomID string             `json:"custom_id"`
	Response *BatchLineResponse `json:"response"`
	Error    *BatchLineError    `json:"error"`
}

// BatchLineResponse is the answer to one request of a batch.
type BatchLineResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

// BatchLineError says why a request of a batch was not executed.
type BatchLineError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Types and limits of Anthropic's Message Batches API.
const (
	TypeMessageBatch        = "message_batch"
	TypeMessageBatchDeleted = "message_batch_deleted"

	// AnthropicBatchMaxRequests and AnthropicBatchMaxBytes are the
	// documented limits of one message batch.
	AnthropicBatchMaxRequests = 100_000
	AnthropicBatchMaxBytes    = 256 << 20
)

// Processing statuses of a MessageBatch.
const (
	MessageBatchInProgress = "in_progress"
	MessageBatchCanceling  = "canceling"
	MessageBatchEnded      = "ended"
)

// Types of a MessageBatchResult.
const (
	ResultSucceeded = "succeeded"
	ResultErrored   = "errored"
	ResultCanceled  = "canceled"
	ResultExpired   = "expired"
)

// MessageBatchCreateRequest is the body of a POST to /v1/messages/batches.
type MessageBatchCreateRequest struct {
	Requests []MessageBatchRequest `json:"requests"`
}

// MessageBatchRequest is one request of a message batch: the body of a
// Messages request, named by CustomID, which must be unique in the batch
// and match ^[a-zA-Z0-9_-]{1,64}$.
type MessageBatchRequest struct {
	CustomID string          `json:"custom_id"`
	Params   json.RawMessage `json:"params"`
}

// MessageBatch is Anthropic's Message Batch object. The optional times are
// nil until the batch reaches the state they name; ResultsURL is nil until
// the batch has ended.
type MessageBatch struct {
	ID                string                    `json:"id"`
	Type              string                    `json:"type"` // always TypeMessageBatch
	ProcessingStatus  string                    `json:"processing_status"`
	RequestCounts     MessageBatchRequestCounts `json:"request_counts"`
	EndedAt           *time.Time                `json:"ended_at"`
	CreatedAt         time.Time                 `json:"created_at"`
	ExpiresAt         time.Time                 `json:"expires_at"`
	ArchivedAt        *time.Time                `json:"archived_at"`
	CancelInitiatedAt *time.Time                `json:"cancel_initiated_at"`
	ResultsURL        *string                   `json:"results_url"`
}

// MessageBatchRequestCounts counts a batch's requests by outcome. All are
// Processing until the whole batch ends; the counts always sum to the
// number of requests.
type MessageBatchRequestCounts struct {
	Processing int `json:"processing"`
	Succeeded  int `json:"succeeded"`
	Errored    int `json:"errored"`
	Canceled   int `json:"canceled"`
	Expired    int `json:"expired"`
}

// MessageBatchResultLine is one line of a message batch's results.
type MessageBatchResultLine struct {
	CustomID string             `json:"custom_id"`
	Result   MessageBatchResult `json:"result"`
}

// MessageBatchResult is the outcome of one request of a message batch: a
// Message (the body a Messages request gets online, a MessagesResponse)
// when Type is ResultSucceeded, an Error when ResultErrored, and neither
// when the request was canceled or expired.
type MessageBatchResult struct {
	Type    string              `json:"type"`
	Message json.RawMessage     `json:"message,omitempty"`
	Error   *AnthropicErrorBody `json:"error,omitempty"`
}

// MessageBatchDeleted is the answer to a DELETE of a message batch.
type MessageBatchDeleted struct {
	ID   string `json:"id"`
	Type string `json:"type"` // always TypeMessageBatchDeleted
}

// AnthropicPage is a page of an Anthropic list endpoint, newest first. A
// client asks for the next page with after_id=LastID while HasMore is set.
type AnthropicPage[T any] struct {
	Data    []T     `json:"data"`
	HasMore bool    `json:"has_more"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
}
