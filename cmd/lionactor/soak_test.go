package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSoakShort runs a three-second soak and checks the exit code, the
// sample lines and the checks.
func TestSoakShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, stdout, stderr := benchRun(t, ctx, "soak", "--duration", "3s", "--every", "1s")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	samples := 0
	for line := range strings.Lines(stdout) {
		if strings.HasPrefix(line, "t=") {
			samples++
			for _, field := range []string{"heap=", "goroutines=", "fds=", "submitted=", "completed=", "failed=", "cancelled=", "in_flight="} {
				if !strings.Contains(line, field) {
					t.Errorf("sample line lacks %s: %q", field, line)
				}
			}
		}
	}
	if samples != 4 { // t=0s and one a second
		t.Errorf("%d sample lines, want 4:\n%s", samples, stdout)
	}
	for _, want := range []string{"after stop:", "lost 0", "check ended once ok", "check lost       ok", "check heap       ok", "check goroutines ok", "check fds        ok"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

// TestSoakFailsItsChecks exits non-zero, naming the check, when a run is too
// short to judge growth.
func TestSoakFailsItsChecks(t *testing.T) {
	code, stdout, stderr := benchRun(t, context.Background(), "soak", "--duration", "1s", "--every", "1s")
	if code != exitFailure || !strings.Contains(stdout, "check growth     FAIL") || !strings.Contains(stderr, "growth") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

func TestSoakUsage(t *testing.T) {
	if code, _, stderr := benchRun(t, context.Background(), "soak", "--duration", "-1s"); code != exitUsage {
		t.Errorf("exit %d, want %d: %s", code, exitUsage, stderr)
	}
}
