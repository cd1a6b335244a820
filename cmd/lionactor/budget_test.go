package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lionactor/lionactor/internal/runtimetest"
	"github.com/lionactor/lionactor/internal/simtest"
	"github.com/lionactor/lionactor/simulator"
)

var budgetAddrRE = regexp.MustCompile(`^budget service listening on (127\.0\.0\.1:(\d+))$`)

// These tests run at most one protoactor remote layer at a time in the test
// process: remote.Start sets grpc's global logger, so two in one process
// race. Tests with a service and its members run them as processes
// (e2e_budget_test.go).

func TestBudgetServeUntilCancelled(t *testing.T) {
	srv := startServer(t, "budget", "serve", "--addr", "127.0.0.1:0", "--lease-ttl", "500ms", "--verbose")
	c, lines := srv.c, srv.lines
	first, ok := <-lines
	m := budgetAddrRE.FindStringSubmatch(first)
	if !ok || m == nil || m[2] == "0" {
		t.Fatalf("first line %q does not give the address (stderr %s)", first, c.stderr.String())
	}
	addr := m[1]
	if hint := <-lines; !strings.Contains(hint, "lionactor batch --budget "+addr+" --budget-members N ...") {
		t.Errorf("hint line %q", hint)
	}
	if sec := <-lines; sec != "  security: no TLS and no secret: anything that reaches the port gets in; loopback only" {
		t.Errorf("security line %q", sec)
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("nothing listens on the printed address: %v", err)
	}
	conn.Close()

	rest := srv.stop(t)
	if len(rest) != 1 || rest[0] != "granted 0 leases (0 requests, 0 returned unused) to 0 members over 0 keys; 0 pauses" {
		t.Errorf("last lines %q", rest)
	}
	// --verbose logs the service's own events, with the lease lifetime given.
	if log := c.stderr.String(); !strings.Contains(log, `msg="budget service started"`) || !strings.Contains(log, "lease_ttl=500ms") {
		t.Errorf("verbose log:\n%s", log)
	}
}

