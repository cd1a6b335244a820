package actors

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/lionactor/lionactor/internal/stopmail"
	"github.com/lionactor/lionactor/messages"
)

// stormDetected tells the supervisor, from its own HandleFailure, to fail
// everything and stop.
type stormDetected struct{}

// abortDone is the queue's reply to an Abort sent with a sender.
type abortDone struct{}

// supervisor is the root of an executor's tree. It spawns the limiter, the
// queue and the callers, forwards the public messages, and supervises: a
// failed caller is restarted, at most MaxRestarts times within RestartWindow;
// past that the executor fails every pending request with ErrRestartStorm and
// stops, rather than restart forever or hang.
type supervisor struct {
	cfg      *config
	ready    chan<- pids
	mailbox  *stopmail.Dropped
	self     *actor.PID
	tree     pids
	callers  map[string]bool
	restarts []time.Time
	stormed  bool
	// restarted is set in an incarnation made by a restart, which stops the
	// executor instead of serving: see Receive.
	restarted bool
	// stopping is set once the tree is going away (Stopping, Restarting):
	// the queue may be gone, so submits are answered here.
	stopping bool
}

// SupervisorProps returns the props of an executor's supervisor. Once it has
// spawned its children it sends their PIDs on ready (buffered, capacity 1).
func supervisorProps(cfg *config, ready chan<- pids) *actor.Props {
	mailbox, dropped := mailboxOf()
	incarnations := 0 // the producer runs on the actor's goroutine, one call at a time
	return actor.PropsFromProducer(func() actor.Actor {
		incarnations++
		// A fresh struct per incarnation: nothing survives a restart by accident.
		return &supervisor{cfg: cfg, ready: ready, mailbox: dropped, restarted: incarnations > 1}
	}, append(cfg.propsOptions(), mailbox)...)
}

// propsOptions are the options of every actor of the tree.
func (c *config) propsOptions() []actor.PropsOption {
	if c.dispatch == nil {
		return nil
	}
	return []actor.PropsOption{actor.WithDispatcher(c.dispatch)}
}

// Receive implements actor.Actor.
func (s *supervisor) Receive(ctx actor.Context) {
	if s.mailbox.IsStopped() {
		// The tree has ended, and yet a message arrives: protoactor's
		// handleRestart revives even a stopped actor, so a parent's restart
		// sent just before the stop (its sender resolved the PID before
		// finalizeStop removed it) makes a new incarnation after it. That
		// one only stops again; it must not end the tree a second time, and
		// the mailbox already answers submits.
		if _, started := ctx.Message().(*actor.Started); started {
			ctx.Stop(ctx.Self())
		}
		return
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if s.restarted {
			// The parent restarted the executor (its own strategy, or an
			// all-for-one restart of a sibling). Restarting stopped the
			// children, the queue with the requests it held; a new queue
			// would leave the handles of what the old one never received
			// hanging. The executor stops instead, and its end covers them.
			s.stopping = true
			s.cfg.Logger.Error("lionactor: executor restarted by its parent; stopping")
			ctx.Stop(ctx.Self())
			return
		}
		s.start(ctx)
	case *messages.Submit:
		if s.stopping {
			// Forwarded now, it could reach a queue already gone and be
			// answered with a dead letter instead of a rejection.
			reject(ctx, ctx.Sender(), m, messages.ErrStopped)
			return
		}
		ctx.Forward(s.tree.Queue)
	case *messages.Cancel:
		if !s.stopping {
			ctx.Forward(s.tree.Queue)
		}
	case *PauseUntil, *SetLimits, *AdjustTokens:
		ctx.Forward(s.tree.Limiter)
	case *BrokerState:
		s.cfg.buckets.shared.state.Store(m)
	case *messages.StatsQuery:
		if ctx.Sender() != nil {
			ctx.Respond(s.cfg.counters.Stats(s.cfg.buckets, time.Now()))
		}
	case *stormDetected:
		ctx.Request(s.tree.Queue, &abortQueue{Err: messages.ErrRestartStorm, Fail: true, Done: make(chan struct{})})
	case *abortDone:
		ctx.Stop(ctx.Self())
	case *actor.Stopping, *actor.Restarting:
		s.stopping = true
	case *actor.Stopped:
		// The children are gone: nothing of the tree handles a message any
		// more, and what is left in this mailbox is dropped (see package stopmail).
		s.mailbox.Stopped(ctx.ActorSystem().Root)
		if s.cfg.OnStopped != nil {
			s.cfg.OnStopped(s.cfg.tree)
		}
		close(s.cfg.stopped)
	}
}

