package budget

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/lionactor/lionactor/messages"
)

// Server is a standalone budget service: an actor system of its own with
// protoactor's remote layer listening on a TCP address.
type Server struct {
	*Service
	system *actor.ActorSystem
	remote *remote.Remote
}

// Listen starts a budget service reachable by members at addr
// ("127.0.0.1:7070"; port 0 picks a free one, see [Server.Addr]).
//
// With cfg.TLS it serves over mutual TLS. Without, it listens only on a
// loopback address unless cfg.Insecure is set, and logs a warning when it
// is: anything that reaches the port could then take the budget (or, with
// a secret, at least read the traffic).
func Listen(addr string, cfg ServiceConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port, err := splitAddr("addr", addr, true)
	if err != nil {
		return nil, err
	}
	logger := cfg.withDefaults().Logger // protoactor's too, without the component
	own := logger.With(slog.String("component", "budget"))
	var opts []remote.ConfigOption
	var refusedConns *atomic.Int64
	switch {
	case cfg.TLS.Enabled():
		server, client, err := cfg.TLS.load("TLS")
		if err != nil {
			return nil, err
		}
		refusedConns = &atomic.Int64{}
		log := &throttle{interval: time.Second}
		opts = remoteOptions(server, client, &tlsWatch{refusedIn: func(peer string, err error) {
			refusedConns.Add(1)
			if ok, held := log.allow(time.Now()); ok {
				own.Warn("budget: refused a connection",
					slog.String("from", peer), slog.String("reason", shorten(err.Error())),
					slog.Int64("refusals_not_logged", held))
			}
		}})
	case !isLoopback(host) && !cfg.Insecure:
		return nil, &messages.ConfigError{Field: "addr", Reason: fmt.Sprintf(
			"%s is not a loopback address, and without TLS the service listens on loopback only: give TLS files, or set Insecure to serve in clear", host)}
	case !isLoopback(host):
		risk := "anything that reaches it can take the budget"
		if len(cfg.Secret) > 0 {
			risk = "only holders of the secret are let in, but anything on the way can read the traffic"
		}
		own.Warn("budget: serving without TLS on a network address: "+risk, slog.String("addr", addr))
	}
	system := newSystem(logger)
	r, err := startRemote(system, host, port, opts...)
	if err != nil {
		system.Shutdown()
		return nil, err
	}
	svc, err := newService(system, cfg, refusedConns)
	if err != nil {
		r.Shutdown(false)
		system.Shutdown()
		return nil, err
	}
	return &Server{Service: svc, system: system, remote: r}, nil
}

// Addr is the address members use to reach the server.
func (s *Server) Addr() string { return s.system.Address() }

// Close stops the service and its remote layer and shuts its actor system
// down. Members fall back to their local shares until a service is back.
func (s *Server) Close() {
	s.Service.Stop()
	shutdownRemote(s.remote)
	s.system.Shutdown()
}

// newSystem is an actor system that logs to logger and keeps no goroutine
// alive after Shutdown.
func newSystem(logger *slog.Logger) *actor.ActorSystem {
	return actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
		actor.WithDeadLetterRequestLogging(false),
	)
}

// CheckAddress reports what is wrong with addr, or nil. An address to
// listen on is a host:port, which may have port 0 (any free port). An
// address to connect to is where a member reaches its budget
// (MemberConfig.Address): a budget service's host:port, not port 0, or the
// URL of a Redis server; an error never shows the URL's password.
func CheckAddress(addr string, listen bool) error {
	if onRedis(addr) {
		if listen {
			return errors.New("want host:port to listen on, got a URL")
		}
		return checkRedisURL(addr)
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	if host == "" {
		return fmt.Errorf("host missing in %q", addr)
	}
	lowest := 1
	if listen {
		lowest = 0
	}
	if port, err := strconv.Atoi(p); err != nil || port < lowest || port > 65535 {
		return fmt.Errorf("port must be a number from %d to 65535, got %q", lowest, p)
	}
	return nil
}

// splitAddr checks addr, named field in errors, and splits it.
func splitAddr(field, addr string, listen bool) (string, int, error) {
	if err := CheckAddress(addr, listen); err != nil {
		return "", 0, &messages.ConfigError{Field: field, Reason: err.Error()}
	}
	host, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return host, port, nil
}

// startRemote starts protoactor's remote layer on system. remote.Start
// panics when it cannot listen; this returns the error instead. Connections
// that fail are retried once: a member whose service has gone notices by
// its own timeout and must not queue messages behind long retries.
func startRemote(system *actor.ActorSystem, host string, port int, opts ...remote.ConfigOption) (r *remote.Remote, err error) {
	cfg := remote.Configure(host, port, opts...)
	cfg.MaxRetryCount = 1
	r = remote.NewRemote(system, cfg)
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("budget: starting remote on %s: %v", net.JoinHostPort(host, strconv.Itoa(port)), p)
		}
	}()
	r.Start()
	return r, nil
}

// shutdownRemote stops r gracefully. protoactor's graceful shutdown can
// panic, sending on the channel of a connection that closed a moment
// before; it has stopped its own actors by then, so the rest is done the
// hard way: the gRPC server is stopped, which closes every connection.
func shutdownRemote(r *remote.Remote) {
	defer func() {
		if recover() != nil {
			r.Shutdown(false)
		}
	}()
	r.Shutdown(true)
}

// isLoopback reports whether host names the loopback interface only.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// remoteOf returns the remote layer started on system, or nil.
func remoteOf(system *actor.ActorSystem) (r *remote.Remote) {
	defer func() {
		if recover() != nil {
			r = nil
		}
	}()
	return remote.GetRemote(system)
}