func TestBudgetServeWithTLSAndSecret(t *testing.T) {
	pki := runtimetest.NewPKI(t, "ca")
	cert, key := pki.Issue(t, "service")
	const secret = "a secret of thirty-two bytes!!!!"
	c := newCLI()
	c.env = map[string]string{"BUDGET_SECRET": secret}
	var lines []string
	ctx, cancel := context.WithCancel(context.Background())
	c.stdout.onWrite = func(all string) {
		if lines == nil && strings.Count(all, "\n") == 3 {
			lines = strings.Split(strings.TrimSpace(all), "\n")
			cancel()
		}
	}
	if code := c.run(t, ctx, "budget", "serve", "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--tls-ca", pki.CA, "--secret-env", "BUDGET_SECRET"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if len(lines) != 3 || !strings.Contains(lines[1], "--budget-tls-cert CERT --budget-tls-key KEY --budget-tls-ca CA --budget-secret-env BUDGET_SECRET") ||
		lines[2] != "  security: mutual TLS and a secret: only members with a certificate signed by "+pki.CA+" that hold the secret in $BUDGET_SECRET get in" {
		t.Errorf("first lines %q", lines)
	}
	if out := c.stdout.String(); !strings.Contains(out, "; refused 0 connections, 0 messages") || strings.Contains(out+c.stderr.String(), secret) {
		t.Errorf("stdout %q", out)
	}
}

func TestBudgetServeInsecure(t *testing.T) {
	srv := startServer(t, "budget", "serve", "--addr", "0.0.0.0:0", "--insecure")
	<-srv.lines
	<-srv.lines
	if sec := <-srv.lines; sec != "  security: no TLS and no secret: anything that reaches the port gets in; reachable beyond this host (--insecure)" {
		t.Errorf("security line %q", sec)
	}
	srv.stop(t)
	if log := srv.c.stderr.String(); !strings.Contains(log, "budget: serving without TLS on a network address") {
		t.Errorf("no warning on stderr:\n%s", log)
	}
}

func TestBudgetServeQuietByDefault(t *testing.T) {
	c := newCLI()
	ctx, cancel := context.WithCancel(context.Background())
	c.stdout.onWrite = func(all string) {
		if strings.Contains(all, "\n  lionactor batch --budget") {
			cancel()
		}
	}
	if code := c.run(t, ctx, "budget", "serve", "--addr", "127.0.0.1:0"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(c.stdout.String(), "budget service listening on 127.0.0.1:") {
		t.Errorf("stdout %q", c.stdout.String())
	}
	if c.stderr.String() != "" {
		t.Errorf("stderr without --verbose: %q", c.stderr.String())
	}
}

func TestBudgetServeUsageErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "7070"}, `--addr: want host:port, got "7070"`},
		{[]string{"--addr", ":7070"}, "--addr: host missing"},
		{[]string{"--addr", "127.0.0.1:65536"}, "--addr: port must be a number from 0 to 65535"},
		{[]string{"--addr", "127.0.0.1:budget"}, "--addr: port must be"},
		{[]string{"--addr", busy.Addr().String()}, busy.Addr().String()},
		{[]string{"--addr", "127.0.0.1:0", "--lease-ttl", "0s"}, "--lease-ttl: must be positive"},
		{[]string{"--addr", "127.0.0.1:0", "--lease-ttl", "-1s"}, "--lease-ttl: must be positive"},
		{[]string{"--lease-ttl", "soon"}, "invalid argument"},
		{[]string{"extra"}, "unknown command"},
		{[]string{"--addr", "0.0.0.0:0"}, "--addr: 0.0.0.0 is not a loopback address, and without TLS the service listens on loopback only"},
		{[]string{"--addr", "127.0.0.1:0", "--secret-env", "LIONACTOR_TEST_UNSET"}, "--secret-env: LIONACTOR_TEST_UNSET is empty or not set"},
		{[]string{"--addr", "127.0.0.1:0", "--secret-env", "SHORT_SECRET"}, "--secret-env: the secret in SHORT_SECRET must be at least 16 bytes, it has 5"},
		{[]string{"--addr", "127.0.0.1:0", "--tls-cert", "c.pem"}, "--tls-key: missing"},
		{[]string{"--addr", "127.0.0.1:0", "--tls-cert", "gone.pem", "--tls-key", "gone.pem", "--tls-ca", "gone.pem"}, "--tls-cert: open gone.pem"},
	}
	for _, tt := range tests {
		c := newCLI()
		c.env = map[string]string{"SHORT_SECRET": "hello"}
		args := append([]string{"budget", "serve"}, tt.args...)
		if code := c.run(t, context.Background(), args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
		if !strings.HasPrefix(c.stderr.String(), "lionactor: ") || !strings.Contains(c.stderr.String(), tt.want) {
			t.Errorf("%q: stderr lacks %q:\n%s", args, tt.want, c.stderr.String())
		}
		if strings.Contains(c.stdout.String(), "listening") {
			t.Errorf("%q: it said it listens: %q", args, c.stdout.String())
		}
	}
	// The group alone shows its help; an unknown subcommand is refused.
	c := newCLI()
	if code := c.run(t, context.Background(), "budget"); code != exitOK || !strings.Contains(c.stdout.String(), "serve") {
		t.Errorf("budget: exit %d, stdout %q", code, c.stdout.String())
	}
	c = newCLI()
	if code := c.run(t, context.Background(), "budget", "start"); code != exitUsage {
		t.Errorf("budget start: exit %d, want %d", code, exitUsage)
	}
}

