package sdktest

import (
	"testing"
	"time"

	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

// TestShouldRetryAgreesWithTheSDKs sends the same failing requests, with
// and without the provider's x-should-retry header, through each official
// SDK and through imodel, each allowed 3 attempts, and checks that both
// make the same number of attempts: the header overrides the rule by
// status in both directions, exactly as the SDKs read it.
func TestShouldRetryAgreesWithTheSDKs(t *testing.T) {
	const attempts = 3
	e := startSim(t, simulator.Config{FaultRetryAfter: time.Millisecond})
	rc := runtime.DefaultConfig()
	rc.RequestsPerInterval = runtime.Unlimited
	ex, err := runtime.Start(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Stop(ctx)
	retry := runtime.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond, Retryable: imodel.Retryable}
	newModel := func(cfg imodel.EndpointConfig) *imodel.Model {
		cfg.BaseURL, cfg.MaxAttempts, cfg.Retry = e.URL+"/v1", attempts, retry
		m, err := imodel.New(ex, cfg, imodel.WithHTTPClient(e.Client))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	oa := newModel(imodel.EndpointConfig{Provider: imodel.OpenAI, APIKey: openAIKey, Model: chatModel})
	an := newModel(imodel.EndpointConfig{Provider: imodel.Anthropic, APIKey: anthropicKey, Model: claudeModel})
	oaSDK := openAIClient(e, option.WithMaxRetries(attempts-1))
	anSDK := anthropicClient(e, anthropicoption.WithMaxRetries(attempts-1))

	type hooks = map[string]string
	const fault, should = simulator.HeaderFault, simulator.HeaderShouldRetry
	cases := []struct {
		name      string
		anthropic bool
		hooks     hooks
		invalid   bool // max_tokens 0: a 400
		want      int  // attempts
	}{
		{"openai 400", false, nil, true, 1},
		{"openai 400, x-should-retry true", false, hooks{should: "true"}, true, attempts},
		{"openai 503", false, hooks{fault: "503"}, false, attempts},
		{"openai 503, x-should-retry false", false, hooks{fault: "503", should: "false"}, false, 1},
		{"openai 429, x-should-retry false", false, hooks{fault: "429", should: "false"}, false, 1},
		{"openai quota 429, x-should-retry true", false, hooks{fault: "quota", should: "true"}, false, attempts},
		{"anthropic 529", true, hooks{fault: "529"}, false, attempts},
		{"anthropic 529, x-should-retry false", true, hooks{fault: "529", should: "false"}, false, 1},
		{"anthropic 400, x-should-retry true", true, hooks{should: "true"}, true, attempts},
	}
	count := func(call func()) int {
		before := e.Stats().Requests
		call()
		return int(e.Stats().Requests - before)
	}
	for _, tc := range cases {
		maxTokens := int64(2)
		if tc.invalid {
			maxTokens = 0
		}
		var sdk, ours int
		if tc.anthropic {
			sdk = count(func() {
				var opts []anthropicoption.RequestOption
				for k, v := range tc.hooks {
					opts = append(opts, anthropicoption.WithHeader(k, v))
				}
				p := messageParams("retry?", maxTokens)
				if _, err := anSDK.Messages.New(ctx, p, opts...); err == nil {
					t.Errorf("%s: the SDK's request succeeded", tc.name)
				}
			})
		} else {
			sdk = count(func() {
				var opts []option.RequestOption
				for k, v := range tc.hooks {
					opts = append(opts, option.WithHeader(k, v))
				}
				p := chatParams("retry?", 2)
				p.MaxTokens = openai.Int(maxTokens)
				if _, err := oaSDK.Chat.Completions.New(ctx, p, opts...); err == nil {
					t.Errorf("%s: the SDK's request succeeded", tc.name)
				}
			})
		}
		m := oa
		if tc.anthropic {
			m = an
		}
		ours = count(func() {
			var opts []imodel.CallOption
			for k, v := range tc.hooks {
				opts = append(opts, imodel.WithHeader(k, v))
			}
			payload := map[string]any{"messages": []map[string]any{{"role": "user", "content": "retry?"}}, "max_tokens": maxTokens}
			if _, err := m.Invoke(ctx, payload, opts...); err == nil {
				t.Errorf("%s: imodel's request succeeded", tc.name)
			}
		})
		if sdk != tc.want || ours != tc.want {
			t.Errorf("%s: the SDK made %d attempts, imodel %d; want %d", tc.name, sdk, ours, tc.want)
		}
	}
}
