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
	if err := run(context.Background(), &out, []string{"-n", "40", "-rate", "200", "-concurrency", "8"}); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	s := checkOutput(t, 40, 200, out.String())
	if s.completed == 0 || s.refused != 0 || s.cancelled != 0 {
		t.Errorf("summary %+v:\n%s", s, &out)
	}
}

type summary struct {
	completed, failed, cancelled, refused int
	calls, retries                        int
	rate                                  float64
}

// checkOutput checks the progress lines and the summary's arithmetic.
func checkOutput(t *testing.T, n, limit int, out string) summary {
	t.Helper()
	last := 0
	progress := regexp.MustCompile(`(?m)^progress: (\d+)/(\d+) ended, \d+ in flight, \d+ queued$`).FindAllStringSubmatch(out, -1)
	for _, m := range progress {
		done, _ := strconv.Atoi(m[1])
		if done <= last || m[2] != strconv.Itoa(n) {
			t.Errorf("progress %q after %d", m[0], last)
		}
		last = done
	}
	if len(progress) != min(n, 10) || last != n {
		t.Errorf("%d progress lines ending at %d, want %d ending at %d:\n%s", len(progress), last, min(n, 10), n, out)
	}

	var s summary
	m := regexp.MustCompile(`(?m)^(\d+) requests in \S+: (\d+) COMPLETED, (\d+) FAILED, (\d+) CANCELLED, (\d+) refused\n` +
		`(\d+) calls \((\d+) retries\), \d+ tokens\n` +
		`rate: ([\d.]+) calls/s, limit (\d+)/s\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary:\n%s", out)
	}
	var v [9]int
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	s.completed, s.failed, s.cancelled, s.refused, s.calls, s.retries = v[1], v[2], v[3], v[4], v[5], v[6]
	s.rate, _ = strconv.ParseFloat(m[8], 64)
	if v[0] != n || s.completed+s.failed+s.cancelled+s.refused != n {
		t.Errorf("the statuses do not add up to %d requests: %q", n, m[0])
	}
	if s.calls != n-s.refused+s.retries {
		t.Errorf("%d calls for %d accepted requests and %d retries", s.calls, n-s.refused, s.retries)
	}
	if v[8] != limit || s.rate > 1.1*float64(limit) {
		t.Errorf("rate %.1f calls/s over the limit of %d/s", s.rate, v[8])
	}
	return s
}

func TestRunAgainstAURL(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Keys: []string{"sk-from-env"}})
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	var out bytes.Buffer
	if err := run(context.Background(), &out, []string{"-n", "5", "-rate", "1000", "-url", base}); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	if s := checkOutput(t, 5, 1000, out.String()); s.completed != 5 || s.retries != 0 {
		t.Errorf("summary %+v", s)
	}
}

// Interrupted, the program still accounts for every request.
func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, []string{"-n", "20"}); err != context.Canceled {
		t.Errorf("run = %v, want %v", err, context.Canceled)
	}
	if s := checkOutput(t, 20, 200, out.String()); s.refused != 20 {
		t.Errorf("summary %+v", s)
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"-no-such-flag"},
		{"-n", "0"},
		{"-rate", "0"},
		{"-url", "ftp://example.com"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), &out, args); err == nil {
			t.Errorf("%q was accepted", args)
		}
	}
}

func TestMainRunsWithoutArguments(t *testing.T) {
	out := exampletest.CaptureStdout(t, func() {
		defer func(args []string) { os.Args = args }(os.Args)
		os.Args = []string{"batch"}
		main()
	})
	if s := checkOutput(t, 200, 200, out); s.completed == 0 || !strings.Contains(out, "progress: 200/200 ended") {
		t.Errorf("summary %+v", s)
	}
}
