package imodel_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/lionactor/lionactor/imodel"
	"github.com/lionactor/lionactor/messages"
)

// A request's cost is in its snapshots: estimated before the call, from
// the token estimate and max_tokens, and actual after, from the usage the
// provider reported.
func ExampleModel_Chat_cost() {
	baseURL, ex, stop := start()
	defer stop()

	m, err := imodel.New(ex, imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: baseURL, APIKey: "sk-test-example", Model: "gpt-4o-mini"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	resp, err := m.Chat(context.Background(), imodel.ChatRequest{Messages: []imodel.Message{{Role: "user", Content: "Say something."}}, MaxTokens: 8})
	if err != nil {
		log.Fatal(err)
	}
	c := resp.Event.Cost()
	fmt.Printf("%d + %d tokens: $%.7f, estimated at most $%.7f\n", resp.Usage.InputTokens, resp.Usage.OutputTokens, c.Actual, c.Estimated)
	// Output: 10 + 8 tokens: $0.0000063, estimated at most $0.0000063
}

// Prices come from a dated table embedded in lionactor; a file of the same
// form adds models or replaces prices (imodel.LoadPrices, and
// imodel.WithPrices to give them to a model).
func ExamplePrices_Lookup() {
	prices := imodel.DefaultPrices()
	p, ok := prices.Lookup(imodel.OpenAI, "gpt-4o-mini-2024-07-18")
	fmt.Println(ok, p.Input, p.CachedInput, p.Output)
	u := messages.Usage{InputTokens: 2000, CachedInputTokens: 1024, OutputTokens: 500}
	fmt.Printf("$%.6f, $%.6f through the batch API\n", p.Cost(u), p.BatchCost(u))
	_, ok = prices.Lookup(imodel.OpenAI, "in-house-model")
	fmt.Println("in-house-model priced:", ok)
	// Output:
	// true 0.15 0.075 0.6
	// $0.000523, $0.000262 through the batch API
	// in-house-model priced: false
}

// A model with a cache answers a request it has the reply of, here one at
// temperature 0, without a call: at no cost, without a permit.
func ExampleWithCache() {
	baseURL, ex, stop := start()
	defer stop()
	dir, err := os.MkdirTemp("", "lionactor-cache-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cache, err := imodel.NewFileCache(dir)
	if err != nil {
		log.Fatal(err)
	}
	m, err := imodel.New(ex, imodel.EndpointConfig{Provider: imodel.OpenAI, BaseURL: baseURL, APIKey: "sk-test-example", Model: "gpt-4o-mini"},
		imodel.WithCache(cache, imodel.CacheDeterministic))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	zero := 0.0
	req := imodel.ChatRequest{Messages: []imodel.Message{{Role: "user", Content: "2 + 2?"}}, MaxTokens: 8, Temperature: &zero}
	for range 2 {
		resp, err := m.Chat(context.Background(), req)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("cached %v, $%.7f\n", resp.Event.Cached(), resp.Event.Cost().Actual)
	}
	// Output:
	// cached false, $0.0000066
	// cached true, $0.0000000
}
