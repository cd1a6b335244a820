package simulator

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/lionactor/lionactor/messages"
)

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		cfg   Config
		field string
	}{
		{Config{RequestsPerMinute: -1}, "RequestsPerMinute"},
		{Config{TokensPerMinute: -1}, "TokensPerMinute"},
		{Config{RequestsPerMinute: 10, RequestBurst: -1}, "RequestBurst"},
		{Config{TokensPerMinute: 10, TokenBurst: -1}, "TokenBurst"},
		{Config{RequestsPerMinute: 10, RequestBurst: 11}, "RequestBurst"},
		{Config{TokensPerMinute: 100, TokenBurst: 101}, "TokenBurst"},
		{Config{RequestBurst: 1}, "RequestBurst"}, // a burst without a limit
		{Config{TokenBurst: 1}, "TokenBurst"},
		{Config{CompletionTokens: -1}, "CompletionTokens"},
		{Config{ReasoningTokens: -1}, "ReasoningTokens"},
		{Config{EmbeddingDims: -1}, "EmbeddingDims"},
		{Config{MaxBodyBytes: -1}, "MaxBodyBytes"},
		{Config{Latency: -time.Millisecond}, "Latency"},
		{Config{SlowDelay: -time.Millisecond}, "SlowDelay"},
		{Config{FaultRetryAfter: -time.Millisecond}, "FaultRetryAfter"},
		{Config{Latency: time.Millisecond, LatencyJitter: 2 * time.Millisecond}, "LatencyJitter"},
		{Config{Faults: Faults{ServerError: 1.5}}, "Faults.ServerError"},
		{Config{Faults: Faults{Truncate: -0.1}}, "Faults.Truncate"},
		{Config{Faults: Faults{Slow: math.NaN()}}, "Faults.Slow"},
		{Config{Faults: Faults{Reset: 0.6, Malformed: 0.6}}, "Faults"},
		{Config{Keys: []string{"sk-a", ""}}, "Keys[1]"},
		{Config{QuotaExhaustedKeys: []string{""}}, "QuotaExhaustedKeys[0]"},
	}
	for _, tc := range cases {
		_, err := New(tc.cfg)
		var ce *messages.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, messages.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want a ConfigError for %s", tc.cfg, err, tc.field)
			continue
		}
		if !strings.Contains(err.Error(), ": "+tc.field+": ") || !strings.Contains(ce.Reason, ", got ") {
			t.Errorf("message %q does not name %s and the value given", err, tc.field)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	s, err := New(Config{Faults: Faults{ServerError: 0.5, Unavailable: 0.5}})
	if err != nil {
		t.Fatalf("rates summing to 1: %v", err)
	}
	c := s.cfg
	if c.CompletionTokens != DefaultCompletionTokens || c.EmbeddingDims != DefaultEmbeddingDims ||
		c.MaxBodyBytes != DefaultMaxBodyBytes || c.SlowDelay != DefaultSlowDelay || c.FaultRetryAfter != DefaultFaultRetryAfter {
		t.Errorf("defaults not applied: %+v", c)
	}
}
