// Command lionactor runs model API requests in bulk at the provider's
// limits, serves a local simulator of the providers, and shows both in a
// one-command demo.
//
//	lionactor demo                       # offline: simulator + batch, under a minute
//	lionactor batch --in req.jsonl --out res.jsonl --provider openai --rpm 3000 --tpm 250000
//	lionactor sim --addr 127.0.0.1:8787  # a local OpenAI/Anthropic-compatible server
//	lionactor budget serve --addr 127.0.0.1:7070  # one rate budget for several batch processes
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1   // the run failed
	exitUsage       = 2   // bad flags, config or input: nothing was sent
	exitInterrupted = 130 // stopped by a signal; a rerun finishes the rest
)

// usageError marks an error found before anything was sent.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// env is what the commands need from the process, so tests can run them in
// process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// isTerminal tells whether the progress output is a terminal.
	isTerminal func(io.Writer) bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, isTerminal: isTerminal}
	// Exporting traces goes on in the background; say so when it fails.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { fmt.Fprintln(os.Stderr, "lionactor: traces:", err) }))
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run executes the command line args and returns the exit code.
func run(ctx context.Context, e env, args []string) int {
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(e.stderr, "lionactor:", err)
	var ee exitError
	var ue usageError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), isFlagError(err):
		return exitUsage
	}
	return exitFailure
}

func newRoot(e env) *cobra.Command {
	root := &cobra.Command{
		Use:           "lionactor",
		Short:         "Run model API requests at the provider's limits",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newBatchCmd(e), newSimCmd(e), newDemoCmd(e), newBenchCmd(e), newSoakCmd(e), newBudgetCmd(e))
	return root
}

// isFlagError recognises cobra's own argument errors (unknown command, wrong
// number of arguments), which are usage errors too.
func isFlagError(err error) bool {
	var ue usageError
	return errors.As(err, &ue) || cobraUsage(err)
}

// cobraUsage recognises the argument errors cobra makes itself.
func cobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
