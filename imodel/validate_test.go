package imodel

import (
	"errors"
	"testing"

	"github.com/lionactor/lionactor/messages"
)

// Validate refuses what New refuses, with the same field, and needs no
// executor.
func TestValidateAgreesWithNew(t *testing.T) {
	ex := startExecutor(t, nil)
	for _, cfg := range []EndpointConfig{
		{Provider: "azure-typo"},
		{Provider: OpenAICompatible},
		{Provider: OpenAI, APIKey: testKey, BaseURL: "not a url"},
		{Provider: OpenAI, APIKeyEnv: "IMODEL_TEST_UNSET_KEY"},
		{Provider: Generic, BaseURL: "http://127.0.0.1:1", Path: "x"},
	} {
		err := cfg.Validate()
		var ce *messages.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("Validate(%+v) = %v, want a *messages.ConfigError", cfg, err)
			continue
		}
		_, newErr := New(ex, cfg)
		var newCE *messages.ConfigError
		if !errors.As(newErr, &newCE) || newCE.Field != ce.Field {
			t.Errorf("Validate says %v, New says %v", err, newErr)
		}
	}
	if err := (EndpointConfig{Provider: OpenAICompatible, BaseURL: "http://127.0.0.1:1/v1"}).Validate(); err != nil {
		t.Errorf("a valid config: %v", err)
	}
}
