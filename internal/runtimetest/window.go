package runtimetest

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// MaxInWindow is the most of the sorted times within any window [t, t+d]
// closed at both ends: an exact pace of r a second puts r + 1 starts in a
// window of one second, one at each end.
func MaxInWindow(times []time.Time, d time.Duration) int {
	best, lo := 0, 0
	for hi, t := range times {
		for times[lo].Add(d).Before(t) {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// WindowLimit is a strict per-second rate limit in front of a provider, as
// a provider that enforces a per-minute limit per second is: it answers
// 429, as OpenAI does, to a request that would make more than PerSecond + 1
// admitted in a one-second window closed at both ends, the most an exact
// pace of PerSecond puts there.
type WindowLimit struct {
	PerSecond int

	mu       sync.Mutex
	arrivals []time.Time // every request
	admitted []time.Time
	refused  int
}

// Admit answers 429 and returns false for a request over the limit, and
// returns true for the others, which the caller passes on.
func (l *WindowLimit) Admit(w http.ResponseWriter, _ *http.Request) bool {
	now := time.Now()
	l.mu.Lock()
	l.arrivals = append(l.arrivals, now)
	n := 0
	for i := len(l.admitted) - 1; i >= 0 && !l.admitted[i].Before(now.Add(-time.Second)); i-- {
		n++
	}
	if n+1 > l.PerSecond+1 {
		l.refused++
		l.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("retry-after-ms", "50")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"error":{"message":"Rate limit reached: %d requests per second","type":"requests","param":null,"code":"rate_limit_exceeded"}}`, l.PerSecond)
		return false
	}
	l.admitted = append(l.admitted, now)
	l.mu.Unlock()
	return true
}

// Seen returns the arrival times of every request and of those admitted,
// in order, and the number refused.
func (l *WindowLimit) Seen() (arrivals, admitted []time.Time, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.arrivals), slices.Clone(l.admitted), l.refused
}
