package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

const (
	// refetchPerTable bounds one table's re-fetches in flight: a table
	// whose fetches Stripe answers slowly (a 5xx the client retries for up
	// to a minute) leaves slots to the others.
	refetchPerTable = refetchParallel - 2
)

// fetches runs the re-fetcher's fetches (drainRefetch), refetchParallel
// in flight at most, refetchPerTable of one table, through the shared
// limiter, in the order they were planned. A fetch may outlive the drain
// that started it; a table's entries waiting for its probe start as soon
// as it is answered, whatever other tables' fetches are under way, so a
// table Stripe answers slowly holds up none of the others.
type fetches struct {
	mu sync.Mutex
	// claimed are the entries a drain read whose outcome is not written
	// yet: no later drain reads them again (claims).
	claimed map[refetchKey]*fetchJob
	ready   []*fetchJob            // waiting for a slot, in order
	waiting map[string][]*fetchJob // per table, waiting for its probe's answer
	running map[string]int         // per table, in flight
	total   int                    // in flight
	done    []*fetchJob            // finished, not written yet (takeDone)
	// finished says a fetch finished (capacity 1: await reads it).
	finished chan struct{}
	wg       sync.WaitGroup // the fetches' goroutines
}

// fetchJob is one re-fetch a drain planned.
type fetchJob struct {
	plannedFetch
	ctx     context.Context // the drain's
	started time.Time       // when its fetch began (zero: not yet)
	over    bool            // finished (or undecided)
	// undecided: not made, its table no longer known readable when its
	// turn came (errUndecided); the entry stays queued as it was, for
	// the next drain's plan (the table's probe).
	undecided bool
	res       *fetched
	err       error
}

func newFetches() *fetches {
	return &fetches{claimed: map[refetchKey]*fetchJob{}, waiting: map[string][]*fetchJob{}, running: map[string]int{},
		finished: make(chan struct{}, 1)}
}

// claims are the entries a drain must not read (their fetch is under way,
// waits, or is not written yet), and the busy tables, none of whose
// entries it may read: those with entries waiting (for a slot: reading
// more would only queue them in memory; for their probe: its answer
// decides for them), and those not known readable with a fetch in
// flight (its answer decides, as a probe's: another request now would
// be one more the answer may make needless, one more in an outage).
func (q *fetches) claims(p *poller) (objs, ids, busy []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	objs, ids, busy = []string{}, []string{}, []string{}
	for k := range q.claimed {
		objs, ids = append(objs, k.Table), append(ids, k.ID)
	}
	tables := map[string]bool{}
	for _, j := range q.ready {
		tables[j.Table] = true
	}
	for table := range q.waiting {
		tables[table] = true
	}
	p.refusalMu.Lock()
	for table, n := range q.running {
		if n > 0 && !p.readable[table] {
			tables[table] = true
		}
	}
	p.refusalMu.Unlock()
	for table := range tables {
		busy = append(busy, table)
	}
	return objs, ids, busy
}

// start claims planned and later (probeOnly), starts what it can of
// planned and returns the drain's jobs.
func (q *fetches) start(ctx context.Context, p *poller, planned []plannedFetch, later []refetch) []*fetchJob {
	q.mu.Lock()
	defer q.mu.Unlock()
	jobs := make([]*fetchJob, 0, len(planned)+len(later))
	for _, f := range planned {
		j := &fetchJob{plannedFetch: f, ctx: ctx}
		q.claimed[f.refetchKey] = j
		q.ready = append(q.ready, j)
		jobs = append(jobs, j)
	}
	for _, r := range later {
		j := &fetchJob{plannedFetch: plannedFetch{refetch: r}, ctx: ctx}
		q.claimed[r.refetchKey] = j
		q.waiting[r.Table] = append(q.waiting[r.Table], j)
		jobs = append(jobs, j)
	}
	q.pump(p)
	return jobs
}

// pump starts the first ready jobs there are slots for (q.mu held).
func (q *fetches) pump(p *poller) {
	for i := 0; i < len(q.ready) && q.total < refetchParallel; {
		j := q.ready[i]
		if q.running[j.Table] >= refetchPerTable {
			i++
			continue
		}
		q.ready = append(q.ready[:i], q.ready[i+1:]...)
		q.running[j.Table]++
		q.total++
		// Before the request: a change after it may be missing from
		// the answer (writeFetched, taxIDsChanged).
		j.started = time.Now()
		q.wg.Add(1)
		go q.run(p, j)
	}
}

