package chaos

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// headerIndex carries a request's index in the run on each of its HTTP
// attempts, so that the transport can tell which request an attempt was.
const headerIndex = "X-Chaos-Index"

// transport counts the HTTP attempts of a run as the client sees them: how
// many are open, and how each ended (a timeout, a stop, a broken
// connection, a body cut short).
type transport struct {
	base *http.Transport

	inFlight  atomic.Int64
	attempts  atomic.Int64
	timeouts  atomic.Int64 // ended by the attempt's timeout
	stopped   atomic.Int64 // ended by an executor stop (cause ErrStopped)
	cancelled atomic.Int64 // ended by another cancellation
	connFails atomic.Int64 // no response: the connection failed
	cutBodies atomic.Int64 // a response whose body broke off

	seq atomic.Uint64 // numbers the attempts, in headerAttempt

	mu     sync.Mutex
	last   map[int]attemptEnd   // the latest attempt of each request, by index
	closed map[uint64]time.Time // when the client was done with each attempt
}

// attemptEnd is how one HTTP attempt ended.
type attemptEnd struct {
	ended bool
	cause error // the context's cause, when its context ended it
}

func newTransport(concurrency int) *transport {
	return &transport{
		base: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConns:        max(100, concurrency),
			MaxIdleConnsPerHost: max(2, concurrency),
			IdleConnTimeout:     30 * time.Second,
		},
		last:   make(map[int]attemptEnd),
		closed: make(map[uint64]time.Time),
	}
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	idx := -1
	if v := req.Header.Get(headerIndex); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			idx = n
		}
	}
	n := t.seq.Add(1)
	req = req.Clone(req.Context()) // a RoundTripper must not change its request
	req.Header.Set(headerAttempt, strconv.FormatUint(n, 10))
	t.attempts.Add(1)
	t.inFlight.Add(1)
	t.mu.Lock()
	t.last[idx] = attemptEnd{}
	t.mu.Unlock()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.end(req.Context(), idx, n, true, false)
		return nil, err
	}
	resp.Body = &countedBody{ReadCloser: resp.Body, t: t, ctx: req.Context(), idx: idx, n: n}
	return resp, nil
}

// end records the end of attempt n of request idx. It runs once the
// connection is closed or back in the idle pool, before the caller can
// start another attempt.
func (t *transport) end(ctx context.Context, idx int, n uint64, noResponse, cut bool) {
	now := time.Now()
	var cause error
	if ctx.Err() != nil {
		cause = context.Cause(ctx)
	}
	switch {
	case cause != nil && errors.Is(cause, messages.ErrTimeout):
		t.timeouts.Add(1)
	case cause != nil && errors.Is(cause, messages.ErrStopped):
		t.stopped.Add(1)
	case cause != nil:
		t.cancelled.Add(1)
	case noResponse:
		t.connFails.Add(1)
	case cut:
		t.cutBodies.Add(1)
	}
	t.mu.Lock()
	t.last[idx] = attemptEnd{ended: true, cause: cause}
	t.closed[n] = now
	t.mu.Unlock()
	t.inFlight.Add(-1)
}

// closedAt returns when the client was done with each attempt.
func (t *transport) closedAt() map[uint64]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.closed)
}

// lastAttempt returns how the latest attempt of request idx ended, and
// whether it had one.
func (t *transport) lastAttempt(idx int) (attemptEnd, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.last[idx]
	return a, ok
}

// countedBody ends its attempt when it is closed, noting whether a read
// failed before the end of the body.
type countedBody struct {
	io.ReadCloser
	t       *transport
	ctx     context.Context
	idx     int
	n       uint64
	readErr bool
	once    sync.Once
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.readErr = true
	}
	return n, err
}

func (b *countedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.t.end(b.ctx, b.idx, b.n, false, b.readErr) })
	return err
}
