package simulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/lionactor/lionactor/internal/wire"
	"github.com/lionactor/lionactor/simulator"
)

func Example() {
	s, err := simulator.New(simulator.Config{RequestsPerMinute: 60, CompletionTokens: 8, Seed: 1})
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

	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say something."}]}`
	req, _ := http.NewRequest(http.MethodPost, baseURL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk-example")
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var out wire.ChatResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		panic(err)
	}
	fmt.Println(resp.StatusCode, resp.Header.Get("x-ratelimit-remaining-requests"))
	fmt.Println(out.Choices[0].Message.Content.String())
	fmt.Println("prompt tokens:", out.Usage.PromptTokens, "completion tokens:", out.Usage.CompletionTokens)
	// Output:
	// 200 59
	// Lorem magna adipiscing dolor ut ut aute.
	// prompt tokens: 10 completion tokens: 8
}
