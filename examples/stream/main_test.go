package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/exampletest"
	"github.com/lionactor/lionactor/internal/simtest"

	"github.com/lionactor/lionactor/simulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunAgainstTheBuiltInSimulator(t *testing.T) {
	for _, provider := range []string{"openai", "anthropic"} {
		t.Run(provider, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), &out, []string{"-provider", provider}); err != nil {
				t.Fatalf("run: %v\n%s", err, &out)
			}
			checkOutput(t, provider, out.String())
		})
	}
}

// checkOutput checks that the text came in several chunks and that the
// usage adds up.
func checkOutput(t *testing.T, provider, out string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	if len(lines) != 4 || lines[3] != "" {
		t.Fatalf("output is not text, summary, usage:\n%s", out)
	}
	if len(strings.Fields(lines[0])) < 2 {
		t.Errorf("text %q", lines[0])
	}
	m := regexp.MustCompile(`^` + provider + ` \S+: (\d+) chunks, finish reason "\w+"$`).FindStringSubmatch(lines[1])
	if m == nil {
		t.Fatalf("summary %q", lines[1])
	}
	if chunks, _ := strconv.Atoi(m[1]); chunks <= 1 {
		t.Errorf("%d chunks, want several", chunks)
	}
	u := regexp.MustCompile(`^usage: (\d+) input \+ (\d+) output = (\d+) tokens$`).FindStringSubmatch(lines[2])
	if u == nil {
		t.Fatalf("usage %q", lines[2])
	}
	in, _ := strconv.Atoi(u[1])
	outTokens, _ := strconv.Atoi(u[2])
	total, _ := strconv.Atoi(u[3])
	if in <= 0 || outTokens <= 0 || total != in+outTokens {
		t.Errorf("usage %q does not add up", lines[2])
	}
}

func TestRunAgainstAURL(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Keys: []string{"sk-openai-env", "sk-anthropic-env"}})
	t.Setenv("OPENAI_API_KEY", "sk-openai-env")
	t.Setenv("ANTHROPIC_API_KEY", "sk-anthropic-env")
	for _, provider := range []string{"openai", "anthropic"} {
		var out bytes.Buffer
		if err := run(context.Background(), &out, []string{"-provider", provider, "-url", base, "-model", "m1"}); err != nil {
			t.Fatalf("%s: run: %v\n%s", provider, err, &out)
		}
		checkOutput(t, provider, out.String())
		if !strings.Contains(out.String(), provider+" m1:") {
			t.Errorf("-model was not used:\n%s", &out)
		}
	}
}

func TestRunReportsABrokenStream(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Faults: simulator.Faults{Truncate: 1}})
	t.Setenv("OPENAI_API_KEY", "sk-example-key")
	var out bytes.Buffer
	err := run(context.Background(), &out, []string{"-url", base})
	if err == nil || !strings.Contains(err.Error(), "chunks:") {
		t.Errorf("run = %v\n%s", err, &out)
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"-no-such-flag"},
		{"-provider", "generic"},
		{"-url", "ftp://example.com"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), &out, args); err == nil {
			t.Errorf("%q was accepted", args)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := run(ctx, &bytes.Buffer{}, nil); err != context.Canceled {
		t.Errorf("with a cancelled context: %v", err)
	}
}

func TestMainRunsWithoutArguments(t *testing.T) {
	out := exampletest.CaptureStdout(t, func() {
		defer func(args []string) { os.Args = args }(os.Args)
		os.Args = []string{"stream"}
		main()
	})
	checkOutput(t, "openai", out)
}
