package messages_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

func TestConfigError(t *testing.T) {
	var err error = &messages.ConfigError{Field: "Concurrency", Reason: "must be at least 1"}
	if !errors.Is(err, messages.ErrInvalidConfig) {
		t.Error("ConfigError does not match ErrInvalidConfig")
	}
	if errors.Is(err, messages.ErrInvalidRequest) {
		t.Error("ConfigError matches ErrInvalidRequest")
	}
	for _, want := range []string{"Concurrency", "must be at least 1", "invalid config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not contain %q", err.Error(), want)
		}
	}
	wrapped := fmt.Errorf("building executor: %w", err)
	var ce *messages.ConfigError
	if !errors.As(wrapped, &ce) || ce.Field != "Concurrency" {
		t.Errorf("errors.As through a wrap = %v, field %q", ce, fieldOf(ce))
	}
	if !errors.Is(wrapped, messages.ErrInvalidConfig) {
		t.Error("wrapped ConfigError does not match ErrInvalidConfig")
	}
}

func fieldOf(ce *messages.ConfigError) string {
	if ce == nil {
		return ""
	}
	return ce.Field
}

func TestTokenLimitError(t *testing.T) {
	var err error = &messages.TokenLimitError{Tokens: 5000, Burst: 4096}
	if !errors.Is(err, messages.ErrTokensExceedBurst) {
		t.Error("TokenLimitError does not match ErrTokensExceedBurst")
	}
	for _, want := range []string{"5000", "4096"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not contain %q", err.Error(), want)
		}
	}
	var tl *messages.TokenLimitError
	if !errors.As(fmt.Errorf("submit: %w", err), &tl) || tl.Tokens != 5000 || tl.Burst != 4096 {
		t.Errorf("errors.As = %+v", tl)
	}
	if strings.Contains(err.Error(), "at least") {
		t.Errorf("message %q says \"at least\" of a counted estimate", err.Error())
	}
	bound := &messages.TokenLimitError{Tokens: 245760, Burst: 100000, AtLeast: true}
	if want := "needs at least 245760 tokens"; !strings.Contains(bound.Error(), want) {
		t.Errorf("message %q does not say %q", bound.Error(), want)
	}
}

func TestCallerCrashError(t *testing.T) {
	var err error = &messages.CallerCrashError{Panic: "index out of range"}
	if !errors.Is(err, messages.ErrCallerCrashed) {
		t.Error("CallerCrashError does not match ErrCallerCrashed")
	}
	if !strings.Contains(err.Error(), "index out of range") {
		t.Errorf("message %q does not name the panic value", err.Error())
	}
	var cc *messages.CallerCrashError
	if !errors.As(fmt.Errorf("attempt 1: %w", err), &cc) || cc.Panic != "index out of range" {
		t.Errorf("errors.As = %+v", cc)
	}
}

func TestSentinelsAreDistinct(t *testing.T) {
	all := []error{
		messages.ErrInvalidConfig, messages.ErrInvalidRequest, messages.ErrQueueFull, messages.ErrStopped,
		messages.ErrCancelled, messages.ErrTimeout, messages.ErrCallerCrashed, messages.ErrRestartStorm,
		messages.ErrTokensExceedBurst,
	}
	for i, a := range all {
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v matches %v", a, b)
			}
		}
	}
}
