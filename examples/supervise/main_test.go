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
	var out bytes.Buffer
	if err := run(context.Background(), &out, nil); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	checkOutput(t, out.String())
}

func checkOutput(t *testing.T, out string) {
	t.Helper()
	outcomes := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(flaky|broken|chat \d)\s+(.*)$`).FindAllStringSubmatch(out, -1) {
		outcomes[m[1]] = m[2]
	}
	want := map[string]*regexp.Regexp{
		// Retried after the crash, and completed.
		"flaky": regexp.MustCompile(`^COMPLETED after 2 attempt\(s\)$`),
		// Crashed on every attempt: accounted for, not lost.
		"broken": regexp.MustCompile(`^FAILED\s+after 2 attempt\(s\): the caller crashed \(.*every attempt blows up\)$`),
	}
	for i := 1; i <= 4; i++ { // carried on
		want["chat "+strconv.Itoa(i)] = regexp.MustCompile(`^COMPLETED after 1 attempt\(s\)$`)
	}
	for name, re := range want {
		if !re.MatchString(outcomes[name]) {
			t.Errorf("%s: %q, want %v", name, outcomes[name], re)
		}
	}
	m := regexp.MustCompile(`stats: (\d+) completed, (\d+) failed, (\d+) retries, (\d+) caller restarts`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no stats line:\n%s", out)
	}
	if m[1] != "5" || m[2] != "1" || m[3] != "2" {
		t.Errorf("stats %q, want 5 completed, 1 failed, 2 retries", m[0])
	}
	if restarts, _ := strconv.Atoi(m[4]); restarts < 1 {
		t.Errorf("%d caller restarts", restarts)
	}
}

func TestRunAgainstAURL(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Keys: []string{"sk-from-env"}})
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	var out bytes.Buffer
	if err := run(context.Background(), &out, []string{"-url", base}); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	checkOutput(t, out.String())

	// The chats fail on their own terms; the crashes are handled the same.
	t.Setenv("OPENAI_API_KEY", "sk-wrong")
	out.Reset()
	if err := run(context.Background(), &out, []string{"-url", base}); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	if n := strings.Count(out.String(), "FAILED    after 1 attempt(s): "); n != 4 || !strings.Contains(out.String(), "401") {
		t.Errorf("%d chats failed, want 4 with a 401:\n%s", n, &out)
	}
	if !strings.Contains(out.String(), "flaky   COMPLETED after 2 attempt(s)\n") {
		t.Errorf("the flaky call did not complete:\n%s", &out)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, nil); err != context.Canceled {
		t.Errorf("run = %v, want %v", err, context.Canceled)
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, []string{"-no-such-flag"}); err == nil {
		t.Error("an unknown flag was accepted")
	}
	if err := run(context.Background(), &out, []string{"-url", "ftp://example.com"}); err == nil || !strings.Contains(err.Error(), "BaseURL") {
		t.Errorf("an ftp URL: %v", err)
	}
}

func TestMainRunsWithoutArguments(t *testing.T) {
	out := exampletest.CaptureStdout(t, func() {
		defer func(args []string) { os.Args = args }(os.Args)
		os.Args = []string{"supervise"}
		main()
	})
	checkOutput(t, out)
}
