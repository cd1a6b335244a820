package tokens_test

import (
	"fmt"

	"github.com/lionactor/lionactor/imodel/tokens"
)

func Example() {
	c := tokens.ForModel("gpt-4o-mini")
	msgs := []tokens.Message{
		{Role: "system", Text: "You are a helpful assistant."},
		{Role: "user", Name: "alice", Text: "What is the capital of France?"},
	}
	fmt.Println(c.Encoding())
	fmt.Println(c.Count("hello world"))
	fmt.Println(c.ChatPrompt(msgs))
	fmt.Println(c.ChatRequest(msgs, 1, 100))
	fmt.Println(c.Embedding([]string{"hello world", "tiktoken is great!"}))
	// Output:
	// o200k_base
	// 2
	// 25
	// 125
	// 8
}
