package messages_test

import (
	"encoding/json"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

func TestRequestStatusString(t *testing.T) {
	tests := []struct {
		s    messages.RequestStatus
		want string
	}{
		{messages.StatusPending, "PENDING"},
		{messages.StatusQueued, "QUEUED"},
		{messages.StatusProcessing, "PROCESSING"},
		{messages.StatusCalling, "CALLING"},
		{messages.StatusCompleted, "COMPLETED"},
		{messages.StatusFailed, "FAILED"},
		{messages.StatusCancelled, "CANCELLED"},
		{0, "RequestStatus(0)"},
		{messages.StatusCancelled + 1, "RequestStatus(8)"},
		{255, "RequestStatus(255)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("RequestStatus(%d).String() = %q, want %q", uint8(tt.s), got, tt.want)
		}
	}
}

func TestRequestStatusTerminal(t *testing.T) {
	tests := []struct {
		s    messages.RequestStatus
		want bool
	}{
		{0, false},
		{messages.StatusPending, false},
		{messages.StatusQueued, false},
		{messages.StatusProcessing, false},
		{messages.StatusCalling, false},
		{messages.StatusCompleted, true},
		{messages.StatusFailed, true},
		{messages.StatusCancelled, true},
		{messages.StatusCancelled + 1, false},
	}
	for _, tt := range tests {
		if got := tt.s.Terminal(); got != tt.want {
			t.Errorf("%v.Terminal() = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func allStatuses() []messages.RequestStatus {
	return []messages.RequestStatus{
		messages.StatusPending, messages.StatusQueued, messages.StatusProcessing, messages.StatusCalling,
		messages.StatusCompleted, messages.StatusFailed, messages.StatusCancelled,
	}
}

func TestParseStatusRoundTrip(t *testing.T) {
	for _, s := range allStatuses() {
		got, err := messages.ParseStatus(s.String())
		if err != nil || got != s {
			t.Errorf("ParseStatus(%q) = %v, %v; want %v, nil", s.String(), got, err, s)
		}
	}
}

func TestParseStatusUnknown(t *testing.T) {
	for _, name := range []string{"", "queued", "Queued", "DONE", "RequestStatus(0)", " QUEUED"} {
		got, err := messages.ParseStatus(name)
		if err == nil {
			t.Errorf("ParseStatus(%q) = %v, nil; want an error", name, got)
		}
		if got != 0 {
			t.Errorf("ParseStatus(%q) returned %v with its error; want 0", name, got)
		}
	}
}

func TestRequestStatusJSONRoundTrip(t *testing.T) {
	for _, s := range allStatuses() {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("Marshal(%v): %v", s, err)
		}
		if want := `"` + s.String() + `"`; string(b) != want {
			t.Errorf("Marshal(%v) = %s, want %s", s, b, want)
		}
		var back messages.RequestStatus
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if back != s {
			t.Errorf("Unmarshal(%s) = %v, want %v", b, back, s)
		}
	}
}

func TestRequestStatusJSONInStruct(t *testing.T) {
	type wrapper struct {
		S messages.RequestStatus `json:"s"`
	}
	b, err := json.Marshal(wrapper{S: messages.StatusFailed})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"s":"FAILED"}` {
		t.Errorf("got %s", b)
	}
	var w wrapper
	if err := json.Unmarshal([]byte(`{"s":"CALLING"}`), &w); err != nil {
		t.Fatal(err)
	}
	if w.S != messages.StatusCalling {
		t.Errorf("got %v, want CALLING", w.S)
	}
}

func TestRequestStatusUnmarshalInvalid(t *testing.T) {
	for _, in := range []string{`"BOGUS"`, `"queued"`, `""`, `null`, `3`, `{}`, `"QUEUED`} {
		s := messages.StatusQueued
		if err := json.Unmarshal([]byte(in), &s); err == nil {
			t.Errorf("Unmarshal(%s) succeeded with %v; want an error", in, s)
		}
		if s != messages.StatusQueued {
			t.Errorf("failed Unmarshal(%s) changed the value to %v", in, s)
		}
	}
}

func TestRequestStatusMarshalOutOfRange(t *testing.T) {
	for _, s := range []messages.RequestStatus{0, messages.StatusCancelled + 1, 255} {
		if b, err := json.Marshal(s); err == nil {
			t.Errorf("Marshal(RequestStatus(%d)) = %s, want an error", uint8(s), b)
		}
	}
}
