package budget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/redis/go-redis/v9"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/budget/redisbudget"
)

// redisName names a budget on Redis in a member's log lines.
const redisName = "budget on Redis"

// redisLink is an executor's connection to a budget on Redis: the client,
// and the goroutines of its broker's calls, which close waits for before
// it closes the client (a broker restarted by its supervisor shares it).
type redisLink struct {
	opts   *redisbudget.Options
	client redis.UniversalClient
	store  *redisbudget.Store
	// member names this executor in Redis: its limits among the members',
	// and the pauses it publishes, which it does not apply twice.
	member string
	calls  sync.WaitGroup
}

func newRedisLink(rawURL string) (*redisLink, error) {
	opts, err := redisbudget.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	client := opts.NewClient()
	store, err := redisbudget.New(client, redisbudget.Config{})
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	host, _ := os.Hostname()
	return &redisLink{opts: opts, client: client, store: store,
		member: fmt.Sprintf("%s/%d/%08x", host, os.Getpid(), rand.Uint32())}, nil
}

// close waits for the calls under way (each ends within ReplyTimeout, or at
// once once its broker stopped) and closes the client.
func (l *redisLink) close() {
	l.calls.Wait()
	_ = l.client.Close()
}

// redisBackend keeps the budget in Redis through a redisbudget.Store. Each
// call runs on a goroutine of its own, with ReplyTimeout as its deadline,
// and sends the broker its outcome: an answer, or a *budgetDown if it
// failed, then a *callDone. Redis answers every call, so unlike the
// service's backend this one needs no timer: a call that fails or times
// out is the sign that the budget is down, and a probe that succeeds that
// it is back. Pauses arrive through the store's pub/sub.
type redisBackend struct {
	cfg  MemberConfig
	link *redisLink
	root *actor.RootContext
	self *actor.PID
	// ctx is cancelled when the broker stops: calls under way then end.
	ctx    context.Context
	cancel context.CancelFunc

	inflight    int  // calls under way
	leaving     bool // a graceful stop waits for the calls under way
	subscribing bool // a subscription to the pauses is being made

	mu      sync.Mutex // guards what follows, set by the subscribing goroutine
	sub     *redisbudget.Pauses
	stopped bool
}

func newRedisBackend(cfg MemberConfig, link *redisLink) *redisBackend {
	ctx, cancel := context.WithCancel(context.Background())
	return &redisBackend{cfg: cfg, link: link, ctx: ctx, cancel: cancel}
}

// callDone follows the outcome of every call; ok says it succeeded.
type callDone struct{ ok bool }

// subscribeDone says an attempt to subscribe to the pauses ended.
type subscribeDone struct{}

func (r *redisBackend) name() string     { return redisName }
func (r *redisBackend) where() slog.Attr { return slog.Any("redis", r.link.opts) }

func (r *redisBackend) start(ctx actor.Context) {
	r.root, r.self = ctx.ActorSystem().Root, ctx.Self()
	r.subscribe()
}

func (r *redisBackend) stop() {
	r.cancel()
	r.mu.Lock()
	r.stopped = true
	sub := r.sub
	r.sub = nil
	r.mu.Unlock()
	if sub != nil {
		_ = sub.Close() // ends the forwarding goroutine
	}
}

func (r *redisBackend) lease(_ actor.Context, ask uint64, want actors.LeaseWanted, limits actors.Limits) {
	r.call(func(ctx context.Context) (any, error) {
		g, err := r.link.store.Lease(ctx, r.cfg.Key, r.link.member, want, limits)
		if err != nil {
			return nil, err
		}
		return &leaseAnswer{ask: ask, wait: g.Wait,
			lease: actors.LeaseGranted{ID: g.ID, Requests: g.Requests, Tokens: g.Tokens, Expires: g.Expires}}, nil
	})
}

func (r *redisBackend) giveBack(_ actor.Context, id uint64, requests, tokens int64) {
	r.call(func(ctx context.Context) (any, error) {
		_, err := r.link.store.Return(ctx, r.cfg.Key, id, requests, tokens)
		return nil, err
	})
}

