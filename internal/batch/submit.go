package batch

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
)

// submitOutcome is what became of a line submit was given.
type submitOutcome int

const (
	submitted submitOutcome = iota // the executor took it
	failed                         // it became a FAILED result at once
	notSent                        // the run was interrupted while it waited for room under the spend cap
	capped                         // the spend cap has no room for it, nor will have: the run stops here
)

// submit submits one line; a line that cannot be sent becomes a FAILED
// result at once. Under a spend cap with no room for the request, it waits
// while requests in flight may make room.
func (r *runner) submit(ctx context.Context, index int, ln line) submitOutcome {
	rw := &row{key: ln.id.key, hash: ln.id.hash, id: ln.id.id}
	if ln.parsed != nil {
		rw.metadata = ln.parsed.metadata
		rw.model = r.cfg.modelOf(ln.parsed.body)
	}
	fail := func(kind, format string, args ...any) {
		res := &Result{Index: index, Key: rw.key, ContentHash: rw.hash, ID: rw.id, Status: messages.StatusFailed.String(),
			Error:    &ResultError{Kind: kind, Message: fmt.Sprintf("line %d: ", index+1) + fmt.Sprintf(format, args...)},
			Metadata: rw.metadata}
		r.reader <- item{index: index, res: res}
	}
	switch {
	case ln.invalid != nil:
		fail(inputKind(ln.invalid), "%v", ln.invalid)
		return failed
	case ln.dupID != nil:
		// The input was not scanned first: the first line with the id
		// keeps it, this one fails under a key of its own.
		fail("invalid_input", "%v", ln.dupID)
		return failed
	}
	for {
		r.mu.Lock()
		r.rows[index] = rw
		r.mu.Unlock()
		// The request's life is not bound to ctx: an interrupt lets
		// in-flight calls finish, and cancels the others itself.
		h, err := r.eng.Submit(context.WithoutCancel(ctx), ln.parsed.body, imodel.WithMetadata(map[string]string{indexKey: strconv.Itoa(index)}))
		if err == nil {
			r.mu.Lock()
			rw.handle = h
			r.mu.Unlock()
			return submitted
		}
		r.mu.Lock()
		delete(r.rows, index)
		r.mu.Unlock()
		var (
			tle *messages.TokenLimitError
			sce *messages.SpendCapError
		)
		switch {
		case errors.As(err, &sce):
			// Requests in flight may cost less than their estimates and
			// make room; once none is left, nothing will.
			switch err := r.spendCap.Wait(ctx, sce.Estimate); {
			case err == nil:
				continue
			case errors.Is(err, messages.ErrSpendCap):
				return capped
			default:
				return notSent
			}
		case errors.As(err, &tle):
			// A request refused by its length alone was not counted:
			// its Tokens is a lower bound.
			atLeast := ""
			if tle.AtLeast {
				atLeast = "at least "
			}
			fail("too_many_tokens", "estimated %s%d tokens exceed the token limit of %d a minute (TPM): the request could never run", atLeast, tle.Tokens, tle.Burst)
		case errors.Is(err, messages.ErrPriceUnknown):
			fail("price_unknown", "no price for model %q (--max-cost needs every request's price): give it with --prices", rw.model)
		default:
			fail("invalid_request", "%v", err)
		}
		return failed
	}
}
