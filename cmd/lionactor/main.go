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
	exitSpendCap    = 3   // stopped at --max-cost; a rerun with a higher cap finishes the rest
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
	case errors.As(err, &ue):
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
		// Runnable, so that cobra checks its arguments (Args) and an
		// unknown subcommand is an error of ours, not text to recognise.
		Args: unknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	// Cobra's errors of flags and arguments become usage errors where cobra
	// makes them: in the flag error function, and in each command's
	// argument check, cobra's own completion command's included.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newBatchCmd(e), newSimCmd(e), newDemoCmd(e), newBenchCmd(e), newSoakCmd(e), newBudgetCmd(e))
	root.InitDefaultCompletionCmd()
	argsAreUsage(root)
	return root
}

// argsAreUsage makes the argument check of c and of every command under it
// return a usageError.
func argsAreUsage(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		argsAreUsage(sub)
	}
}

// unknownCommand refuses any argument of a command that only has
// subcommands, as cobra does by itself for a command it cannot run: by
// name, with the subcommands it may have meant.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
	}
	return errors.New(msg)
}