func TestBatchBudgetUsageErrors(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	in, out := writeRequests(t, dir, 3), filepath.Join(dir, "results.jsonl")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--budget", "127.0.0.1"}, "budget: want host:port"},
		{[]string{"--budget", "http://127.0.0.1:7070"}, "budget: want host:port"},
		{[]string{"--budget", ":7070"}, "budget: host missing"},
		{[]string{"--budget", "127.0.0.1:0"}, "budget: port must be a number from 1 to 65535"},
		{[]string{"--budget", "127.0.0.1:7070", "--budget-members", "0"}, "budget-members: must be at least 1"},
		{[]string{"--budget", "127.0.0.1:7070", "--budget-members", "-3"}, "budget-members: must be at least 1"},
		{[]string{"--budget-members", "-1"}, "budget-members: must be at least 1"},
		{[]string{"--budget", "127.0.0.1:7070", "--budget-listen", "anywhere"}, "budget-listen: want host:port"},
		{[]string{"--budget-members", "three"}, "invalid argument"},
		{[]string{"--budget", "127.0.0.1:7070", "--budget-secret-env", "NO_SUCH_VAR"}, "--budget-secret-env: NO_SUCH_VAR is empty or not set"},
		{[]string{"--budget", "127.0.0.1:7070", "--budget-secret-env", "SHORT_SECRET"}, "--budget-secret-env: the secret in SHORT_SECRET must be at least 16 bytes"},
		{[]string{"--budget", "127.0.0.1:7070", "--budget-tls-cert", "c.pem", "--budget-tls-ca", "ca.pem"}, "budget-tls-key: missing"},
		{[]string{"--budget", "127.0.0.1:7070", "--budget-tls-cert", "c.pem", "--budget-tls-key", "k.pem", "--budget-tls-ca", "ca.pem"}, "budget-tls-cert: open c.pem"},
	}
	for _, tt := range tests {
		c := newCLI()
		c.env["SHORT_SECRET"] = "hello"
		args := append([]string{"batch", "--in", in, "--out", out, "--url", base, "--model", testModel}, tt.args...)
		if code := c.run(t, context.Background(), args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", tt.args, code, exitUsage)
		}
		if !strings.HasPrefix(c.stderr.String(), "lionactor: ") || !strings.Contains(c.stderr.String(), tt.want) {
			t.Errorf("%q: stderr lacks %q:\n%s", tt.args, tt.want, c.stderr.String())
		}
	}
	if st := sim.Stats(); st.Requests != 0 {
		t.Errorf("%d requests were sent", st.Requests)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("the results file was created")
	}
}

