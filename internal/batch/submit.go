package batch

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
)

// submit submits one line; a line that cannot be sent becomes a FAILED
// result at once. It reports whether the executor took it.
func (r *runner) submit(ctx context.Context, index int, ln line) bool {
	rw := &row{key: ln.id.key, hash: ln.id.hash, id: ln.id.id}
	if ln.parsed != nil {
		rw.metadata = ln.parsed.metadata
	}
	fail := func(kind, format string, args ...any) {
		res := &Result{Index: index, Key: rw.key, ContentHash: rw.hash, ID: rw.id, Status: messages.StatusFailed.String(),
			Error:    &ResultError{Kind: kind, Message: fmt.Sprintf("line %d: ", index+1) + fmt.Sprintf(format, args...)},
			Metadata: rw.metadata}
		r.reader <- item{index: index, res: res}
	}
	switch {
	case ln.invalid != nil:
		fail("invalid_input", "%v", ln.invalid)
		return false
	case ln.dupID != nil:
		// The input was not scanned first: the first line with the id
		// keeps it, this one fails under a key of its own.
		fail("invalid_input", "%v", ln.dupID)
		return false
	}
	r.mu.Lock()
	r.rows[index] = rw
	r.mu.Unlock()
	// The request's life is not bound to ctx: an interrupt lets in-flight
	// calls finish, and cancels the others itself.
	h, err := r.eng.Submit(context.WithoutCancel(ctx), ln.parsed.body, imodel.WithMetadata(map[string]string{indexKey: strconv.Itoa(index)}))
	if err != nil {
		r.mu.Lock()
		delete(r.rows, index)
		r.mu.Unlock()
		var tle *messages.TokenLimitError
		switch {
		case errors.As(err, &tle):
			fail("too_many_tokens", "estimated %d tokens exceed the token limit of %d a minute (TPM): the request could never run", tle.Tokens, tle.Burst)
		default:
			fail("invalid_request", "%v", err)
		}
		return false
	}
	r.mu.Lock()
	rw.handle = h
	r.mu.Unlock()
	return true
}
