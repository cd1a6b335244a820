package soak

import (
	"fmt"
	"io"
)

// The bounds of the growth checks: the floor (least value) of the last
// third of the samples after the warm-up against the floor of the first
// third. A leak raises the floor; a passing burst of requests (an
// executor-wide pause behind a 429 queues many) does not. Goroutines are
// counted net of the requests in flight, each of which holds one goroutine
// of the driver.
const (
	heapFactor     = 2
	heapSlack      = 16 << 20
	goroutineSlack = 50
	fdSlack        = 50
)

// checks judges a finished run.
func checks(rep Report) []Check {
	final := rep.After
	cs := []Check{
		{
			Name:   "ended once",
			OK:     final.Ended() == final.Submitted && rep.Terminals == final.Submitted && rep.Duplicates == 0,
			Detail: fmt.Sprintf("submitted %d, ended %d, terminal snapshots %d, duplicates %d", final.Submitted, final.Ended(), rep.Terminals, rep.Duplicates),
		},
		{
			Name:   "lost",
			OK:     rep.Lost == 0 && final.InFlight == 0,
			Detail: fmt.Sprintf("lost %d, in flight at the end %d", rep.Lost, final.InFlight),
		},
		{
			Name:   "load",
			OK:     final.Submitted > 0,
			Detail: fmt.Sprintf("submitted %d", final.Submitted),
		},
	}
	var steady []Sample
	for _, s := range rep.Samples {
		if s.Elapsed >= rep.Options.WarmUp {
			steady = append(steady, s)
		}
	}
	third := len(steady) / 3
	if third == 0 {
		return append(cs, Check{Name: "growth", OK: false,
			Detail: fmt.Sprintf("%d samples after the warm-up, 3 needed: run longer or sample more often", len(steady))})
	}
	first, last := floor(steady[:third]), floor(steady[len(steady)-third:])
	cs = append(cs,
		Check{
			Name:   "heap",
			OK:     last.Heap <= heapFactor*first.Heap+heapSlack,
			Detail: fmt.Sprintf("%.1f MiB → %.1f MiB (bound %d× + %d MiB)", mib(first.Heap), mib(last.Heap), heapFactor, heapSlack>>20),
		},
		Check{
			Name:   "goroutines",
			OK:     last.Goroutines <= first.Goroutines+goroutineSlack,
			Detail: fmt.Sprintf("%d → %d (bound + %d)", first.Goroutines, last.Goroutines, goroutineSlack),
		},
		Check{
			Name:   "fds",
			OK:     last.FDs <= first.FDs+fdSlack,
			Detail: fmt.Sprintf("%d → %d (bound + %d)", first.FDs, last.FDs, fdSlack),
		},
	)
	return cs
}

// floor returns the least heap, goroutines (net of the requests in
// flight) and fds among samples.
func floor(samples []Sample) Sample {
	var p Sample
	for i, s := range samples {
		g := s.Goroutines - int(s.InFlight)
		if i == 0 || s.Heap < p.Heap {
			p.Heap = s.Heap
		}
		if i == 0 || g < p.Goroutines {
			p.Goroutines = g
		}
		if i == 0 || s.FDs < p.FDs {
			p.FDs = s.FDs
		}
	}
	return p
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// WriteSummary writes the run's totals and checks.
func (r Report) WriteSummary(w io.Writer) error {
	a := r.After
	_, err := fmt.Fprintf(w, "soak: %s at %d requests/s (limit %d/s, %d callers): submitted %d, completed %d, failed %d, cancelled %d, refused %d, skipped %d, restarts %d, lost %d\n",
		r.Options.Duration, r.Options.Rate, r.Options.RequestsPerSecond, r.Options.Concurrency,
		a.Submitted, a.Completed, a.Failed, a.Cancelled, a.Refused, r.Skipped, r.Restarts, r.Lost)
	if err != nil {
		return err
	}
	for _, c := range r.Checks {
		verdict := "ok"
		if !c.OK {
			verdict = "FAIL"
		}
		if _, err := fmt.Fprintf(w, "check %-10s %-4s %s\n", c.Name, verdict, c.Detail); err != nil {
			return err
		}
	}
	return nil
}
