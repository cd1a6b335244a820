package batch

import (
	"fmt"
	"slices"
	"time"

	"github.com/lionactor/lionactor/messages"
)

// deploymentRecord is what a run's report counts of one deployment.
type deploymentRecord struct {
	started, retries, limited int
	completed, failed         int
	firstStart, lastStart     time.Duration // firstStart -1 before any
}

// byDeployment counts ev, whose kind Observe has recorded, for the
// deployment it names. r.mu is held.
func (r *Recorder) byDeployment(ev messages.Event) {
	if ev.Deployment == "" || len(r.info.Deployments) == 0 {
		return
	}
	i := slices.IndexFunc(r.info.Deployments, func(d ReportDeployment) bool { return d.Name == ev.Deployment })
	if i < 0 {
		return
	}
	if r.deps == nil {
		r.deps = make([]deploymentRecord, len(r.info.Deployments))
		for j := range r.deps {
			r.deps[j].firstStart = -1
		}
	}
	d := &r.deps[i]
	switch {
	case ev.Status == messages.StatusCalling:
		at := r.offset(ev.Timings().CallStarted)
		d.started++
		if d.firstStart < 0 {
			d.firstStart = at
		}
		d.lastStart = max(d.lastStart, at)
	case ev.Status == messages.StatusQueued:
		d.retries++
		if info, ok := ev.RetryFailure(); ok && isRateLimit(info) {
			d.limited++
		}
	case ev.Status == messages.StatusCompleted:
		d.completed++
	case ev.Status == messages.StatusFailed:
		d.failed++
		if info, ok := ev.Failure(); ok && isRateLimit(info) {
			d.limited++
		}
	}
}

// deploymentRow is one deployment's line in the report's table.
type deploymentRow struct {
	Name, Model, Calls, Rate, Limit, Completed, Failed, Limited string
	Class                                                       string
}

// deploymentRows are the report's lines by deployment, in the order of
// the config; none for a run against one endpoint.
func (tl timeline) deploymentRows() []deploymentRow {
	var rows []deploymentRow
	for i, d := range tl.info.Deployments {
		var rec deploymentRecord
		if i < len(tl.deps) {
			rec = tl.deps[i]
		}
		rate := 0.0
		if span := rec.lastStart - rec.firstStart; rec.started > 1 && rec.firstStart >= 0 && span > 0 {
			rate = float64(rec.started-1) / span.Minutes()
		}
		rows = append(rows, deploymentRow{
			Name: d.Name, Model: d.Group,
			Calls: count(int64(rec.started)) + ", " + plural(rec.retries, "retry", "retries"),
			Rate:  count(int64(rate+0.5)) + " per minute", Limit: fmt.Sprintf("%s (%s)", count(int64(d.RPM)), ofLimit(rate, d.RPM)),
			Completed: count(int64(rec.completed)), Failed: count(int64(rec.failed)), Limited: count(int64(rec.limited)),
			Class: warnIf(rec.limited > 0),
		})
	}
	return rows
}
