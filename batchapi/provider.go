package batchapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/internal/wire"
)

// provider speaks one provider's batch API. Its methods make HTTP requests
// and are called off the actors' goroutines.
type provider interface {
	// frame returns what a batch's upload holds around its requests and
	// between two of them.
	frame() (open, sep, close string)
	// encode is one request, of the given custom_id and body, as the
	// upload holds it; body reads the request's body back from it.
	encode(customID string, body []byte) ([]byte, error)
	body(piece []byte) ([]byte, error)
	// upload stores p's requests at the provider before the batch is
	// created, if the provider needs that (OpenAI's input file), setting
	// p.fileID.
	upload(ctx context.Context, p *part) error
	// create creates the batch of p and returns its ID.
	create(ctx context.Context, p *part) (string, error)
	// find looks for a batch of p that a create whose answer was lost
	// made, among those not in known; "" if there is none.
	find(ctx context.Context, p *part, known func(id string) bool) (string, error)
	// status is how batch id stands.
	status(ctx context.Context, id string) (batchStatus, error)
	// results reads the outcome of each request of an ended batch, by
	// custom_id, passing each to add.
	results(ctx context.Context, id string, st batchStatus, add func(customID string, r itemResult)) error
	// cancel asks the provider to cancel batch id.
	cancel(ctx context.Context, id string) error
}

// newProvider returns the batch API of the model's provider.
func newProvider(a *api, completionWindow string) (provider, error) {
	switch a.model.Provider() {
	case imodel.OpenAI:
		endpoint, err := a.openAIEndpoint()
		if err != nil {
			return nil, err
		}
		return &openAI{api: a, endpoint: endpoint, window: completionWindow}, nil
	case imodel.Anthropic:
		return &anthropic{api: a}, nil
	}
	return nil, &UnsupportedProviderError{Provider: a.model.Provider()}
}

// batchStatus is what a poll learns of a batch.
type batchStatus struct {
	state string // the provider's status
	ended bool
	// OpenAI: the result files, and why validation refused the batch.
	outputFile, errorFile string
	failures              []wire.BatchError
}

// itemOutcome is how one request of an ended batch ended.
type itemOutcome int

const (
	answered    itemOutcome = iota // the provider answered it, with status and body
	expired                        // the completion window ran out before it ran
	canceled                       // the batch was cancelled before it ran
	notExecuted                    // any other reason it did not run
)

// itemResult is the outcome of one request of an ended batch.
type itemResult struct {
	outcome itemOutcome
	status  int    // of an answer
	body    []byte // of an answer
	note    string // why it did not run
}

// anthropicCustomID is what Anthropic accepts as a custom_id.
var anthropicCustomID = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// customID is the name of the request with key in a batch of provider p:
// the key itself, unless the provider refuses it (Anthropic takes 1 to 64
// letters, digits, '_' and '-'), and then "k" and 63 hex digits of the
// key's SHA-256, which the journal's keys map back to the key.
func customID(p imodel.Provider, key string) string {
	if p != imodel.Anthropic || anthropicCustomID.MatchString(key) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "k" + hex.EncodeToString(sum[:])[:63]
}

// readLines calls line with each line of r, which may be long.
func readLines(r io.Reader, line func([]byte) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			if lerr := line(b); lerr != nil {
				return lerr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// lookBack is how long before its intent was recorded a batch found by
// find may have been created: the clocks of this machine and the
// provider's may differ.
const lookBack = 10 * time.Minute

// errNotCreated is what find says when no batch matches: the create that
// lost its answer did not take effect.
var errNotCreated = errors.New("batchapi: the batch was not created")

// download reads a result stream with the scrubbing of errors.
func (a *api) download(ctx context.Context, path string, each func([]byte) error) error {
	resp, err := a.send(ctx, http.MethodGet, path, "", nil, 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := readLines(resp.Body, each); err != nil {
		return a.scrub(&callError{op: "GET " + path, err: err})
	}
	return nil
}

// decodeLine decodes one JSON line of a result file.
func decodeLine(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("batchapi: a line of the batch's results does not decode: " + err.Error())
	}
	return nil
}
