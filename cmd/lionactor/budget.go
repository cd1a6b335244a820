package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lionactor/lionactor/budget"
	"github.com/lionactor/lionactor/messages"
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
divided by --budget-members until it is back.

Where a Redis server is already run, it can keep the budget instead, with no
service of lionactor's to run:

  lionactor batch --budget redis://user:password@host:6379/0 --budget-members 3 --rpm 5000 ...`,
		// Runnable, so that cobra refuses an unknown subcommand instead of
		// printing the help.
		Args: unknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newBudgetServeCmd(e))
	return cmd
}

func newBudgetServeCmd(e env) *cobra.Command {
	var (
		addr, secretEnv   string
		leaseTTL          time.Duration
		verbose, insecure bool
		tlsFiles          budget.TLSFiles
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a budget that lionactor processes share (--budget)",
		Long: `serve runs the budget service that lionactor batch --budget (or an executor
with runtime.Config.SharedBudget) takes its rate permits from. Budgets are kept
per API key and endpoint, named by a hash of the key: the key itself never
reaches the service. It runs until interrupted; members then keep to their
share of the limits until a service is back.

Only members get in: with --tls-cert, --tls-key and --tls-ca, those with a
certificate that CA signed (mutual TLS); with --secret-env, those that prove
they hold the secret in that variable (an HMAC on every message; the secret
never crosses the network). Give both to have both. Without TLS the service
listens on loopback only, unless --insecure. Refusals are logged and counted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := budget.CheckAddress(addr, true); err != nil {
				return usagef("--addr: %v", err)
			}
			if leaseTTL <= 0 {
				return usagef("--lease-ttl: must be positive")
			}
			secret, err := secretFromEnv(e.getenv, "--secret-env", secretEnv)
			if err != nil {
				return err
			}
			// Verbose: the service's events and protoactor's. Otherwise only
			// the service's own warnings: protoactor logs an error each time
			// a member's connection ends, which members do when they finish.
			var logs slog.Handler = slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
			if !verbose {
				logs = componentFilter{Handler: slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), component: budgetComponent}
			}
			cfg := budget.ServiceConfig{
				LeaseTTL: leaseTTL, Logger: slog.New(logs),
				TLS: tlsFiles, Secret: secret, Insecure: insecure,
			}
			srv, err := budget.Listen(addr, cfg)
			if err != nil {
				// A bad setting, or an address it cannot listen on: nothing
				// was served.
				var ce *messages.ConfigError
				if errors.As(err, &ce) && serveFlags[ce.Field] != "" {
					return usagef("%s: %s", serveFlags[ce.Field], ce.Reason)
				}
				return usageError{err}
			}
			defer srv.Close()
			secured := tlsFiles.Enabled() || secret != nil
			fmt.Fprintf(e.stdout, "budget service listening on %s\n", srv.Addr())
			fmt.Fprintf(e.stdout, "  lionactor batch --budget %s --budget-members N%s ...\n", srv.Addr(), memberFlags(tlsFiles, secretEnv))
			host, _, _ := net.SplitHostPort(srv.Addr())
			fmt.Fprintf(e.stdout, "  %s\n", protection(tlsFiles, secretEnv, net.ParseIP(host).IsLoopback()))
			<-cmd.Context().Done()
			if st, err := srv.Stats(); err == nil {
				fmt.Fprintf(e.stdout, "granted %d leases (%d requests, %d returned unused) to %d members over %d keys; %d pauses",
					st.Granted, st.GrantedRequests, st.ReturnedRequests, st.Members, st.Keys, st.Pauses)
				if secured {
					fmt.Fprintf(e.stdout, "; refused %d connections, %d messages", st.RefusedConnections, st.RefusedMessages)
				}
				fmt.Fprintln(e.stdout)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", "127.0.0.1:7070", "host:port to listen on (port 0: any free port, printed)")
	fl.DurationVar(&leaseTTL, "lease-ttl", budget.DefaultLeaseTTL, "how long a member may hold a lease; shorter frees a dead member's share sooner, longer means fewer round trips")
	fl.BoolVar(&verbose, "verbose", false, "log to stderr members joining and going quiet, new keys, pauses, and protoactor's connection events")
	fl.StringVar(&tlsFiles.Cert, "tls-cert", "", "PEM certificate of the service, naming its host: with --tls-key and --tls-ca, serve over mutual TLS")
	fl.StringVar(&tlsFiles.Key, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringVar(&tlsFiles.CA, "tls-ca", "", "PEM certificate of the CA that signs the members' certificates: only they can connect")
	fl.StringVar(&secretEnv, "secret-env", "", "environment variable holding a secret shared with the members (batch --budget-secret-env): messages without proof of it are refused")
	fl.BoolVar(&insecure, "insecure", false, "without TLS, listen on an address other than loopback all the same (the traffic is in clear)")
	return cmd
}

// serveFlags names the flag behind each field of budget.ServiceConfig that
// Listen may refuse.
var serveFlags = map[string]string{
	"addr": "--addr", "TLS.Cert": "--tls-cert", "TLS.Key": "--tls-key", "TLS.CA": "--tls-ca", "Secret": "--secret-env",
}

// memberFlags are the flags a member of a service secured so needs.
func memberFlags(tlsFiles budget.TLSFiles, secretEnv string) string {
	var s string
	if tlsFiles.Enabled() {
		s += " --budget-tls-cert CERT --budget-tls-key KEY --budget-tls-ca CA"
	}
	if secretEnv != "" {
		s += " --budget-secret-env " + secretEnv
	}
	return s
}

// protection says who can get in, and from where.
func protection(tlsFiles budget.TLSFiles, secretEnv string, loopback bool) string {
	var who, where string
	switch {
	case tlsFiles.Enabled() && secretEnv != "":
		who = "mutual TLS and a secret: only members with a certificate signed by " + tlsFiles.CA + " that hold the secret in $" + secretEnv + " get in"
	case tlsFiles.Enabled():
		who = "mutual TLS: only members with a certificate signed by " + tlsFiles.CA + " get in"
	case secretEnv != "":
		who = "no TLS: only members that prove the secret in $" + secretEnv + " get in, but the traffic is in clear"
	default:
		who = "no TLS and no secret: anything that reaches the port gets in"
	}
	if !tlsFiles.Enabled() {
		where = "; loopback only"
		if !loopback {
			where = "; reachable beyond this host (--insecure)"
		}
	}
	return "security: " + who + where
}

// secretFromEnv reads the secret from the environment variable name, given
// by flag; no name, no secret. Its value is never shown.
func secretFromEnv(getenv func(string) string, flag, name string) (budget.Secret, error) {
	if name == "" {
		return nil, nil
	}
	v := strings.TrimSpace(getenv(name))
	switch {
	case v == "":
		return nil, usagef("%s: %s is empty or not set", flag, name)
	case len(v) < budget.MinSecretLen:
		return nil, usagef("%s: the secret in %s must be at least %d bytes, it has %d (e.g. openssl rand -hex 32)", flag, name, budget.MinSecretLen, len(v))
	}
	return budget.Secret(v), nil
}

// componentFilter passes on only the records of one component: those
// logged through a logger made with the attribute component=<component>
// (as package budget makes its own), or carrying it. protoactor's and the
// executor's records have none.
type componentFilter struct {
	slog.Handler
	component string
	matched   bool // the attribute came through WithAttrs
}

func (h componentFilter) Handle(ctx context.Context, r slog.Record) error {
	if h.matched || h.carries(r) {
		return h.Handler.Handle(ctx, r)
	}
	return nil
}

func (h componentFilter) carries(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = h.is(a)
		return !found
	})
	return found
}

func (h componentFilter) is(a slog.Attr) bool {
	return a.Key == componentKey && a.Value.Kind() == slog.KindString && a.Value.String() == h.component
}

func (h componentFilter) WithAttrs(attrs []slog.Attr) slog.Handler {
	matched := h.matched || slices.ContainsFunc(attrs, h.is)
	return componentFilter{h.Handler.WithAttrs(attrs), h.component, matched}
}

func (h componentFilter) WithGroup(name string) slog.Handler {
	return componentFilter{h.Handler.WithGroup(name), h.component, h.matched}
}

// componentKey and budgetComponent are the attribute package budget puts
// on its loggers: the batch command shows their records without
// --verbose, so that a run says when it falls back to its share of the
// limits, and when it rejoins; budget serve shows its warnings.
const (
	componentKey    = "component"
	budgetComponent = "budget"
)
