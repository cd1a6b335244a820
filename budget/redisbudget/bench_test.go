package redisbudget

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lionactor/lionactor/actors"
	"github.com/lionactor/lionactor/internal/redistest"
)

// BenchmarkLease measures the cost of one grant: one Lease, one EVALSHA
// round trip to a real redis-server on this machine, with budget to spare
// so that every lease grants. Besides the mean (ns/op, which with several
// callers is the time per grant of them all together) it reports the
// median and the 99th percentile of one call's latency, and grants per
// second.
func BenchmarkLease(b *testing.B) {
	plenty := actors.Limits{RequestsPerSecond: 1e9, RequestBurst: 1e6, TokensPerSecond: 1e12, TokenBurst: 1e9}
	for _, transport := range []string{"loopback", "unix"} {
		srv := redistest.Start(b, redistest.Config{TCP: transport == "loopback"})
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/callers=%d", transport, callers), func(b *testing.B) {
				s := open(b, srv.URL()+"?pool_size=32", Config{})
				ctx := context.Background()
				k := fmt.Sprintf("bench/%s/%d", transport, callers)
				if _, err := s.Lease(ctx, k, "m", want(1, 0, 0), plenty); err != nil { // the key, and the scripts loaded
					b.Fatal(err)
				}
				lat := make([][]time.Duration, callers)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for c := range callers {
					member := fmt.Sprintf("m%d", c)
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							t := time.Now()
							g, err := s.Lease(ctx, k, member, want(8, 8000, 1000), plenty)
							lat[c] = append(lat[c], time.Since(t))
							if err != nil || g.Requests != 8 {
								b.Errorf("lease: %+v, %v", g, err)
								return
							}
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				all := slices.Concat(lat...)
				slices.Sort(all)
				at := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))].Microseconds()) }
				b.ReportMetric(at(0.5), "p50-µs")
				b.ReportMetric(at(0.99), "p99-µs")
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "grants/s")
			})
		}
	}
}
