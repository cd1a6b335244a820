package simulator

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	anthropicsdk "github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	openaioption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/lionactor/lionactor/internal/wire"
)

// The official SDKs are clients of the batch APIs here, to show that the
// simulator's shapes are those the providers' own clients decode.

// sdkHTTPClient returns an HTTP client whose idle connections are closed
// when the test ends.
func sdkHTTPClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func TestOpenAISDKBatches(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: time.Minute, Keys: []string{"sk-sdk"}})
	client := openai.NewClient(
		openaioption.WithBaseURL(ts.url+"/v1/"),
		openaioption.WithAPIKey("sk-sdk"),
		openaioption.WithHTTPClient(sdkHTTPClient(t)),
		openaioption.WithMaxRetries(0),
	)
	ctx := context.Background()

	data := jsonl(t, chatLines(4)...)
	f, err := client.Files.New(ctx, openai.FileNewParams{
		File:    openai.File(bytes.NewReader(data), "requests.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch,
	})
	if err != nil {
		t.Fatalf("Files.New: %v", err)
	}
	if f.Purpose != openai.FileObjectPurposeBatch || f.Bytes != int64(len(data)) || f.Filename != "requests.jsonl" || !f.JSON.ExpiresAt.Valid() {
		t.Errorf("file %+v", f)
	}
	if got, err := client.Files.Get(ctx, f.ID); err != nil || got.ID != f.ID {
		t.Errorf("Files.Get: %+v, %v", got, err)
	}

	b, err := client.Batches.New(ctx, openai.BatchNewParams{
		InputFileID:      f.ID,
		Endpoint:         openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
		Metadata:         shared.Metadata{"run": "sdk"},
	})
	if err != nil {
		t.Fatalf("Batches.New: %v", err)
	}
	if b.Status != openai.BatchStatusValidating || b.Metadata["run"] != "sdk" || b.InputFileID != f.ID || b.JSON.CompletedAt.Valid() {
		t.Errorf("created %+v", b)
	}
	second, err := client.Batches.New(ctx, openai.BatchNewParams{
		InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Batches.Cancel(ctx, second.ID)
	if err != nil || c.Status != openai.BatchStatusCancelling || c.CancellingAt == 0 {
		t.Errorf("Batches.Cancel: %+v, %v", c, err)
	}

	ts.AdvanceBatches(time.Minute)
	b, err = client.Batches.Get(ctx, b.ID)
	if err != nil {
		t.Fatalf("Batches.Get: %v", err)
	}
	if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Total != 4 || b.RequestCounts.Completed != 4 || b.OutputFileID == "" ||
		b.JSON.ErrorFileID.Valid() || b.Usage.TotalTokens == 0 || b.CompletedAt == 0 {
		t.Fatalf("completed %+v", b)
	}

	var listed []string
	pager := client.Batches.ListAutoPaging(ctx, openai.BatchListParams{Limit: openai.Int(1)})
	for pager.Next() {
		listed = append(listed, pager.Current().ID)
	}
	if err := pager.Err(); err != nil || !slices.Equal(listed, []string{second.ID, b.ID}) {
		t.Errorf("Batches.ListAutoPaging: %v, %v", listed, err)
	}

	resp, err := client.Files.Content(ctx, b.OutputFileID)
	if err != nil {
		t.Fatalf("Files.Content: %v", err)
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	// The SDK has no type for the lines of a result file; each line's body
	// is a chat completion, which it decodes.
	for _, line := range decodeJSONL[wire.BatchResponseLine](t, out) {
		var cc openai.ChatCompletion
		if err := cc.UnmarshalJSON(line.Response.Body); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, line.CustomID)
		if line.Response.StatusCode != 200 || cc.Choices[0].Message.Content == "" || cc.Usage.TotalTokens == 0 || !cc.JSON.SystemFingerprint.Valid() {
			t.Errorf("output line %+v", line)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, customIDs(4)) {
		t.Errorf("custom IDs %v", ids)
	}

	var files []string
	fpager := client.Files.ListAutoPaging(ctx, openai.FileListParams{Purpose: openai.String("batch")})
	for fpager.Next() {
		files = append(files, fpager.Current().ID)
	}
	if err := fpager.Err(); err != nil || !slices.Equal(files, []string{f.ID}) {
		t.Errorf("Files.ListAutoPaging: %v, %v", files, err)
	}
	if d, err := client.Files.Delete(ctx, f.ID); err != nil || !d.Deleted {
		t.Errorf("Files.Delete: %+v, %v", d, err)
	}
	var apiErr *openai.Error
	if _, err := client.Files.Get(ctx, f.ID); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Errorf("Files.Get of a deleted file: %v", err)
	}
}

func TestAnthropicSDKMessageBatches(t *testing.T) {
	ts := startBatches(t, Config{BatchDelay: time.Minute, Keys: []string{"sk-ant-sdk"}, BatchFaults: BatchFaults{ServerError: 0.5}, Seed: 2})
	client := anthropicsdk.NewClient(
		anthropicoption.WithoutEnvironmentDefaults(),
		anthropicoption.WithBaseURL(ts.url+"/"),
		anthropicoption.WithAPIKey("sk-ant-sdk"),
		// This SDK sends its key as a bearer token; x-api-key carries it
		// as well, so that the test is about the batch routes rather than
		// about which header a key arrives in.
		anthropicoption.WithHeader("x-api-key", "sk-ant-sdk"),
		anthropicoption.WithHTTPClient(sdkHTTPClient(t)),
		anthropicoption.WithMaxRetries(0),
	)
	ctx := context.Background()
	var reqs []anthropicsdk.MessageBatchNewParamsRequest
	for _, id := range []string{"first", "second", "third", "fourth"} {
		reqs = append(reqs, anthropicsdk.MessageBatchNewParamsRequest{
			CustomID: id,
			Params: anthropicsdk.MessageBatchNewParamsRequestParams{
				Model:     "claude-sonnet-4-5",
				MaxTokens: 20,
				Messages:  []anthropicsdk.MessageParam{anthropicsdk.NewUserMessage(anthropicsdk.NewTextBlock("Hello, " + id))},
			},
		})
	}
	b, err := client.Messages.Batches.New(ctx, anthropicsdk.MessageBatchNewParams{Requests: reqs})
	if err != nil {
		t.Fatalf("Batches.New: %v", err)
	}
	if b.ProcessingStatus != anthropicsdk.MessageBatchProcessingStatusInProgress || b.RequestCounts.Processing != 4 || !b.EndedAt.IsZero() || b.ResultsURL != "" {
		t.Errorf("created %+v", b)
	}
	other, err := client.Messages.Batches.New(ctx, anthropicsdk.MessageBatchNewParams{Requests: reqs[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := client.Messages.Batches.Cancel(ctx, other.ID, anthropicsdk.MessageBatchCancelParams{}); err != nil || c.ProcessingStatus != anthropicsdk.MessageBatchProcessingStatusCanceling {
		t.Errorf("Batches.Cancel: %+v, %v", c, err)
	}

	ts.AdvanceBatches(time.Minute)
	b, err = client.Messages.Batches.Get(ctx, b.ID, anthropicsdk.MessageBatchGetParams{})
	if err != nil {
		t.Fatalf("Batches.Get: %v", err)
	}
	n := b.RequestCounts
	if b.ProcessingStatus != anthropicsdk.MessageBatchProcessingStatusEnded || n.Succeeded+n.Errored != 4 || n.Errored == 0 || n.Succeeded == 0 || b.EndedAt.IsZero() || b.ResultsURL == "" {
		t.Fatalf("ended %+v", b)
	}

	var listed []string
	pager := client.Messages.Batches.ListAutoPaging(ctx, anthropicsdk.MessageBatchListParams{Limit: anthropicsdk.Int(1)})
	for pager.Next() {
		listed = append(listed, pager.Current().ID)
	}
	if err := pager.Err(); err != nil || !slices.Equal(listed, []string{other.ID, b.ID}) {
		t.Errorf("Batches.ListAutoPaging: %v, %v", listed, err)
	}

	stream := client.Messages.Batches.ResultsStreaming(ctx, b.ID, anthropicsdk.MessageBatchResultsParams{})
	defer stream.Close()
	got := map[string]string{}
	for stream.Next() {
		r := stream.Current()
		switch v := r.Result.AsAny().(type) {
		case anthropicsdk.MessageBatchSucceededResult:
			if len(v.Message.Content) == 0 || v.Message.Content[0].Text == "" || v.Message.Usage.OutputTokens == 0 {
				t.Errorf("%s: message %s", r.CustomID, v.Message.RawJSON())
			}
		case anthropicsdk.MessageBatchErroredResult:
			if v.Error.Error.Type != "api_error" {
				t.Errorf("%s: error %s", r.CustomID, v.Error.RawJSON())
			}
		default:
			t.Errorf("%s: result %s", r.CustomID, r.Result.RawJSON())
		}
		got[r.CustomID] = r.Result.Type
	}
	if err := stream.Err(); err != nil || len(got) != 4 {
		t.Errorf("results %v, %v", got, err)
	}

	if d, err := client.Messages.Batches.Delete(ctx, b.ID, anthropicsdk.MessageBatchDeleteParams{}); err != nil || d.ID != b.ID {
		t.Errorf("Batches.Delete: %+v, %v", d, err)
	}
	var apiErr *anthropicsdk.Error
	if _, err := client.Messages.Batches.Get(ctx, b.ID, anthropicsdk.MessageBatchGetParams{}); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Errorf("Get of a deleted batch: %v", err)
	}
	if st := ts.Stats().Batches; st.AnthropicBatches != 2 || st.Cancels != 1 {
		t.Errorf("stats %+v", st)
	}
}