// unusedAddr is a loopback address where nothing listens.
func unusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestBatchBudgetFromConfigFile sets --budget and --budget-members in the
// config file, and points them at a service that is not there: the run
// says it fell back to its share (naming the members the file gave), and
// finishes.
func TestBatchBudgetFromConfigFile(t *testing.T) {
	sim, base := simtest.Start(t, simulator.Config{})
	dir := t.TempDir()
	const n = 25
	in, out := writeRequests(t, dir, n), filepath.Join(dir, "results.jsonl")
	nobody := unusedAddr(t)
	config := filepath.Join(dir, "batch.yaml")
	yaml := fmt.Sprintf("in: %s\nout: %s\nurl: %s\nmodel: %s\nrpm: 60000\nbudget: %s\nbudget-members: 3\n", in, out, base, testModel, nobody)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	if code := c.run(t, context.Background(), "batch", "--config", config, "--progress-every", "0s"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	checkEachOnce(t, readResults(t, out), n)
	if got := sim.Stats().Requests; got != n {
		t.Errorf("%d requests sent, want %d", got, n)
	}
	stderr := c.stderr.String()
	notice := fallbackNotice(stderr)
	if notice == "" || !strings.Contains(notice, "service="+nobody) || !strings.Contains(notice, "expected_members=3") ||
		!strings.Contains(notice, "requests_per_second=333.3") { // 60000/min ÷ 60 ÷ 3
		t.Errorf("no notice of the fallback to a third of the limits in stderr:\n%s", stderr)
	}
	// Without --verbose, that notice is the only log line: none of the
	// executor's, protoactor's or the attempts'.
	if strings.Count(stderr, "level=") != 1 || strings.Contains(stderr, testKey) {
		t.Errorf("stderr:\n%s", stderr)
	}

	// A flag on the command line wins over the file; a bad value in the
	// file is refused before anything is sent.
	if err := os.WriteFile(config, []byte(yaml+"budget-listen: 127.0.0.1:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = newCLI()
	if code := c.run(t, context.Background(), "batch", "--config", config, "--budget-members", "0"); code != exitUsage {
		t.Errorf("--budget-members 0 over the file's 3: exit %d, want %d", code, exitUsage)
	}
	bad := strings.Replace(yaml, "budget-members: 3", "budget-members: none", 1)
	if err := os.WriteFile(config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	c = newCLI()
	if code := c.run(t, context.Background(), "batch", "--config", config); code != exitUsage || !strings.Contains(c.stderr.String(), "budget-members") {
		t.Errorf("budget-members: none: exit %d, stderr %s", code, c.stderr.String())
	}
	if got := sim.Stats().Requests; got != n {
		t.Errorf("the refused runs sent %d requests", got-n)
	}
}

// TestBatchBudgetVerboseNeverShowsTheKey falls back with --verbose: the
// full log (executor, protoactor, attempts, the fallback) never shows the
// key, and the budget's name in it is a hash.
func TestBatchBudgetVerboseNeverShowsTheKey(t *testing.T) {
	_, base := simtest.Start(t, simulator.Config{})
	var sb strings.Builder
	for i := range 10 {
		sb.WriteString(requestLine(i) + "\n")
	}
	c := newCLI()
	c.stdin = strings.NewReader(sb.String())
	if code := c.run(t, context.Background(), "batch", "--url", base, "--model", testModel, "--rpm", "60000", "--verbose",
		"--budget", unusedAddr(t), "--budget-members", "2"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	results, _ := parseResults(t, []byte(c.stdout.String()), false)
	checkEachOnce(t, results, 10)
	if fallbackNotice(c.stderr.String()) == "" || !strings.Contains(c.stderr.String(), "imodel: attempt") {
		t.Fatalf("the verbose log lacks the fallback or the attempts:\n%s", c.stderr.String())
	}
	for name, out := range map[string]string{"stdout": c.stdout.String(), "stderr": c.stderr.String()} {
		if strings.Contains(out, testKey) || strings.Contains(out, "cli-0001") {
			t.Errorf("the API key appears on %s", name)
		}
	}
}

// fallbackNotice returns the log line saying that a member fell back to
// its share of the limits, or "".
func fallbackNotice(log string) string {
	for l := range strings.Lines(log) {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "component="+budgetComponent) && strings.Contains(l, "using the local share") {
			return l
		}
	}
	return ""
}

// TestComponentFilter: the records of package budget's loggers pass,
// whatever their message; others do not, whatever theirs.
func TestComponentFilter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(componentFilter{Handler: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}), component: budgetComponent})
	log.Info("actor system started")
	log.Error("lionactor: budget service unreachable (a look-alike without the component)")
	member := log.With("component", "budget")
	member.Debug("debug detail")
	member.Warn("service unreachable; using the local share", "expected_members", 3)
	member.WithGroup("g").Info("rejoined", "service", "x")
	log.With("component", "broker").Info("imodel: attempt")
	log.Info("tagged record", "component", "budget")
	got := buf.String()
	if strings.Count(got, "\n") != 3 || !strings.Contains(got, "expected_members=3") || !strings.Contains(got, "component=budget g.service=x") ||
		!strings.Contains(got, "tagged record") || strings.Contains(got, "look-alike") || strings.Contains(got, "imodel") {
		t.Errorf("records passed:\n%s", got)
	}
}

func TestRedisLogsGoToTheRunsLoggerAtDebug(t *testing.T) {
	var buf syncBuffer
	logRedisTo(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer logRedisTo(nil)
	// A client of a port where nobody listens: go-redis logs its failed
	// dials.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: nobody, MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err == nil {
		t.Fatal("a ping of nobody answered")
	}
	runtimetest.WaitFor(t, 10*time.Second, "go-redis to log the failed dial", func() bool {
		got := buf.String()
		return strings.Contains(got, "level=DEBUG") && strings.Contains(got, `msg="redis: `) && strings.Contains(got, "dial")
	})
}
