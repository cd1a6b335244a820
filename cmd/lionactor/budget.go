package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lionactor/lionactor/budget"
)

func newBudgetCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "budget",
		Short: "Share one API key's rate limits among several lionactor processes",
		Long: `Several processes using the same API key share its provider limits. Run one
budget service, and give each process its address:

  lionactor budget serve --addr 127.0.0.1:7070
  lionactor batch --budget 127.0.0.1:7070 --budget-members 3 --rpm 5000 ...   # in each of 3 processes

Each process still gives the key's whole limits (--rpm, --tpm); the service
grants them short leases from one budget, so that together they keep to the
limits. If the service cannot be reached, each process keeps to the limits
divided by --budget-members until it is back.`,
		// Runnable, so that cobra refuses an unknown subcommand (NoArgs)
		// instead of printing the help.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newBudgetServeCmd(e))
	return cmd
}

func newBudgetServeCmd(e env) *cobra.Command {
	var (
		addr     string
		leaseTTL time.Duration
		verbose  bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a budget that lionactor processes share (--budget)",
		Long: `serve runs the budget service that lionactor batch --budget (or an executor
with runtime.Config.SharedBudget) takes its rate permits from. Budgets are kept
per API key and endpoint, named by a hash of the key: the key itself never
reaches the service. It runs until interrupted; members then keep to their
share of the limits until a service is back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := budget.CheckAddress(addr, true); err != nil {
				return usagef("--addr: %v", err)
			}
			if leaseTTL <= 0 {
				return usagef("--lease-ttl: must be positive")
			}
			// Verbose: the service's events and protoactor's. Otherwise only
			// the service's own warnings: protoactor logs an error each time
			// a member's connection ends, which members do when they finish.
			var logs slog.Handler = slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
			if !verbose {
				logs = prefixFilter{slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), "budget"}
			}
			cfg := budget.ServiceConfig{LeaseTTL: leaseTTL, Logger: slog.New(logs)}
			srv, err := budget.Listen(addr, cfg)
			if err != nil {
				// A bad setting, or an address it cannot listen on: nothing
				// was served.
				return usageError{err}
			}
			defer srv.Close()
			fmt.Fprintf(e.stdout, "budget service listening on %s\n", srv.Addr())
			fmt.Fprintf(e.stdout, "  lionactor batch --budget %s --budget-members N ...\n", srv.Addr())
			<-cmd.Context().Done()
			if st, err := srv.Stats(); err == nil {
				fmt.Fprintf(e.stdout, "granted %d leases (%d requests, %d returned unused) to %d members over %d keys; %d pauses\n",
					st.Granted, st.GrantedRequests, st.ReturnedRequests, st.Members, st.Keys, st.Pauses)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", "127.0.0.1:7070", "host:port to listen on (port 0: any free port, printed)")
	fl.DurationVar(&leaseTTL, "lease-ttl", budget.DefaultLeaseTTL, "how long a member may hold a lease; shorter frees a dead member's share sooner, longer means fewer round trips")
	fl.BoolVar(&verbose, "verbose", false, "log to stderr members joining and going quiet, new keys, pauses, and protoactor's connection events")
	return cmd
}

// prefixFilter passes on only the records whose message starts with
// prefix. Package budget's messages start with "budget" (the service's) or
// "lionactor: budget" (a member's), protoactor's and the executor's do not.
type prefixFilter struct {
	slog.Handler
	prefix string
}

func (h prefixFilter) Handle(ctx context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, h.prefix) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h prefixFilter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return prefixFilter{h.Handler.WithAttrs(attrs), h.prefix}
}

func (h prefixFilter) WithGroup(name string) slog.Handler {
	return prefixFilter{h.Handler.WithGroup(name), h.prefix}
}

// budgetNoticePrefix starts the messages of package budget's member: the
// batch command shows them without --verbose, so that a run says when it
// falls back to its share of the limits, and when it rejoins.
const budgetNoticePrefix = "lionactor: budget"
