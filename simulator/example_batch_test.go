package simulator_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/simulator"
)

// A message batch ends Config.BatchDelay after its creation on the batch
// clock, which AdvanceBatches moves forward without waiting.
func ExampleServer_AdvanceBatches() {
	s, err := simulator.New(simulator.Config{BatchDelay: time.Hour, CompletionTokens: 5, Seed: 1})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	baseURL, err := s.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	send := func(method, path, body string) *http.Response {
		req, _ := http.NewRequest(method, baseURL+path, strings.NewReader(body))
		req.Header.Set("x-api-key", "sk-ant-example")
		req.Header.Set("anthropic-version", "2023-06-01")
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		return resp
	}
	batchOf := func(resp *http.Response) wire.MessageBatch {
		defer resp.Body.Close()
		var b wire.MessageBatch
		json.NewDecoder(resp.Body).Decode(&b)
		return b
	}

	b := batchOf(send("POST", "/v1/messages/batches", `{"requests":[
		{"custom_id":"greeting","params":{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"Hello"}]}},
		{"custom_id":"question","params":{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"Why?"}]}}]}`))
	fmt.Println(b.ProcessingStatus, b.RequestCounts.Processing)

	s.AdvanceBatches(time.Hour)
	b = batchOf(send("GET", "/v1/messages/batches/"+b.ID, ""))
	fmt.Println(b.ProcessingStatus, b.RequestCounts.Succeeded)

	resp := send("GET", "/v1/messages/batches/"+b.ID+"/results", "")
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line wire.MessageBatchResultLine
		var m wire.MessagesResponse
		json.Unmarshal(sc.Bytes(), &line)
		json.Unmarshal(line.Result.Message, &m)
		fmt.Println(line.CustomID, line.Result.Type, m.Content[0].Text, m.Usage.InputTokens, m.Usage.OutputTokens)
	}
	// Output:
	// in_progress 2
	// ended 2
	// question succeeded Lorem eiusmod tempor ut. 9 5
	// greeting succeeded Lorem ad nisi nisi. 8 5
}
