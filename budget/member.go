package budget

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/redisbudget"
	"github.com/lionactor/lionactor/messages"
)

// Defaults of MemberConfig.
const (
	DefaultReplyTimeout   = time.Second
	DefaultRejoinInterval = time.Second
	DefaultListenAddr     = "127.0.0.1:0"
)

// MemberConfig makes an executor a member of a shared budget: set it as
// runtime.Config.SharedBudget. Its executor then takes every rate permit
// from leases of the budget at Address: a budget service's, or one kept in
// Redis.
type MemberConfig struct {
	// Address is where the budget is: the budget service's host:port, or
	// the URL of a Redis server that keeps it (redis://, rediss:// for
	// TLS, unix:// for a socket, master_name=NAME for Sentinel: see
	// redisbudget.ParseURL), such as redis://user:password@host:6379/0.
	// A password in it never appears in errors, logs, Stats or String.
	Address string
	// Key names the budget; use [KeyFor].
	Key string
	// ExpectedMembers is how many processes share the budget. While the
	// budget cannot be reached, this member keeps to its executor's
	// limits divided by ExpectedMembers. At least 1.
	ExpectedMembers int
	// ReplyTimeout is how long the member waits for an answer of the
	// budget before falling back to its local share: for a budget service,
	// any word from it after a lease request (a joined member also speaks
	// to the service at least every third of it, and the service holds
	// back its share once it has been silent for three quarters of it);
	// on Redis, the deadline of every call. 0 means DefaultReplyTimeout.
	ReplyTimeout time.Duration
	// RejoinInterval is how often a member that fell back asks whether the
	// budget is back. 0 means DefaultRejoinInterval.
	RejoinInterval time.Duration

	// The rest applies to a budget service only: a member of a budget on
	// Redis listens on nothing, and its URL says how to authenticate
	// (user:password@) and whether to use TLS (rediss://).

	// ListenAddr is where this process's remote layer listens, for the
	// service's answers, if the executor's actor system has none started
	// (an executor from runtime.Start never has). "" means
	// DefaultListenAddr.
	ListenAddr string
	// Secret, if set, is the secret shared with the service (see
	// [Secret]): every message to the service then carries proof of it,
	// and answers without a valid proof are ignored. At least MinSecretLen
	// bytes; the service must have the same.
	Secret Secret
	// TLS, if set, makes this member talk to the service over mutual TLS
	// (see [TLSFiles]). It applies to the remote layer Attach starts; an
	// actor system with a remote layer already started is refused with it.
	TLS TLSFiles
}

// onRedis reports whether addr is a URL (of a Redis server) rather than a
// budget service's host:port, which never holds "://".
func onRedis(addr string) bool { return strings.Contains(addr, "://") }

// Validate reports an invalid field as a *messages.ConfigError.
func (c MemberConfig) Validate() error {
	bad := func(field, reason string) error {
		return &messages.ConfigError{Field: "SharedBudget." + field, Reason: reason}
	}
	if err := CheckAddress(c.Address, false); err != nil {
		return bad("Address", err.Error())
	}
	if onRedis(c.Address) {
		switch {
		case c.ListenAddr != "":
			return bad("ListenAddr", "applies to a budget service only: a member of a budget on Redis listens on nothing")
		case c.TLS.Enabled():
			return bad("TLS", "applies to a budget service only: for TLS to Redis, use a rediss:// URL (ca_file=PATH for a CA of your own)")
		case len(c.Secret) > 0:
			return bad("Secret", "applies to a budget service only: Redis authenticates by the URL's user and password")
		}
	}
	if c.ListenAddr != "" {
		if _, _, err := splitAddr("SharedBudget.ListenAddr", c.ListenAddr, true); err != nil {
			return err
		}
	}
	if err := c.Secret.check("SharedBudget.Secret"); err != nil {
		return err
	}
	if err := c.TLS.check("SharedBudget.TLS"); err != nil {
		return err
	}
	switch {
	case c.Key == "":
		return bad("Key", "must not be empty (use budget.KeyFor)")
	case !utf8.ValidString(c.Key):
		return bad("Key", "must be valid UTF-8")
	case c.ExpectedMembers < 1:
		return bad("ExpectedMembers", "must be at least 1")
	case c.ReplyTimeout < 0:
		return bad("ReplyTimeout", "must not be negative")
	case c.RejoinInterval < 0:
		return bad("RejoinInterval", "must not be negative")
	}
	return nil
}

