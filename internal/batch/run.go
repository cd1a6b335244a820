package batch

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/lionactor/lionactor/messages"
	"github.com/lionactor/lionactor/runtime"
)

// Input is what a run reads.
type Input struct {
	// R holds one request per line. Scan it first to refuse duplicate ids
	// before anything is sent.
	R io.Reader
	// Prior holds the results of earlier runs (ReadPrior): requests with a
	// final result there are skipped, unless Config says to rerun them.
	// Nil means none.
	Prior *Prior
	// Total is the number of requests in R if known (for progress), else 0.
	Total int
}

// ErrInterrupted is returned by Run when ctx ended the run early; the
// Summary says how many requests remain.
var ErrInterrupted = errors.New("batch: interrupted")

// Run reads requests from in, runs them, and writes a result line to out as
// each ends. It returns when every request read has a result, or, if ctx
// ends first, once in-flight calls have finished (within Grace), with
// ErrInterrupted. progress, if not nil, is told of every change.
func Run(ctx context.Context, cfg Config, in Input, out io.Writer, progress Reporter) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := newRunner(cfg, in, out, progress)
	return r.run(ctx)
}

// item is what the writer handles: a request's terminal snapshot, a line
// the reader already failed, or an index that produces no line.
type item struct {
	index int
	ev    *messages.Event
	res   *Result // a failure made by the reader
	skip  bool
}

// row is what the runner remembers of an input line while it runs.
type row struct {
	key, hash    string
	id, metadata json.RawMessage
	model        string // as the price table knows it
	handle       *runtime.Handle
}

type runner struct {
	cfg      Config
	in       Input
	out      io.Writer
	progress Reporter

	eng      engine            // one executor and model, or a router over deployments
	spendCap *runtime.SpendCap // nil without Config.MaxCost

	window  chan struct{} // one slot per request between submit and write
	results chan item     // terminal snapshots, from the observer: never blocks (see window)
	reader  chan item     // from the reader

	mu   sync.Mutex
	rows map[int]*row

	sum         *Summary
	rec         *Recorder // nil unless a report is written
	start       time.Time
	metricsAddr string // where metrics are served, once listening
}

func newRunner(cfg Config, in Input, out io.Writer, progress Reporter) *runner {
	window := cfg.Queue + cfg.Concurrency
	return &runner{
		cfg: cfg, in: in, out: out, progress: progress,
		window:  make(chan struct{}, window),
		results: make(chan item, window),
		reader:  make(chan item),
		rows:    map[int]*row{},
		sum:     newSummary(cfg),
		rec:     newRecorder(cfg),
	}
}

// observe runs on the executor's goroutines for every snapshot. It must not
// block: results has room for every request that holds a window slot.
func (r *runner) observe(ev messages.Event) {
	r.record(ev)
	switch {
	case ev.Status == messages.StatusQueued && ev.Attempt > 0 && isRetry(ev):
		r.sum.retried()
	case ev.Status == messages.StatusCalling:
		r.sum.called(ev.Timings().CallStarted)
	}
	r.sum.routed(ev)
	if !ev.Status.Terminal() {
		return
	}
	idx, err := strconv.Atoi(ev.Metadata()[indexKey])
	if err != nil {
		return // not one of ours
	}
	r.results <- item{index: idx, ev: &ev}
}

// indexKey is the snapshot metadata that maps a request back to its line.
const indexKey = "batch.index"

func (r *runner) run(ctx context.Context) (*Summary, error) {
	if r.cfg.MaxCost > 0 {
		spendCap, err := runtime.NewSpendCap(r.cfg.MaxCost)
		if err != nil {
			return nil, err
		}
		// The cap is the results file's: what its lines cost before counts.
		spendCap.Charge(r.in.Prior.Spent())
		r.sum.update(func(s *Snapshot) { s.SpentBefore = r.in.Prior.Spent() })
		r.spendCap = spendCap
	}
	start := newSingle
	if r.cfg.routed() {
		start = newRouted
	}
	eng, err := start(r.cfg, r.observe, r.spendCap)
	if err != nil {
		return nil, err
	}
	r.eng = eng
	defer eng.Close()
	stopMetrics, err := r.serveMetrics()
	if err != nil {
		_ = eng.StopNow(context.Background())
		return nil, err
	}
	defer stopMetrics()

	r.start = time.Now()
	r.sum.begin(r.start, r.in.Total)
	if r.progress != nil {
		r.progress.Start(r.sum)
		defer r.progress.Stop(r.sum)
	}

	var (
		capped   bool
		writeErr error
	)
	if r.cfg.BatchAPI != nil {
		writeErr = r.viaBatchAPI(ctx)
	} else {
		readerDone := make(chan readerEnd, 1)
		go func() { readerDone <- r.read(ctx) }()
		capped, writeErr = r.write(ctx, readerDone)
	}

	interrupted := ctx.Err() != nil
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Grace+5*time.Second)
	defer cancel()
	// Every request has ended unless the run was interrupted or failed: a
	// graceful stop then waits for nothing, but gives a shared budget's
	// leases back at once.
	stop := eng.Stop
	if interrupted || writeErr != nil {
		stop = eng.StopNow
	}
	if err := stop(stopCtx); err != nil && writeErr == nil {
		writeErr = err
	}
	eng.finish(r.sum, time.Now())
	if err := r.writeReport(time.Now()); err != nil && writeErr == nil {
		writeErr = err
	}
	switch {
	case writeErr != nil:
		return r.sum, writeErr
	case interrupted && r.sum.Snapshot().Remaining() > 0:
		// An interrupt that came after the last result left nothing to do.
		return r.sum, ErrInterrupted
	case capped:
		return r.sum, ErrSpendCap
	}
	return r.sum, nil
}
