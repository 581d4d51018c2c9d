package backfill

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Progress is a snapshot of a running backfill, for the CLI's display or a
// log line.
type Progress struct {
	Elapsed        time.Duration
	Requests       int64
	RequestsPerSec float64 // over the whole run
	Rate           float64 // the limiter's effective rate
	Workers        int     // tasks in flight
	Target         int     // worker target (Little's law)
	Queued         int     // slices waiting for a worker
	Objects        []ObjectProgress
	// Done: the run has ended (the last report); Stopped: it ended
	// before completing (cancelled, or a database error).
	Done, Stopped bool
}

// ObjectProgress is one object type's part of Progress.
type ObjectProgress struct {
	Object         string
	Phase          string // backfilling, live (complete), error
	Rows           int64  // rows fetched in this run
	RowsPerSec     float64
	Requests       int64
	RequestsPerSec float64
	// ETA is the estimated time left, 0 when unknown (no density sample
	// yet) or done.
	ETA   time.Duration
	Error string
	// Skipped: its backfill completed in an earlier run, so this run
	// fetched nothing for it (Phase is live).
	Skipped bool
}

func (r *runner) snapshot(done, stopped bool) Progress {
	el := time.Since(r.start)
	secs := max(el.Seconds(), 0.001)
	p := Progress{
		Elapsed: el, Requests: r.requests.Load(), Rate: r.cfg.Client.Limiter().Effective(),
		Workers: r.inflight, Target: int(r.target.Load()), Queued: len(r.queue), Done: done, Stopped: stopped,
	}
	p.RequestsPerSec = float64(p.Requests) / secs
	for _, n := range r.order {
		o := r.objs[n]
		op := ObjectProgress{Object: n, Phase: "backfilling", Rows: o.rows.Load(), Requests: o.requests.Load(), Skipped: o.skipped}
		ostart := o.started
		if ostart.IsZero() || ostart.Before(r.start) {
			ostart = r.start
		}
		end := time.Now()
		if o.done && !o.completed.IsZero() && o.completed.After(ostart) {
			end = o.completed
		}
		osecs := max(end.Sub(ostart).Seconds(), 0.001)
		op.RowsPerSec = float64(op.Rows) / osecs
		op.RequestsPerSec = float64(op.Requests) / osecs
		switch {
		case o.err != nil:
			op.Phase, op.Error = "error", o.err.Error()
		case o.done:
			op.Phase = "live"
		case o.kind == kindPerParent:
			// One request per pending parent (rarely more).
			if left := r.parentsLeft[n]; left > 0 && op.RequestsPerSec > 0 {
				op.ETA = time.Duration(float64(left) / op.RequestsPerSec * float64(time.Second)).Round(time.Second)
			}
		default:
			if est := o.estRemaining.Load(); est > 0 && op.RowsPerSec > 0 {
				op.ETA = time.Duration(float64(est) / op.RowsPerSec * float64(time.Second)).Round(time.Second)
			}
		}
		p.Objects = append(p.Objects, op)
	}
	return p
}

func (r *runner) report(done, stopped bool) {
	if r.cfg.Progress == nil {
		return
	}
	if !done && time.Since(r.parentsCounted) > 5*time.Second {
		r.countParents()
	}
	r.cfg.Progress(r.snapshot(done, stopped))
}

// countParents refreshes the pending per-parent lists (for ETAs); a failure
// only leaves the ETA unknown.
func (r *runner) countParents() {
	r.parentsCounted = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rows, err := r.cfg.Pool.Query(ctx, `SELECT object, count(*) FROM stripe_sync.backfill_slices WHERE parent IS NOT NULL AND NOT done GROUP BY object`)
	if err != nil {
		return
	}
	defer rows.Close()
	left := map[string]int{}
	for rows.Next() {
		var o string
		var n int
		if rows.Scan(&o, &n) == nil {
			left[o] = n
		}
	}
	if rows.Err() == nil {
		r.parentsLeft = left
	}
}

// Render writes p as a small table (the CLI redraws it each second).
func (p Progress) Render(w io.Writer) {
	state := "running"
	switch {
	case p.Stopped:
		state = "stopped"
	case p.Done:
		state = "done"
	}
	fmt.Fprintf(w, "backfill %s: %s elapsed, %d requests (%.1f/s of %.0f/s), %d in flight (target %d), %d queued\n",
		state, p.Elapsed.Round(time.Second), p.Requests, p.RequestsPerSec, p.Rate, p.Workers, p.Target, p.Queued)
	fmt.Fprintf(w, "  %-24s %-11s %9s %9s %8s %8s\n", "object", "phase", "rows", "rows/s", "req/s", "eta")
	for _, o := range p.Objects {
		eta := "-"
		if o.ETA > 0 {
			eta = o.ETA.String()
		}
		line := fmt.Sprintf("  %-24s %-11s %9d %9.1f %8.1f %8s", o.Object, o.Phase, o.Rows, o.RowsPerSec, o.RequestsPerSec, eta)
		if o.Error != "" {
			line += "  " + o.Error
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}