func (s *supervisor) start(ctx actor.Context) {
	s.self = ctx.Self()
	// The limiter sends permits to the queue and the queue asks the limiter:
	// name the queue's PID before spawning either.
	queuePID := actor.NewPID(ctx.Self().Address, ctx.Self().Id+"/queue")
	opts := s.cfg.propsOptions()
	var broker *actor.PID
	if s.cfg.LeaseBroker != nil {
		s.cfg.buckets.shared.start(time.Now())
		var err error
		if broker, err = ctx.SpawnNamed(s.cfg.LeaseBroker, "budget"); err != nil {
			panic(fmt.Sprintf("actors: spawning lease broker: %v", err))
		}
	}
	limiter, err := ctx.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return newLimiter(s.cfg.buckets, queuePID, broker)
	}, opts...), "limiter")
	if err != nil {
		panic(fmt.Sprintf("actors: spawning limiter: %v", err))
	}
	// The queue's mailbox holds the message submits it has not read yet:
	// give it the one that answers them if it stops first.
	queueMailbox, queueDropped := mailboxOf()
	queue, err := ctx.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return newQueue(s.cfg, limiter, queueDropped)
	}, append(opts, queueMailbox)...), "queue")
	if err != nil || queue.Id != queuePID.Id {
		panic(fmt.Sprintf("actors: spawning queue: %v", err))
	}
	s.tree = pids{Supervisor: ctx.Self(), Queue: queue, Limiter: limiter, Broker: broker}
	s.callers = make(map[string]bool, s.cfg.Concurrency)
	props := actor.PropsFromProducer(func() actor.Actor { return newCaller(queue, &s.cfg.calls) }, opts...)
	for i := range s.cfg.Concurrency {
		c, err := ctx.SpawnNamed(props, fmt.Sprintf("caller-%d", i))
		if err != nil {
			panic(fmt.Sprintf("actors: spawning caller: %v", err))
		}
		s.tree.Callers = append(s.tree.Callers, c)
		s.callers[c.Id] = true
	}
	if s.ready != nil {
		s.ready <- s.tree
		s.ready = nil
	}
}

// HandleFailure implements actor.SupervisorStrategy for the supervisor's
// children. It runs on the supervisor's goroutine.
func (s *supervisor) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ any) {
	if !s.callers[child.Id] {
		// The queue and the limiter hold every request's state: a restart
		// would lose it. A panic there is a bug; keep the state and go on.
		s.cfg.Logger.Error("lionactor: actor failed; resuming", slog.String("actor", child.Id), slog.Any("reason", reason))
		sup.ResumeChildren(child)
		return
	}
	if s.stormed || s.stopping {
		// Never restart a caller once the tree stops: the stop may already
		// have stopped it, and protoactor's handleRestart does not check
		// for that. It would make a new incarnation of a stopped actor,
		// gone from the registry and from this supervisor's children, whose
		// worker goroutine nothing would ever end.
		sup.StopChildren(child)
		return
	}
	now := time.Now()
	s.cfg.counters.restarts.Add(1)
	s.restarts = append(s.restarts, now)
	for len(s.restarts) > 0 && now.Sub(s.restarts[0]) > s.cfg.RestartWindow {
		s.restarts = s.restarts[1:]
	}
	if len(s.restarts) > s.cfg.MaxRestarts {
		s.stormed = true
		s.cfg.Logger.Error("lionactor: caller restart limit exceeded; failing pending requests and stopping",
			slog.Int("restarts", len(s.restarts)), slog.Duration("window", s.cfg.RestartWindow))
		err := messages.ErrRestartStorm
		s.cfg.fatal.Store(&err)
		sup.StopChildren(child)
		system.Root.Send(s.self, &stormDetected{})
		return
	}
	s.cfg.Logger.Warn("lionactor: caller crashed; restarting", slog.String("actor", child.Id), slog.Any("reason", reason))
	// Tell the queue before the restart: the restarted caller's callerReady
	// then arrives after the crash is accounted for.
	system.Root.Send(s.tree.Queue, &callerCrashed{caller: child, reason: reason})
	sup.RestartChildren(child)
}