func (r *redisBackend) adjust(_ actor.Context, delta int64) {
	r.call(func(ctx context.Context) (any, error) {
		_, err := r.link.store.Adjust(ctx, r.cfg.Key, delta)
		return nil, err
	})
}

func (r *redisBackend) pause(_ actor.Context, until time.Time) {
	r.call(func(ctx context.Context) (any, error) {
		_, err := r.link.store.Pause(ctx, r.cfg.Key, r.link.member, until)
		return nil, err
	})
}

func (r *redisBackend) probe(actor.Context) {
	r.call(func(ctx context.Context) (any, error) {
		return &budgetUp{}, r.link.store.Ping(ctx, r.cfg.Key)
	})
}

// leave waits, if asked to, for the calls under way: the leases given back
// just before are among them. A member's record in Redis lapses by itself.
func (r *redisBackend) leave(ctx actor.Context, wait bool) {
	if !wait {
		return
	}
	r.leaving = true
	r.flushIfDone(ctx)
}

func (r *redisBackend) flushIfDone(ctx actor.Context) {
	if r.leaving && r.inflight == 0 {
		r.leaving = false
		ctx.Send(ctx.Self(), &flushed{})
	}
}

func (r *redisBackend) receive(ctx actor.Context, m any) {
	switch m := m.(type) {
	case *callDone:
		r.inflight--
		if m.ok && !r.subscribing && !r.subscribed() {
			r.subscribe() // Redis answers again: the subscription may succeed now
		}
		r.flushIfDone(ctx)
	case *subscribeDone:
		r.subscribing = false
	}
}

// call runs f on a goroutine of its own, with ReplyTimeout as its
// deadline, and sends the broker what f returns, or a *budgetDown if it
// failed, then a *callDone. Nothing is sent once the broker has stopped.
func (r *redisBackend) call(f func(context.Context) (any, error)) {
	r.inflight++
	r.link.calls.Go(func() {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ReplyTimeout)
		msg, err := f(ctx)
		cancel()
		if r.ctx.Err() != nil {
			return // stopped
		}
		if err != nil {
			msg = r.down(err)
		}
		if msg != nil {
			r.root.Send(r.self, msg)
		}
		r.root.Send(r.self, &callDone{ok: err == nil})
	})
}

// down says why a call failed, without the URL's password or the hash of
// the API key in the budget's key. An error of authentication or
// permission is a refusal.
func (r *redisBackend) down(err error) *budgetDown {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &budgetDown{reason: "no answer within " + r.cfg.ReplyTimeout.String()}
	}
	// The store's errors name the budget's key: say only what Redis said.
	if cause := errors.Unwrap(err); cause != nil {
		err = cause
	}
	text := r.link.opts.Redact(err.Error())
	if _, hash, ok := strings.Cut(r.cfg.Key, "#"); ok && hash != "" {
		text = strings.ReplaceAll(text, hash, "…")
	}
	refused := false
	for _, code := range []string{"NOAUTH", "WRONGPASS", "NOPERM"} {
		refused = refused || strings.HasPrefix(text, code)
	}
	return &budgetDown{reason: "Redis: " + shorten(text), refused: refused}
}

// subscribe subscribes to the budget's pauses on a goroutine; the pauses of
// other members then reach the broker as *pauseShared. Once made, the
// subscription lasts: the client subscribes again after a reconnection.
func (r *redisBackend) subscribe() {
	r.subscribing = true
	r.link.calls.Go(func() {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ReplyTimeout)
		p, err := r.link.store.Subscribe(ctx, r.cfg.Key)
		cancel()
		if err == nil {
			r.mu.Lock()
			if r.stopped {
				r.mu.Unlock()
				_ = p.Close()
				return
			}
			r.sub = p
			r.mu.Unlock()
			r.link.calls.Go(func() { r.forward(p) })
		}
		if r.ctx.Err() == nil {
			r.root.Send(r.self, &subscribeDone{})
		}
	})
}

func (r *redisBackend) subscribed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sub != nil
}

// forward hands the broker the pauses of the other members, until the
// subscription is closed.
func (r *redisBackend) forward(p *redisbudget.Pauses) {
	for ev := range p.C() {
		if ev.Member != r.link.member {
			r.root.Send(r.self, &pauseShared{until: ev.Until})
		}
	}
}
