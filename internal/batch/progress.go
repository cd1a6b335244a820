package batch

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Reporter shows a run's progress. Update is called after every result and
// must be cheap; Start and Stop bracket the run.
type Reporter interface {
	Start(*Summary)
	Update(*Summary)
	Stop(*Summary)
}

// Lines is a Reporter for logs and pipes: a plain line every Every.
type Lines struct {
	W     io.Writer
	Every time.Duration

	mu   sync.Mutex
	last time.Time
}

// Start implements Reporter.
func (l *Lines) Start(*Summary) { l.last = time.Now() }

// Update implements Reporter.
func (l *Lines) Update(m *Summary) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.last) < l.Every {
		return
	}
	l.last = time.Now()
	fmt.Fprintln(l.W, progressLine(m.Snapshot()))
}

// Stop implements Reporter.
func (l *Lines) Stop(m *Summary) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.W, progressLine(m.Snapshot()))
}

func progressLine(s Snapshot) string {
	total := "?"
	if s.Total > 0 {
		total = fmt.Sprint(s.Total - s.Skipped)
	}
	return fmt.Sprintf("progress: %d/%s done (%d ok, %d failed, %d invalid), %d retries, %s%s, ETA %s",
		s.Done(), total, s.Completed, s.Failed, s.InvalidInput, s.Retries, rates(s), spendPart(s), eta(s))
}

func rates(s Snapshot) string {
	if s.Batches != nil && s.Calls == 0 {
		return s.batchesRunning()
	}
	out := achieved(s.RPM()) + fmt.Sprintf(" rpm / %d", s.RPMLimit)
	if s.TPMLimit > 0 {
		out += ", " + achieved(s.TPM()) + fmt.Sprintf(" tpm / %d", s.TPMLimit)
	}
	return out
}

// achieved shows a rate, "-" while it cannot be told (see Snapshot.RPM).
func achieved(rate float64) string {
	if rate == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", rate)
}

func eta(s Snapshot) string {
	left := s.Total - s.Skipped - s.Done()
	// A provider batch answers all its requests at once: no pace to go by.
	if s.Total == 0 || left <= 0 || s.Done() == 0 || s.Batches != nil {
		return "-"
	}
	per := s.Elapsed() / time.Duration(s.Done())
	return (per * time.Duration(left)).Round(time.Second).String()
}

// Bar is a Reporter for terminals: a live progress bar.
type Bar struct {
	W io.Writer

	p   *mpb.Progress
	bar *mpb.Bar
	sum *Summary
}

// Start implements Reporter.
func (b *Bar) Start(m *Summary) {
	b.sum = m
	b.p = mpb.New(mpb.WithOutput(b.W), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	total := int64(m.Snapshot().Total)
	b.bar = b.p.AddBar(total,
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			s := b.sum.Snapshot()
			return fmt.Sprintf("%d ok %d failed %d retries", s.Completed, s.Failed+s.InvalidInput, s.Retries)
		})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			s := b.sum.Snapshot()
			return fmt.Sprintf("%s%s  ETA %s", rates(s), spendPart(s), eta(s))
		})),
	)
}

// Update implements Reporter.
func (b *Bar) Update(m *Summary) {
	s := m.Snapshot()
	if s.Total == 0 {
		b.bar.SetTotal(int64(s.Read+1), false)
	}
	b.bar.SetCurrent(int64(s.Done() + s.Skipped))
}

// Stop implements Reporter.
func (b *Bar) Stop(m *Summary) {
	s := m.Snapshot()
	b.bar.SetTotal(int64(s.Done()+s.Skipped), true)
	b.p.Wait()
}
