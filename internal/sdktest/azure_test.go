package sdktest

import (
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/runtime"
	"github.com/lionactor/lionactor/simulator"
)

const (
	azureDeployment = "gpt-4o-mini-prod"
	azureVersion    = "2024-10-21"
)

// TestAzureOpenAIGo: openai-go's Azure options (endpoint and version, the
// api-key, plain HTTP allowed on loopback) reach the simulator's Azure
// paths for chat, streams and embeddings; and imodel's Azure model sends
// the same path, query and key header as the SDK.
func TestAzureOpenAIGo(t *testing.T) {
	e := startSim(t, simulator.Config{EmbeddingDims: 4})
	// The SDK sends plain-HTTP Azure requests through a transport of its
	// own, cloned from this one: without keep-alives, no connection of it
	// outlives the test.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	c := openai.NewClient(
		azure.WithEndpoint(e.URL, azureVersion), azure.WithAPIKey(azureKey), azure.WithUnsafeAllowHTTP(),
		option.WithHTTPClient(hc), option.WithMaxRetries(0),
	)
	params := chatParams("Hello Azure", 5)
	params.Model = azureDeployment // the SDK puts the model in the path
	resp, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	p := promptTokens("Hello Azure")
	if resp.Model != azureDeployment || resp.Choices[0].Message.Content == "" || resp.Usage.PromptTokens != p || resp.Usage.CompletionTokens != 5 {
		t.Errorf("reply %s", resp.RawJSON())
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil || acc.Choices[0].Message.Content != resp.Choices[0].Message.Content || acc.Usage.TotalTokens != resp.Usage.TotalTokens {
		t.Errorf("stream: %q, usage %+v, %v", acc.Choices[0].Message.Content, acc.Usage, err)
	}
	stream.Close()
	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "emb-deployment", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}}})
	if err != nil || len(emb.Data) != 2 || len(emb.Data[1].Embedding) != 4 {
		t.Fatalf("embeddings: %v %v", emb, err)
	}
	sdk := e.Requests()
	if len(sdk) != 3 {
		t.Fatalf("%d requests", len(sdk))
	}
	for i, want := range []string{"/openai/deployments/" + azureDeployment + "/chat/completions", "/openai/deployments/" + azureDeployment + "/chat/completions", "/openai/deployments/emb-deployment/embeddings"} {
		r := sdk[i]
		if r.Path != want || r.Query != "api-version="+azureVersion || r.Header.Get("Api-Key") != azureKey || r.Header.Get("Authorization") != "" {
			t.Errorf("SDK request %d: %s?%s, api-key %q, authorization %q", i, r.Path, r.Query, r.Header.Get("Api-Key"), r.Header.Get("Authorization"))
		}
	}

	// imodel, as a client of the same deployment.
	ex, err := runtime.Start(runtime.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Stop(ctx)
	m, err := imodel.New(ex, imodel.EndpointConfig{Provider: imodel.Azure, BaseURL: e.URL, Deployment: azureDeployment,
		APIVersion: azureVersion, APIKey: azureKey}, imodel.WithHTTPClient(e.Client))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	reply, err := m.Chat(ctx, imodel.ChatRequest{System: "Be brief.", Messages: []imodel.Message{{Role: "user", Content: "Hello Azure"}}, MaxTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	if reply.Text != resp.Choices[0].Message.Content || int64(reply.Usage.TotalTokens) != resp.Usage.TotalTokens {
		t.Errorf("imodel's reply %q (%d tokens), the SDK's %q (%d)", reply.Text, reply.Usage.TotalTokens, resp.Choices[0].Message.Content, resp.Usage.TotalTokens)
	}
	ours := e.Requests()[3]
	if ours.Path != sdk[0].Path || ours.Query != sdk[0].Query || ours.Header.Get("Api-Key") != sdk[0].Header.Get("Api-Key") || ours.Header.Get("Authorization") != "" {
		t.Errorf("imodel sent %s?%s with api-key %q; the SDK %s?%s", ours.Path, ours.Query, ours.Header.Get("Api-Key"), sdk[0].Path, sdk[0].Query)
	}
}
