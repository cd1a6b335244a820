package imodel

import "sync/atomic"

// statusCounts counts responses by HTTP status, without locks: the hot path
// is one atomic add.
type statusCounts struct {
	byStatus [600]atomic.Int64
	errors   atomic.Int64 // attempts that got no response
}

func (c *statusCounts) add(status int) {
	if status > 0 && status < len(c.byStatus) {
		c.byStatus[status].Add(1)
	}
}

// Stats counts what a model's attempts met.
type Stats struct {
	// ByStatus counts responses by HTTP status.
	ByStatus map[int]int64
	// NoResponse counts attempts that got no response (connection errors,
	// timeouts before the headers).
	NoResponse int64
}

// RateLimited is the number of 429 responses.
func (s Stats) RateLimited() int64 { return s.ByStatus[429] }

// Stats returns the model's counts since it was made.
func (m *Model) Stats() Stats {
	s := Stats{ByStatus: map[int]int64{}, NoResponse: m.counts.errors.Load()}
	for code := range m.counts.byStatus {
		if n := m.counts.byStatus[code].Load(); n > 0 {
			s.ByStatus[code] = n
		}
	}
	return s
}
