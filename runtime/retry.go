package runtime

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// Backoff is a [RetryPolicy] of exponential backoff with full jitter: the
// delay before attempt n+1 is drawn uniformly from [0, min(Max, Initial ×
// Multiplier^(n-1))). A server's own minimum (an error implementing
// messages.RetryAfterError) is never undercut.
type Backoff struct {
	Initial    time.Duration // the first ceiling; default 500ms
	Max        time.Duration // the largest ceiling; default 30s
	Multiplier float64       // growth per attempt; default 2
	// Retryable tells which errors are worth another attempt; nil means all
	// but cancellations and invalid requests.
	Retryable func(error) bool
}

// Backoff implements RetryPolicy.
func (b Backoff) Backoff(attempt int, err error) (time.Duration, bool) {
	retryable := b.Retryable
	if retryable == nil {
		retryable = defaultRetryable
	}
	if !retryable(err) {
		return 0, false
	}
	initial, ceiling, mult := b.Initial, b.Max, b.Multiplier
	if initial <= 0 {
		initial = 500 * time.Millisecond
	}
	if ceiling <= 0 {
		ceiling = 30 * time.Second
	}
	if mult < 1 {
		mult = 2
	}
	limit := float64(initial)
	for i := 1; i < attempt && limit < float64(ceiling); i++ {
		limit *= mult
	}
	limit = min(limit, float64(ceiling))
	delay := time.Duration(rand.Float64() * limit)
	var ra messages.RetryAfterError
	if errors.As(err, &ra) && ra.RetryAfter() > delay {
		delay = ra.RetryAfter()
	}
	return delay, true
}

func defaultRetryable(err error) bool {
	return !errors.Is(err, messages.ErrCancelled) && !errors.Is(err, messages.ErrInvalidRequest) &&
		!errors.Is(err, messages.ErrStopped)
}
