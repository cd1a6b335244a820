package chaos

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Endless is a handler that answers every request 200 and sends a body
// that never ends: an SSE stream of chat chunks when the request's JSON
// asks for "stream": true, otherwise one JSON string that never closes. It
// stops when the client goes away, or at its own bounds (Limit bytes,
// MaxDuration), so that a client without a body cap cannot make it run
// forever.
type Endless struct {
	// Limit bounds the bytes written per response; 0 means 1 GiB.
	Limit int64
	// MaxDuration bounds each response; 0 means 30 s.
	MaxDuration time.Duration

	served       atomic.Int64
	clientGone   atomic.Int64
	reachedLimit atomic.Int64
}

// Served is the number of responses begun.
func (e *Endless) Served() int64 { return e.served.Load() }

// ClientGone is the number of responses that ended because the client
// stopped reading.
func (e *Endless) ClientGone() int64 { return e.clientGone.Load() }

// ReachedLimit is the number of responses that ran to the handler's own
// bounds.
func (e *Endless) ReachedLimit() int64 { return e.reachedLimit.Load() }

// ServeHTTP implements http.Handler.
func (e *Endless) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.served.Add(1)
	limit, maxDuration := e.Limit, e.MaxDuration
	if limit <= 0 {
		limit = 1 << 30
	}
	if maxDuration <= 0 {
		maxDuration = 30 * time.Second
	}
	var req struct {
		Stream bool `json:"stream"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = json.Unmarshal(body, &req)

	var head, chunk []byte
	if req.Stream {
		w.Header().Set("Content-Type", "text/event-stream")
		chunk = []byte(`data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"` +
			strings.Repeat("x", 200) + `"}}]}` + "\n\n")
	} else {
		w.Header().Set("Content-Type", "application/json")
		head = []byte(`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"`)
		chunk = bytes.Repeat([]byte("y"), 4096)
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(maxDuration)
	written := int64(0)
	if len(head) > 0 {
		n, _ := w.Write(head)
		written += int64(n)
	}
	for written < limit && time.Now().Before(deadline) {
		n, err := w.Write(chunk)
		written += int64(n)
		if err == nil {
			err = rc.Flush()
		}
		if err != nil || r.Context().Err() != nil {
			e.clientGone.Add(1)
			return
		}
	}
	e.reachedLimit.Add(1)
}
