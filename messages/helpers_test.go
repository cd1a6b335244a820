package messages_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// t0 is the creation time of every test request; at(d) is d after it.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

var testID = uuid.MustParse("6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7")

// kindError names its own kind through a Kind method.
type kindError struct {
	kind string
	err  error
}

func (e *kindError) Error() string {
	if e.err != nil {
		return e.kind + ": " + e.err.Error()
	}
	return e.kind
}
func (e *kindError) Kind() string  { return e.kind }
func (e *kindError) Unwrap() error { return e.err }

// detailError offers extra facts through a Details method.
type detailError struct {
	msg     string
	details map[string]string
}

func (e *detailError) Error() string              { return e.msg }
func (e *detailError) Details() map[string]string { return e.details }

// toCalling runs a fresh lifecycle of r through PENDING, QUEUED, PROCESSING
// and CALLING at 0, 10ms, 30ms and 35ms.
func toCalling(t *testing.T, r *messages.Request) *messages.Lifecycle {
	t.Helper()
	l := messages.NewLifecycle(testID, r, t0)
	l.Pending(at(0))
	l.Queue(at(10*time.Millisecond), 1, "")
	l.Process(at(30 * time.Millisecond))
	l.Call(at(35 * time.Millisecond))
	return l
}

// catchPanic runs f and returns what it panicked with, or nil.
func catchPanic(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

var errPlain = errors.New("plain failure")