// checkRedisURL reports what is wrong with addr as the URL of a Redis
// server, without its passwords.
func checkRedisURL(addr string) error {
	if _, err := redisbudget.ParseURL(addr); err != nil {
		var ce *messages.ConfigError
		if errors.As(err, &ce) {
			return fmt.Errorf("want host:port or a Redis URL: %s", ce.Reason)
		}
		return err
	}
	return nil
}

func (c MemberConfig) withDefaults() MemberConfig {
	if c.ReplyTimeout == 0 {
		c.ReplyTimeout = DefaultReplyTimeout
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = DefaultRejoinInterval
	}
	if c.ListenAddr == "" && !onRedis(c.Address) {
		c.ListenAddr = DefaultListenAddr
	}
	return c
}

// String describes c without its secrets: the password of a Redis URL, the
// shared secret and the hash of the API key in Key are left out.
func (c MemberConfig) String() string {
	addr := c.Address
	if onRedis(addr) {
		if o, err := redisbudget.ParseURL(addr); err == nil {
			addr = o.String()
		} else {
			addr = "(an invalid URL)"
		}
	}
	endpoint, _, _ := strings.Cut(c.Key, "#")
	s := fmt.Sprintf("budget.MemberConfig{Address: %q, Key: %q, ExpectedMembers: %d, ReplyTimeout: %v, RejoinInterval: %v",
		addr, endpoint+"#…", c.ExpectedMembers, c.ReplyTimeout, c.RejoinInterval)
	if c.ListenAddr != "" {
		s += fmt.Sprintf(", ListenAddr: %q", c.ListenAddr)
	}
	if len(c.Secret) > 0 {
		s += ", Secret: " + messages.Redacted
	}
	if c.TLS.Enabled() {
		s += fmt.Sprintf(", TLS: %+v", c.TLS)
	}
	return s + "}"
}

// GoString is String, for %#v.
func (c MemberConfig) GoString() string { return c.String() }

// Attach implements runtime.SharedBudget. For a budget service, it starts
// the remote layer on system if it has none (release shuts that down
// again); for a budget on Redis, it makes a client (release closes it,
// once the broker's calls have ended) and starts nothing on system. It
// returns the props of the executor's lease broker.
func (c MemberConfig) Attach(system *actor.ActorSystem, limits actors.Limits, logger *slog.Logger) (*actor.Props, func(), error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	c = c.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(slog.String("component", "budget"))
	if onRedis(c.Address) {
		link, err := newRedisLink(c.Address)
		if err != nil {
			return nil, nil, err
		}
		return brokerProps(c, limits, logger, func() backend { return newRedisBackend(c, link) }), link.close, nil
	}
	release := func() {}
	var watch *tlsWatch
	switch {
	case remoteOf(system) == nil:
		var opts []remote.ConfigOption
		if c.TLS.Enabled() {
			server, client, err := c.TLS.load("SharedBudget.TLS")
			if err != nil {
				return nil, nil, err
			}
			watch = &tlsWatch{}
			opts = remoteOptions(server, client, watch)
		}
		host, port, _ := splitAddr("ListenAddr", c.ListenAddr, true)
		r, err := startRemote(system, host, port, opts...)
		if err != nil {
			return nil, nil, err
		}
		release = func() { shutdownRemote(r) }
	case c.TLS.Enabled():
		return nil, nil, &messages.ConfigError{Field: "SharedBudget.TLS", Reason: "the actor system's remote layer is already started: give it TLS options (remote.WithServerOptions, remote.WithDialOptions) and leave TLS unset"}
	}
	service := actor.NewPID(c.Address, ServiceName)
	return brokerProps(c, limits, logger, func() backend { return newServiceBackend(c, service, watch) }), release, nil
}
