package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/lionactor/lionactor/internal/oteltest"
	"github.com/lionactor/lionactor/simulator"
)

// The trace of a small batch run, as an OTLP collector receives it: three
// requests, one at a time, against a simulator that answers the second's
// first attempt with a 429. The README shows this tree.
func Example_batchTrace() {
	recv := oteltest.StartReceiver()
	defer recv.Close()
	sim, err := simulator.New(simulator.Config{Seed: 3, Faults: simulator.Faults{RateLimit: 0.3}})
	if err != nil {
		log.Fatal(err)
	}
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer sim.Close()
	dir, err := os.MkdirTemp("", "trace-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "requests.jsonl")
	lines := `{"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 5}
{"messages": [{"role": "user", "content": "Name a river."}], "max_tokens": 5}
{"messages": [{"role": "user", "content": "Name a mountain."}], "max_tokens": 5}
`
	if err := os.WriteFile(in, []byte(lines), 0o644); err != nil {
		log.Fatal(err)
	}

	e := env{
		stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
		getenv:     func(k string) string { return map[string]string{"OPENAI_API_KEY": "sk-local"}[k] },
		isTerminal: func(io.Writer) bool { return false },
	}
	code := run(context.Background(), e, []string{"batch", "--in", in, "--out", filepath.Join(dir, "results.jsonl"),
		"--url", base + "/v1", "--model", "gpt-4o-mini", "--concurrency", "1", "--rpm", "6000",
		"--otlp-endpoint", recv.URL})
	fmt.Println("exit", code)
	fmt.Print(oteltest.Tree(recv.Spans(), "lionactor.batch.completed", "gen_ai.provider.name", "gen_ai.response.model",
		"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "http.response.status_code", "error.type"))
	// Output:
	// exit 0
	// lionactor batch  lionactor.batch.completed=3
	// ├─ chat gpt-4o-mini  gen_ai.provider.name=openai  gen_ai.response.model=gpt-4o-mini  gen_ai.usage.input_tokens=11  gen_ai.usage.output_tokens=5
	// │  ├─ queued
	// │  ├─ permit wait
	// │  └─ POST  http.response.status_code=200
	// ├─ chat gpt-4o-mini  gen_ai.provider.name=openai  gen_ai.response.model=gpt-4o-mini  gen_ai.usage.input_tokens=11  gen_ai.usage.output_tokens=5
	// │  ├─ queued
	// │  ├─ permit wait
	// │  ├─ POST  http.response.status_code=429  error.type=429  ERROR
	// │  ├─ queued
	// │  ├─ permit wait
	// │  └─ POST  http.response.status_code=200
	// └─ chat gpt-4o-mini  gen_ai.provider.name=openai  gen_ai.response.model=gpt-4o-mini  gen_ai.usage.input_tokens=11  gen_ai.usage.output_tokens=5
	//    ├─ queued
	//    ├─ permit wait
	//    └─ POST  http.response.status_code=200
}
