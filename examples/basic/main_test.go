package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
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

func TestRunAgainstAURL(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{Keys: []string{"sk-from-env"}})
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	var out bytes.Buffer
	if err := run(context.Background(), &out, []string{"-url", base, "-model", "gpt-4o"}); err != nil {
		t.Fatalf("run: %v\n%s", err, &out)
	}
	checkOutput(t, out.String())

	t.Setenv("OPENAI_API_KEY", "sk-wrong")
	err := run(context.Background(), &out, []string{"-url", base})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("with a wrong key: %v", err)
	}
}

func checkOutput(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{"Invoke (HTTP 200): \"", "Chat (finish "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "status COMPLETED after 1 attempt(s)"); n != 2 {
		t.Errorf("%d completed requests, want 2:\n%s", n, out)
	}
	tokens := regexp.MustCompile(`tokens estimated (\d+), actual (\d+)`).FindAllStringSubmatch(out, -1)
	if len(tokens) != 2 {
		t.Fatalf("token lines %v:\n%s", tokens, out)
	}
	for _, m := range tokens {
		est, _ := strconv.Atoi(m[1])
		act, _ := strconv.Atoi(m[2])
		if est <= 0 || act <= 0 {
			t.Errorf("tokens estimated %d, actual %d", est, act)
		}
	}
}

// TestRunReportsBadReplies serves the simulator's answers, except for one
// request that gets a reply the program must refuse.
func TestRunReportsBadReplies(t *testing.T) {
	sim, err := simulator.New(simulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	for _, tc := range []struct {
		name   string
		nth    int64 // the request to spoil, from 1
		status int
		body   string
		want   string
	}{
		{"no choices", 1, 200, `{"choices":[]}`, "no choices"},
		{"not a completion", 1, 200, `{"choices":"none"}`, "cannot unmarshal"},
		{"chat refused", 2, 400, `{"error":{"message":"bad request","type":"invalid_request_error"}}`, "chat:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == tc.nth {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
					w.Write([]byte(tc.body))
					return
				}
				sim.Handler().ServeHTTP(w, r)
			}))
			defer srv.Close()
			t.Setenv("OPENAI_API_KEY", "sk-example-key")
			var out bytes.Buffer
			err := run(context.Background(), &out, []string{"-url", srv.URL + "/v1"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, []string{"-no-such-flag"}); err == nil {
		t.Error("an unknown flag was accepted")
	}
	if err := run(context.Background(), &out, []string{"-url", "ftp://example.com"}); err == nil {
		t.Error("an ftp URL was accepted")
	}
}

func TestMainRunsWithoutArguments(t *testing.T) {
	out := exampletest.CaptureStdout(t, func() {
		defer func(args []string) { os.Args = args }(os.Args)
		os.Args = []string{"basic"}
		main()
	})
	checkOutput(t, out)
}
