package messages

import (
	"encoding/json"
	"fmt"
)

// RequestStatus is the stage of a request's life. A request moves forward
// through PENDING, QUEUED, PROCESSING and CALLING (returning to QUEUED for a
// retry) and ends in exactly one of the terminal states COMPLETED, FAILED or
// CANCELLED.
type RequestStatus uint8

// The request states, in the order a successful request passes them.
const (
	// StatusPending: accepted by the executor, not yet in its queue.
	StatusPending RequestStatus = iota + 1
	// StatusQueued: waiting in the FIFO queue (or waiting out a retry backoff).
	StatusQueued
	// StatusProcessing: a caller is reserved and the limiter's permit is awaited.
	StatusProcessing
	// StatusCalling: the call is running.
	StatusCalling
	// StatusCompleted: the call succeeded; the event carries the response.
	StatusCompleted
	// StatusFailed: the call failed for good; the event carries the error.
	StatusFailed
	// StatusCancelled: the request was cancelled or the executor stopped.
	StatusCancelled
)

var statusNames = [...]string{
	StatusPending:    "PENDING",
	StatusQueued:     "QUEUED",
	StatusProcessing: "PROCESSING",
	StatusCalling:    "CALLING",
	StatusCompleted:  "COMPLETED",
	StatusFailed:     "FAILED",
	StatusCancelled:  "CANCELLED",
}

// String returns the state's name in capitals, for example "QUEUED".
func (s RequestStatus) String() string {
	if s == 0 || int(s) >= len(statusNames) {
		return fmt.Sprintf("RequestStatus(%d)", uint8(s))
	}
	return statusNames[s]
}

// Terminal reports whether s is a final state: COMPLETED, FAILED or CANCELLED.
func (s RequestStatus) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// ParseStatus returns the state named name, as String prints it.
func ParseStatus(name string) (RequestStatus, error) {
	for s := StatusPending; s <= StatusCancelled; s++ {
		if statusNames[s] == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("messages: unknown request status %q", name)
}

// MarshalJSON encodes the state as its name.
func (s RequestStatus) MarshalJSON() ([]byte, error) {
	if s == 0 || int(s) >= len(statusNames) {
		return nil, fmt.Errorf("messages: cannot marshal %v", s)
	}
	return json.Marshal(statusNames[s])
}

// UnmarshalJSON decodes a state from its name.
func (s *RequestStatus) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	v, err := ParseStatus(name)
	if err != nil {
		return err
	}
	*s = v
	return nil
}
