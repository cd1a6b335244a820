package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	goruntime "runtime"
	"slices"
	"time"
)

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
// medianOf is the median of one figure over runs.
func medianOf[T any](runs []T, figure func(T) float64) float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = figure(r)
	}
	return median(xs)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the q-th quantile (0 ≤ q ≤ 1) of sorted by the
// nearest-rank method, or 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// ratio is a/b, or 0 when b is 0 (a figure with nothing to compare with).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// memSnapshot reads the allocator's counters.
func memSnapshot() goruntime.MemStats {
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m
}

// settledHeap collects garbage until the live heap is stable and returns the
// counters then.
func settledHeap() goruntime.MemStats {
	goruntime.GC()
	goruntime.GC()
	return memSnapshot()
}

// perItem is the growth of a counter from before to after, per item; a
// shrink counts as 0.
func perItem(before, after uint64, n int) float64 {
	if n <= 0 || after <= before {
		return 0
	}
	return float64(after-before) / float64(n)
}

// errTimeout reports a wait that the workload's own bound cut short.
var errTimeout = errors.New("timed out")

// waitFor polls cond every millisecond until it holds, ctx ends, or limit
// passes; what describes the wait in the error.
func waitFor(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w after %v", what, errTimeout, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// alternate runs each of fns reps times, interleaved: run r starts with
// fns[r mod len(fns)], so no subject is always first or last. It stops at
// the first error.
func alternate(reps int, fns ...func(rep int) error) error {
	for r := range reps {
		for i := range fns {
			if err := fns[(r+i)%len(fns)](r); err != nil {
				return err
			}
		}
	}
	return nil
}

// split divides n into parts shares whose sum is n.
func split(n, parts int) []int {
	out := make([]int, parts)
	for i := range out {
		out[i] = n / parts
		if i < n%parts {
			out[i]++
		}
	}
	return out
}