func (q *fetches) run(p *poller, j *fetchJob) {
	defer q.wg.Done()
	f, err := p.fetch(j.ctx, j.refetch, j.probe)
	if err != nil && j.ctx.Err() == nil && !errors.Is(err, errUndecided) {
		// Kept queued; a later drain retries (the client already
		// retried 429/5xx).
		p.log.Warn("re-fetch failed; will retry", "table", j.Table, "id", j.ID, "err", err)
	}
	q.mu.Lock()
	q.running[j.Table]--
	if q.running[j.Table] == 0 {
		delete(q.running, j.Table)
	}
	q.total--
	q.finish(j, f, err)
	q.pump(p)
	q.mu.Unlock()
	select {
	case q.finished <- struct{}{}:
	default:
	}
}

// finish records j's outcome (q.mu held). A probe's answer decides for
// the entries of its table waiting for it: readable or refused, they
// start (fetch answers them from the refusal without a request);
// unanswered, they stay queued for a later drain's probe, with its
// error.
func (q *fetches) finish(j *fetchJob, f fetched, err error) {
	j.over = true
	if errors.Is(err, errUndecided) {
		j.undecided = true
		delete(q.claimed, j.refetchKey)
	} else {
		j.err = err
		if err == nil {
			j.res = &f
		}
		q.done = append(q.done, j)
	}
	if !j.probe {
		return
	}
	waiting := q.waiting[j.Table]
	delete(q.waiting, j.Table)
	for _, w := range waiting {
		if err != nil {
			w.over = true
			w.err = fmt.Errorf("events: not re-fetched: Stripe did not answer its table's probe: %w", err)
			q.done = append(q.done, w)
			continue
		}
		q.ready = append(q.ready, w)
	}
}

// await waits for jobs to finish until deadline (zero: none). At ctx's
// end it waits for every fetch (ctx's end ends them at once), so that no
// fetch outlives the loop, and returns false. What they brought is
// written at the loop's end (writeAtStop); the entries of those cut off
// stay queued for the next start.
func (q *fetches) await(ctx context.Context, jobs []*fetchJob, deadline time.Time) bool {
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	for {
		q.mu.Lock()
		over := true
		for _, j := range jobs {
			over = over && j.over
		}
		idle := q.total == 0 && len(q.ready) == 0
		q.mu.Unlock()
		switch {
		case ctx.Err() != nil && idle:
			return false
		case ctx.Err() != nil:
			<-q.finished
			continue
		case over:
			return true
		}
		select {
		case <-q.finished:
		case <-expired:
			return false
		case <-ctx.Done():
		}
	}
}

// takeDone takes the finished jobs, to be written; their entries are no
// longer claimed.
func (q *fetches) takeDone() []*fetchJob {
	q.mu.Lock()
	defer q.mu.Unlock()
	done := q.done
	q.done = nil
	for _, j := range done {
		delete(q.claimed, j.refetchKey)
	}
	return done
}

// putBack gives back jobs takeDone took whose write did not commit, to
// the next writeFetched, claimed again (unless another job claimed the
// entry since: its result is the newer).
func (q *fetches) putBack(jobs []*fetchJob) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var back []*fetchJob
	for _, j := range jobs {
		if _, ok := q.claimed[j.refetchKey]; !ok {
			q.claimed[j.refetchKey] = j
			back = append(back, j)
		}
	}
	q.done = append(back, q.done...)
}

// oldestStart is when the oldest fetch begun and not yet written
// (takeDone) began, or now if none.
func (q *fetches) oldestStart() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	oldest := time.Now()
	for _, j := range q.claimed {
		if !j.started.IsZero() && j.started.Before(oldest) {
			oldest = j.started
		}
	}
	return oldest
}

// wait waits for every fetch's goroutine: after ctx's end, so that none
// outlives the re-fetcher.
func (q *fetches) wait() {
	q.wg.Wait()
}
