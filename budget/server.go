package budget

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
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
func Listen(addr string, cfg ServiceConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port, err := splitAddr("addr", addr, true)
	if err != nil {
		return nil, err
	}
	logger := cfg.withDefaults().Logger
	system := newSystem(logger)
	r, err := startRemote(system, host, port)
	if err != nil {
		system.Shutdown()
		return nil, err
	}
	svc, err := NewService(system, cfg)
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

// CheckAddress reports what is wrong with addr as a host:port, or nil. An
// address to listen on may have port 0 (any free port); an address to
// connect to may not.
func CheckAddress(addr string, listen bool) error {
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
func startRemote(system *actor.ActorSystem, host string, port int) (r *remote.Remote, err error) {
	cfg := remote.Configure(host, port)
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

// remoteOf returns the remote layer started on system, or nil.
func remoteOf(system *actor.ActorSystem) (r *remote.Remote) {
	defer func() {
		if recover() != nil {
			r = nil
		}
	}()
	return remote.GetRemote(system)
}
