package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/lionactor/lionactor/internal/exampletest"
	"github.com/lionactor/lionactor/internal/simtest"

	"github.com/lionactor/lionactor/simulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var prompts = []string{`"Say hello."`, `"Name a colour."`, `"Count to three."`, `"Say goodbye."`}

// transitions returns, by prompt, the statuses printed for it, and the
// result lines.
func transitions(out string) (statuses map[string][]string, results map[string]string) {
	statuses, results = map[string][]string{}, map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(".*?")\s+#\d+ (\w+)$`).FindAllStringSubmatch(out, -1) {
		statuses[m[1]] = append(statuses[m[1]], m[2])
	}
	for _, m := range regexp.MustCompile(`(?m)^(".*?")\s+=> (.*)$`).FindAllStringSubmatch(out, -1) {
		results[m[1]] = m[2]
	}
	return statuses, results
}

func TestRunAgainstTheBuiltInSimulator(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, nil); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	checkCompleted(t, out.String())
}

func checkCompleted(t *testing.T, out string) {
	t.Helper()
	statuses, results := transitions(out)
	want := []string{"PENDING", "QUEUED", "PROCESSING", "CALLING", "COMPLETED"}
	for _, p := range prompts {
		if !slices.Equal(statuses[p], want) {
			t.Errorf("%s went through %v, want %v", p, statuses[p], want)
		}
		if !regexp.MustCompile(`^"\w.*" \([1-9]\d* tokens\)$`).MatchString(results[p]) {
			t.Errorf("%s answered %q", p, results[p])
		}
	}
	if !strings.Contains(out, "stats: 4 accepted, 4 completed, 0 failed\n") {
		t.Errorf("no stats line:\n%s", out)
	}
}

func TestRunAgainstAURL(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Keys: []string{"sk-from-env"}})
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	var out bytes.Buffer
	if err := run(context.Background(), &out, []string{"-url", base}); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	checkCompleted(t, out.String())
}

// Every request ends, FAILED, when the API refuses them, answers nonsense
// or cannot be reached; the key never shows in the output.
func TestRunReportsFailures(t *testing.T) {
	const key = "sk-secret-0123456789"
	t.Setenv("OPENAI_API_KEY", key)
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"message":"no"}}`, http.StatusInternalServerError)
	}))
	defer refuse.Close()
	nonsense := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"choices":[]}`))
	}))
	defer nonsense.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/" + key // the key in the URL, to check it is scrubbed
	ln.Close()

	for _, tc := range []struct{ name, url, want string }{
		{"refused", refuse.URL, "500 Internal Server Error"},
		{"nonsense", nonsense.URL, "unexpected reply"},
		{"unreachable", closed, "connect"},
		{"bad url", "::", "missing protocol scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), &out, []string{"-url", tc.url}); err != nil {
				t.Fatalf("run: %v\n%s", err, &out)
			}
			statuses, results := transitions(out.String())
			for _, p := range prompts {
				if s := statuses[p]; len(s) == 0 || s[len(s)-1] != "FAILED" {
					t.Errorf("%s went through %v", p, s)
				}
				if !strings.HasPrefix(results[p], "FAILED: ") || !strings.Contains(results[p], tc.want) {
					t.Errorf("%s: %s, want the error to say %q", p, results[p], tc.want)
				}
			}
			if !strings.Contains(out.String(), "stats: 4 accepted, 0 completed, 4 failed\n") {
				t.Errorf("stats:\n%s", &out)
			}
			if strings.Contains(out.String(), key) {
				t.Errorf("the key shows:\n%s", &out)
			}
		})
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
}

func TestMainRunsWithoutArguments(t *testing.T) {
	out := exampletest.CaptureStdout(t, func() {
		defer func(args []string) { os.Args = args }(os.Args)
		os.Args = []string{"embed"}
		main()
	})
	checkCompleted(t, out)
}
