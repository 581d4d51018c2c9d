package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// Config configures a backfill run.
type Config struct {
	Pool   *pgxpool.Pool
	Client *stripeapi.Client
	// Objects are table names of schema stripe; empty means all. A child
	// table (subscription_items, invoice_line_items) is filled with its
	// parent, so naming it backfills the parent too; a per-parent table
	// (payment_methods, tax_ids, upcoming_invoices) brings its parent
	// into the run as well (skipped when that completed earlier).
	Objects []string
	// Progress, if set, is called about every ProgressInterval (default 1 s)
	// and once at the end, from one goroutine.
	Progress         func(Progress)
	ProgressInterval time.Duration
	Logger           *slog.Logger
	// Fence, if set, runs first in every transaction that applies results
	// (leader.Fence with the current epoch): a deposed leader stops.
	Fence func(ctx context.Context, tx pgx.Tx) error
	// MaxWorkers caps concurrent tasks (default 64); the pool is sized
	// below it by Little's law from the measured latency.
	MaxWorkers int
	// RestartCompletedBefore: objects whose earlier backfill completed
	// before this time (or was planned before it, on Stripe's clock, and
	// never completed) are backfilled again from scratch; those completed
	// after it are skipped, those planned after it resume. A re-backfill passes
	// the time it started, so a crash during it resumes instead of starting
	// over. Zero: completed objects are skipped.
	RestartCompletedBefore time.Time
}

// parentList is a table fetched once per parent object. The parents are
// taken from the pages of the parent table this run fetches (key), or from
// its stored rows (seed) when the parent table isn't part of the run.
type parentList struct {
	parent string // parent table
	path   string // {parent} is replaced by the parent id unless param is set
	param  string // query parameter carrying the parent id
	single bool   // the endpoint answers one object, not a list
	seed   string // SQL selecting parent ids from stored rows
	// key returns the parent id an object of the parent table brings, or "".
	key func(fields map[string]json.RawMessage) string
}

// listedPer returns the parent table of a table listed once per parent
// object (payment_methods per customer, …).
func listedPer(table string) (parent string, ok bool) {
	pl, ok := perParent[table]
	return pl.parent, ok
}

var perParent = map[string]parentList{
	"payment_methods": {parent: "customers", path: "/v1/customers/{parent}/payment_methods",
		seed: `SELECT id FROM stripe.customers`, key: idOf},
	"tax_ids": {parent: "customers", path: "/v1/customers/{parent}/tax_ids",
		seed: `SELECT id FROM stripe.customers`, key: idOf},
	// Virtual: one upcoming invoice per customer with a live subscription
	// (404 invoice_upcoming_none when there is nothing to invoice).
	"upcoming_invoices": {parent: "subscriptions", path: "/v1/invoices/upcoming", param: "customer", single: true,
		seed: `SELECT DISTINCT customer FROM stripe.subscriptions WHERE customer IS NOT NULL AND status NOT IN ('canceled', 'incomplete_expired')`,
		key: func(f map[string]json.RawMessage) string {
			var status, customer string
			_ = json.Unmarshal(f["status"], &status)
			if status == "canceled" || status == "incomplete_expired" {
				return ""
			}
			if json.Unmarshal(f["customer"], &customer) != nil {
				var obj struct{ ID string }
				_ = json.Unmarshal(f["customer"], &obj)
				customer = obj.ID
			}
			return customer
		}},
}

func idOf(f map[string]json.RawMessage) string {
	var id string
	_ = json.Unmarshal(f["id"], &id)
	return id
}

// inline are per-parent lists the parent's list can include
// (expand[]=data.<field>): they come with the parent's pages at no extra
// request, and the field is removed from the parent's _raw again (Stripe
// includes it only on request, so a plain GET of the parent has no such
// field). A parent whose included list has more is queued for the
// per-parent list.
var inline = map[string]struct{ parent, field string }{
	"tax_ids": {"customers", "tax_ids"},
}

// listParams are fixed query parameters per list (canceled subscriptions
// are hidden without status=all).
var listParams = map[string]url.Values{
	"subscriptions": {"status": {"all"}},
}

// clockLists are the lists that leave out objects on test clocks unless
// asked for the clock (spec, API 2023-10-16: GET /v1/customers "will not
// include customers with test clocks if this parameter is not set"; GET
// /v1/subscriptions the same unless test_clock or customer is given). In
// test mode the backfill also lists the test clocks and each clock's
// objects. Objects of a clock's customers in other lists (invoices,
// invoice items, schedules) are listed as any others; their per-customer
// and nested lists follow from the pages as for any customer.
var clockLists = map[string]bool{"customers": true, "subscriptions": true}

// inactiveLists are the lists that return active objects only unless asked
// for inactive ones (spec, API 2023-10-16: GET /v1/prices "Returns a list
// of your active prices … For the list of inactive prices, set active to
// false"; one request can't have both). Archived prices are common (old
// subscriptions and invoices use them), so each such list gets a second
// pass with active=false.
var inactiveLists = map[string]bool{"prices": true}

// ObjectError is the first non-retryable error of an object type.
type ObjectError struct {
	Object string
	Err    error
}

func (e *ObjectError) Error() string { return e.Object + ": " + e.Err.Error() }
func (e *ObjectError) Unwrap() error { return e.Err }

// PartialError reports object types that failed while the others completed.
type PartialError struct{ Failed []*ObjectError }

func (e *PartialError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = f.Error()
	}
	return "backfill failed for " + strings.Join(parts, "; ")
}

type kind int

const (
	kindRanged    kind = iota // created-filterable list, time sliced
	kindWhole                 // list without created filter: starting_after paging
	kindPerParent             // one list per parent object
	kindChild                 // filled through the parent's nested list
)

// objState is one object type's run state; counters are atomic, the rest
// is owned by the scheduler goroutine.
type objState struct {
	table    *schema.Table
	kind     kind
	listPath string
	endpoint string // listPath's endpoint, as stripeapi's limiter names it (endpointOf)
	parent   string // perParent: parent table; child: parent table
	children []string
	// perParentKids are per-parent objects of this run whose parent is this.
	perParentKids []string

	rows, requests atomic.Int64
	estRemaining   atomic.Int64 // rows expected in pending slices (ETA), 0 unknown

	pending   int // queued + in flight (scheduler)
	done      bool
	skipped   bool // completed in an earlier run
	err       error
	started   time.Time
	completed time.Time
}

type runner struct {
	cfg     Config
	log     *slog.Logger
	objs    map[string]*objState
	order   []string
	start   time.Time
	results chan taskResult

	queue   []*slice
	claimed map[int64]bool // parent slices queued or in flight
	inflight,
	parentQueued int
	lastParentLoad time.Time
	parentsDry     bool // the last load found nothing new
	idle           bool // every object completed in earlier runs
	parentsLeft    map[string]int
	parentsCounted time.Time

	// epInflight counts launched tasks per endpoint (endpointOf), for
	// the per-endpoint cap (epCap).
	epInflight map[string]int

	target   atomic.Int64 // worker target
	queued   atomic.Int64 // len(queue) + inflight, for split decisions
	perReqNs atomic.Int64 // EWMA of busy time per request
	requests atomic.Int64
}

type taskResult struct {
	s          *slice
	next       []*slice
	parentsNew bool
	err        error
	busy       time.Duration
	reqs       int
}

// Run backfills cfg.Objects into the stripe schema. It first records the
// newest event (stripe_sync.cursor) unless a cursor exists, resumes any
// unfinished backfill from stripe_sync.backfill_slices, and returns when
// every object is complete, ctx ends, or the database fails. Object types
// that hit a non-retryable Stripe error end in phase error and make Run
// return a *PartialError after the others completed.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Pool == nil || cfg.Client == nil {
		return errors.New("backfill: Config needs Pool and Client")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = 64
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}
	r := &runner{cfg: cfg, log: cfg.Logger, objs: map[string]*objState{}, claimed: map[int64]bool{},
		epInflight: map[string]int{}, results: make(chan taskResult, cfg.MaxWorkers), start: time.Now()}
	if err := r.resolve(cfg.Objects); err != nil {
		return err
	}
	r.perReqNs.Store(int64(300 * time.Millisecond))
	r.retarget()
	now, err := r.recordCursor(ctx)
	if err != nil {
		return err
	}
	if err := r.plan(ctx, now); err != nil {
		return err
	}
	return r.loop(ctx)
}

// resolve turns the requested names into the run's object states.
func (r *runner) resolve(names []string) error {
	want := map[string]bool{}
	if len(names) == 0 {
		for _, t := range schema.Tables() {
			want[t.Name] = true
		}
	}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		t, ok := schema.Lookup(n)
		if !ok {
			return fmt.Errorf("backfill: unknown object %q (known: %s)", n, strings.Join(schema.Names(), ", "))
		}
		want[t.Name] = true
	}
	for _, t := range schema.Tables() { // children follow their parent
		if want[t.Name] && t.Parent != nil {
			want[t.Parent.Table] = true
		}
	}
	// A per-parent list needs its parent in the run too: skipped when its
	// backfill completed (the stored rows are then the parents), resumed
	// when it did not, so no per-parent table completes before the parents
	// still to come were listed.
	for name, pp := range perParent {
		if want[name] {
			want[pp.parent] = true
		}
	}
	for _, t := range schema.Tables() {
		if !want[t.Name] {
			continue
		}
		if _, ok := perParent[t.Name]; t.Virtual && !ok {
			r.log.Info("backfill: skipping virtual table", "object", t.Name)
			continue
		}
		o := &objState{table: t, listPath: t.ListPath}
		switch pp, isPP := perParent[t.Name]; {
		case t.Parent != nil:
			o.kind, o.parent = kindChild, t.Parent.Table
		case isPP:
			o.kind, o.parent, o.listPath = kindPerParent, pp.parent, pp.path
		case t.CreatedFilter && t.ListPath != "" && hasColumn(t, "created"):
			o.kind = kindRanged
		case t.ListPath != "" && len(t.ListRequired) == 0:
			o.kind = kindWhole
		default:
			return fmt.Errorf("backfill: don't know how to list %s", t.Name)
		}
		o.endpoint = "GET " + stripeapi.EndpointPattern(strings.ReplaceAll(o.listPath, "{parent}", "{id}"))
		r.objs[t.Name] = o
		r.order = append(r.order, t.Name)
	}
	for _, name := range r.order {
		o := r.objs[name]
		switch o.kind {
		case kindChild:
			r.objs[o.parent].children = append(r.objs[o.parent].children, name)
		case kindPerParent:
			if p := r.objs[o.parent]; p != nil {
				p.perParentKids = append(p.perParentKids, name)
			}
		}
	}
	return nil
}

// hasColumn: slicing needs each object's created; invoice items accept a
// created filter but show the time as "date", so they are paged whole.
func hasColumn(t *schema.Table, name string) bool {
	_, ok := t.Column(name)
	return ok
}

// inTx runs fn in a transaction (fenced), and runs it again whole when
// Postgres rolled it back for a conflict (store.Retryable): a deadlock with
// another slice, the events loop, a write-through or a user's transaction
// must not end the run. fn must be repeatable: whatever it changes outside
// the database is either overwritten by the next attempt or done by the
// caller after inTx succeeded.
func (r *runner) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return store.Retry(ctx, r.log, "backfill", func() error { return r.inTxOnce(ctx, fn) })
}

func (r *runner) inTxOnce(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := r.cfg.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("backfill: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if r.cfg.Fence != nil {
		if err := r.cfg.Fence(ctx, tx); err != nil {
			return err
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("backfill: commit: %w", err)
	}
	return nil
}

// recordCursor remembers the newest event before anything is fetched, so
// the events loop replays everything that happens from here on. It returns
// Stripe's current time (the upper bound of new plans).
func (r *runner) recordCursor(ctx context.Context) (time.Time, error) {
	var page *stripeapi.Page
	var err error
	for {
		page, err = r.cfg.Client.List(ctx, "/v1/events", url.Values{"limit": {"1"}})
		if err == nil || !transient(err) {
			break
		}
		r.log.Warn("backfill: reading the newest event failed, retrying", "err", err)
		if err := sleep(ctx, 5*time.Second); err != nil {
			return time.Time{}, err
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("backfill: read newest event: %w", err)
	}
	// The handoff time is Stripe's clock now (the response Date), not the
	// newest event's created: nothing happened in between, and on a quiet
	// account whose newest event is near the 30-day retention the events
	// loop would otherwise find its cursor expired right after this
	// backfill and start a complete re-backfill. Events that become visible
	// late are re-read from before it (look-back), as after EnsureCursor.
	c := Cursor{Created: page.AsOf}
	if len(page.Data) > 0 {
		id, _, err := stripeapi.ObjectHeader(page.Data[0])
		if err != nil {
			return time.Time{}, err
		}
		c.EventID = id
	}
	err = r.inTx(ctx, func(tx pgx.Tx) error {
		var evID *string
		if c.EventID != "" {
			evID = &c.EventID
		}
		_, err := tx.Exec(ctx, `INSERT INTO stripe_sync.cursor (name, event_id, event_created) VALUES ('events', $1, $2)
ON CONFLICT (name) DO NOTHING`, evID, c.Created)
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("backfill: record events cursor: %w", err)
	}
	return page.AsOf, nil
}

// plan creates the initial slices of objects not planned yet and loads the
// pending slices of the others.
func (r *runner) plan(ctx context.Context, now time.Time) error {
	var fresh []string   // planned from scratch in this run
	var resumed []string // continuing a run that stopped part-way
	for _, name := range r.order {
		o := r.objs[name]
		if o.kind == kindChild {
			continue // follows its parent
		}
		// What the transaction found, applied to the run's state once it
		// committed (an attempt rolled back for a conflict runs again).
		var skippedAt *time.Time
		var isFresh, isResumed bool
		var started time.Time
		var loaded []*slice
		err := r.inTx(ctx, func(tx pgx.Tx) error {
			skippedAt, isFresh, isResumed, loaded = nil, false, false, nil
			var completed *time.Time
			var planned bool
			var upper int64
			err := tx.QueryRow(ctx, `SELECT completed_at, upper_bound FROM stripe_sync.backfill_objects WHERE object = $1`, name).Scan(&completed, &upper)
			switch {
			case err == pgx.ErrNoRows:
			case err != nil:
				return err
			default:
				planned = true
			}
			restart := completed != nil && completed.Before(r.cfg.RestartCompletedBefore)
			// An unfinished backfill planned before that time (one that
			// failed part-way) starts over as well: the rows of its
			// finished slices are as old as it, and a re-backfill removes
			// every row it did not write itself. upper_bound is Stripe's
			// time at planning, as RestartCompletedBefore is for a
			// re-backfill, so one planned by an interrupted re-backfill
			// resumes.
			if planned && completed == nil && !r.cfg.RestartCompletedBefore.IsZero() && upper < r.cfg.RestartCompletedBefore.Unix() {
				restart = true
			}
			if planned && completed != nil && !restart {
				skippedAt = completed
				return nil
			}
			if planned && restart {
				if _, err := tx.Exec(ctx, `DELETE FROM stripe_sync.backfill_slices WHERE object = $1;`, name); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `DELETE FROM stripe_sync.backfill_objects WHERE object = $1`, name); err != nil {
					return err
				}
				planned = false
			}
			started = time.Now()
			if !planned {
				isFresh = true
				if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.backfill_objects (object, upper_bound) VALUES ($1, $2)`, name, now.Unix()); err != nil {
					return err
				}
				switch o.kind {
				case kindRanged:
					ss := []*slice{{object: name, ranged: true, rng: Initial()}}
					if clockLists[name] && !r.cfg.Client.Live() {
						ss = append(ss, &slice{object: name, clocks: true})
					}
					if inactiveLists[name] {
						ss = append(ss, &slice{object: name, ranged: true, rng: Initial(), inactive: true})
					}
					if err := insertSlices(ctx, tx, ss); err != nil {
						return err
					}
				case kindWhole:
					if err := insertSlices(ctx, tx, []*slice{{object: name}}); err != nil {
						return err
					}
				case kindPerParent:
					// When the parent table is backfilled from scratch in
					// this run, its pages queue the parents as they commit;
					// otherwise the parents are the rows already stored,
					// plus, for a parent resuming an earlier run, those
					// its remaining pages bring (that run's finished pages
					// are not fetched again, so their rows must seed).
					if p := r.objs[o.parent]; p != nil && !p.skipped && slices.Contains(fresh, o.parent) {
						break
					}
					if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.backfill_slices (object, parent)
SELECT $1, p FROM (`+perParent[name].seed+`) AS parents(p) ON CONFLICT (object, parent) WHERE parent IS NOT NULL DO NOTHING`, name); err != nil {
						return err
					}
				}
			} else {
				isResumed = true
				var startedAt *time.Time
				if err := tx.QueryRow(ctx, `SELECT backfill_started_at FROM stripe_sync.objects WHERE object = $1`, name).Scan(&startedAt); err == nil && startedAt != nil {
					started = *startedAt
				}
			}
			for _, n := range append([]string{name}, o.children...) {
				if err := setPhase(ctx, tx, n, "backfilling", "", &started, nil); err != nil {
					return err
				}
			}
			if o.kind == kindPerParent {
				return nil // loaded lazily
			}
			loaded, err = loadPending(ctx, tx, name)
			return err
		})
		if err != nil {
			return fmt.Errorf("backfill: plan %s: %w", name, err)
		}
		if skippedAt != nil {
			o.skipped, o.done, o.completed = true, true, *skippedAt
			for _, c := range o.children {
				r.objs[c].skipped, r.objs[c].done = true, true
			}
			continue
		}
		if isFresh {
			fresh = append(fresh, name)
		}
		if isResumed {
			resumed = append(resumed, name)
		}
		o.started = started
		for _, s := range loaded {
			r.push(s, false)
			o.pending++
			o.estRemaining.Add(int64(s.est))
		}
	}
	var objects []string
	for _, n := range r.order {
		if !r.objs[n].skipped {
			objects = append(objects, n)
		}
	}
	r.idle = len(objects) == 0
	if r.idle {
		return nil // everything completed earlier: nothing to log
	}
	// Whoever restarts after a kill should see that finished slices are
	// not fetched again, not infer it from what "fresh" leaves out.
	if len(resumed) > 0 {
		r.log.Info("backfill: resuming where the previous run stopped", "objects", resumed)
	}
	return r.inTx(ctx, func(tx pgx.Tx) error {
		return logEvent(ctx, tx, "backfill_started", map[string]any{"objects": objects, "fresh": fresh, "resumed": resumed})
	})
}

func (r *runner) push(s *slice, front bool) {
	if front {
		r.queue = append([]*slice{s}, r.queue...)
	} else {
		r.queue = append(r.queue, s)
	}
	if s.parent != "" {
		r.parentQueued++
	}
	r.queued.Store(int64(len(r.queue) + r.inflight))
}

// retarget sizes the worker pool by Little's law: requests in flight =
// rate × time each request keeps a worker busy (HTTP round trip plus its
// share of the database write), with half as much again and two on top:
// task times vary (commits, nested lists), and a worker too few idles the
// limiter while one too many only waits at it.
func (r *runner) retarget() {
	rate := r.cfg.Client.Limiter().Effective()
	per := time.Duration(r.perReqNs.Load()).Seconds()
	n := int64(math.Ceil(rate*per*1.5)) + 2
	n = max(2, min(n, int64(r.cfg.MaxWorkers)))
	r.target.Store(n)
}

// epCap is how many tasks may be in flight on one endpoint: Little's law
// at the client's per-endpoint rate, as retarget does at the global one,
// plus one. Without it, a big table (or per-parent list) at the head of
// the queue would take every worker with live keys (Stripe allows 25/s
// per endpoint, 100/s overall): they would all wait at that endpoint's
// limiter while other tables' work waited in the queue, the run going at
// one endpoint's rate. No per-endpoint limit, no cap.
func (r *runner) epCap() int {
	ep := r.cfg.Client.Limiter().EndpointRate()
	if ep <= 0 {
		return math.MaxInt
	}
	per := time.Duration(r.perReqNs.Load()).Seconds()
	return int(math.Ceil(ep*per*1.5)) + 1
}

// endpointOf names the endpoint a task of s lists (as stripeapi's limiter
// and Observer do): every customer's payment methods list is one
// endpoint, and so are all of a table's ranges (test_clock= and
// active=false are query parameters).
func (r *runner) endpointOf(s *slice) string {
	if s.clocks {
		return "GET /v1/test_helpers/test_clocks"
	}
	return r.objs[s.object].endpoint
}

// next takes the first queued slice whose endpoint has fewer than limit
// tasks in flight, or nil.
func (r *runner) next(limit int) *slice {
	for i, s := range r.queue {
		if limit != math.MaxInt && r.epInflight[r.endpointOf(s)] >= limit {
			continue
		}
		if i == 0 {
			r.queue = r.queue[1:]
		} else {
			r.queue = append(r.queue[:i:i], r.queue[i+1:]...)
		}
		return s
	}
	return nil
}

// want is how many pieces a dense range may be split into now: enough to
// keep twice the worker target queued, no more (bigger pieces page with
// full requests; they are split later if workers starve).
func (r *runner) want() int {
	deficit := 2*r.target.Load() - r.queued.Load() + 1
	return int(max(1, min(deficit, 32)))
}

func (r *runner) loop(ctx context.Context) error {
	tick := time.NewTicker(r.cfg.ProgressInterval)
	defer tick.Stop()
	var fatal error
	for {
		if fatal == nil && ctx.Err() == nil {
			if err := r.maybeLoadParents(ctx); err != nil {
				fatal = err
			}
			if err := r.completeFinished(ctx); err != nil {
				fatal = err
			}
		}
		// Launch up to the target, each endpoint up to its cap.
		epCap := r.epCap()
		for fatal == nil && ctx.Err() == nil && int64(r.inflight) < r.target.Load() && len(r.queue) > 0 {
			s := r.next(epCap)
			if s == nil {
				break // what is queued waits for its endpoint
			}
			if s.parent != "" {
				r.parentQueued--
			}
			if r.objs[s.object].err != nil {
				r.objs[s.object].pending--
				delete(r.claimed, s.id)
				continue
			}
			r.inflight++
			r.epInflight[r.endpointOf(s)]++
			go func() { r.results <- r.runTask(ctx, s) }()
		}
		r.queued.Store(int64(len(r.queue) + r.inflight))
		if r.inflight == 0 && (fatal != nil || ctx.Err() != nil || (len(r.queue) == 0 && r.allDone())) {
			break
		}
		// With nothing in flight, nothing will arrive on results: poll again
		// soon (per-parent work appears in the database, not in memory).
		var idle <-chan time.Time
		if r.inflight == 0 {
			idle = time.After(50 * time.Millisecond)
		}
		select {
		case res := <-r.results:
			r.inflight--
			if !errors.Is(res.err, errRequeue) {
				// A requeue's result comes from its timer, not a task.
				r.epInflight[r.endpointOf(res.s)]--
			}
			if err := r.handle(ctx, res); err != nil && fatal == nil {
				fatal = err
			}
		case <-tick.C:
			r.report(false, false)
		case <-idle:
		case <-ctx.Done():
		}
	}
	if fatal == nil && ctx.Err() == nil {
		fatal = r.failBlocked(ctx)
	}
	r.report(true, fatal != nil || ctx.Err() != nil)
	if fatal != nil {
		return fatal
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var failed []*ObjectError
	for _, n := range r.order {
		if e := r.objs[n].err; e != nil {
			failed = append(failed, &ObjectError{Object: n, Err: e})
		}
	}
	if len(failed) > 0 {
		return &PartialError{Failed: failed}
	}
	if r.idle {
		return nil
	}
	return r.inTx(context.WithoutCancel(ctx), func(tx pgx.Tx) error {
		return logEvent(ctx, tx, "backfill_complete", map[string]any{
			"objects": r.order, "requests": r.requests.Load(), "seconds": time.Since(r.start).Seconds(), "rows": r.totalRows()})
	})
}

func (r *runner) totalRows() int64 {
	var n int64
	for _, o := range r.objs {
		n += o.rows.Load()
	}
	return n
}

func (r *runner) allDone() bool {
	for _, n := range r.order {
		o := r.objs[n]
		if o.kind == kindChild {
			continue // done or failed with its parent
		}
		if !o.done && o.err == nil && !r.blocked(o) {
			return false
		}
	}
	return true
}

// blocked: a per-parent object whose parent failed can't complete in this
// run.
func (r *runner) blocked(o *objState) bool {
	if o.kind != kindPerParent {
		return false
	}
	p := r.objs[o.parent]
	return p != nil && p.err != nil && o.pending == 0
}

func (r *runner) handle(ctx context.Context, res taskResult) error {
	o := r.objs[res.s.object]
	r.requests.Add(int64(res.reqs))
	if res.reqs > 0 && res.busy > 0 {
		per := int64(res.busy) / int64(res.reqs)
		old := r.perReqNs.Load()
		r.perReqNs.Store(old + (per-old)/5)
		r.retarget()
	}
	if res.parentsNew {
		r.parentsDry = false
	}
	if res.err == nil {
		o.estRemaining.Add(-int64(res.s.est))
		for _, n := range res.next {
			r.push(n, true) // depth first: finish ranges, keep the queue short
			o.pending++
			o.estRemaining.Add(int64(n.est))
		}
		o.pending--
		delete(r.claimed, res.s.id)
		for _, n := range res.next {
			if n.parent != "" {
				r.claimed[n.id] = true // a parent list continuing in the same row
			}
		}
		return nil
	}
	err := res.err
	switch {
	case ctx.Err() != nil:
		o.pending--
		return nil
	case transient(err):
		// Never fatal: Stripe is overloaded or flaky; try the slice again
		// later (the client already backed off and retried).
		r.log.Warn("backfill: slice failed, will retry", "object", o.table.Name, "err", err)
		s := res.s
		r.inflight++ // held until requeued, so the run doesn't end meanwhile
		go func() {
			_ = sleep(ctx, 5*time.Second)
			r.results <- taskResult{s: s, err: errRequeue}
		}()
		return nil
	case errors.Is(err, errRequeue):
		r.push(res.s, false)
		return nil
	case res.s.parent != "" && parentGone(err, perParent[res.s.object].single):
		// The parent was deleted since: nothing of it to fetch.
		err := r.inTx(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE stripe_sync.backfill_slices SET done = true WHERE id = $1`, res.s.id)
			return err
		})
		o.pending--
		delete(r.claimed, res.s.id)
		return err
	}
	var se *stripeapi.Error
	if errors.As(err, &se) {
		o.pending--
		delete(r.claimed, res.s.id)
		if o.err == nil {
			o.err = err
			for _, c := range o.children {
				r.objs[c].err = err
			}
			r.log.Error("backfill: object failed", "object", o.table.Name, "err", err)
			return r.inTx(context.WithoutCancel(ctx), func(tx pgx.Tx) error {
				for _, n := range append([]string{o.table.Name}, o.children...) {
					if err := setPhase(ctx, tx, n, "error", err.Error(), nil, nil); err != nil {
						return err
					}
				}
				return logEvent(ctx, tx, "backfill_error", map[string]any{"object": o.table.Name, "error": err.Error(),
					"request_id": se.RequestID, "status": se.HTTPStatus})
			})
		}
		return nil
	}
	o.pending--
	return fmt.Errorf("backfill: %s: %w", o.table.Name, err)
}

var errRequeue = errors.New("requeue")

// transient: the slice may succeed later. Besides what the client retries,
// a 429 or 5xx that Stripe marks Stripe-Should-Retry: false (its internal
// errors are) is requeued too: the header speaks of repeating the request
// at once, a list is a GET, and CONTRACT §4 makes 429 and 5xx never fatal.
func transient(err error) bool {
	if stripeapi.Retryable(err) {
		return true
	}
	var se *stripeapi.Error
	return errors.As(err, &se) && (se.HTTPStatus == 429 || se.HTTPStatus >= 500)
}

// cursorGone: Stripe refuses a starting_after whose object no longer
// exists (resource_missing on param starting_after).
func cursorGone(err error) bool {
	var se *stripeapi.Error
	return errors.As(err, &se) && se.Param == "starting_after" && (se.Code == "resource_missing" || se.HTTPStatus == 404)
}

// parentGone: Stripe answers a per-parent request as if the parent no
// longer exists: 404, or 400 resource_missing when the parent is a query
// parameter (customer=), as for a customer deleted since its subscription
// was listed. For a virtual object (the upcoming invoice) any 400 means
// nothing to show, as the events loop treats it.
func parentGone(err error, virtual bool) bool {
	if stripeapi.IsNotFound(err) {
		return true
	}
	var se *stripeapi.Error
	return errors.As(err, &se) && se.HTTPStatus == 400 && se.Param != "starting_after" && (virtual || se.Code == "resource_missing")
}

// failBlocked marks per-parent objects that could not finish because their
// parent failed.
func (r *runner) failBlocked(ctx context.Context) error {
	for _, n := range r.order {
		o := r.objs[n]
		if o.kind != kindPerParent || o.done || o.err != nil {
			continue
		}
		p := r.objs[o.parent]
		if p == nil || p.err == nil {
			continue
		}
		o.err = fmt.Errorf("parent %s failed: %w", o.parent, p.err)
		err := r.inTx(ctx, func(tx pgx.Tx) error {
			return setPhase(ctx, tx, n, "error", o.err.Error(), nil, nil)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// maybeLoadParents tops up the queue with per-parent slices from the
// database (there may be one per customer: they are not all held in memory).
func (r *runner) maybeLoadParents(ctx context.Context) error {
	if r.parentQueued >= 200 || time.Since(r.lastParentLoad) < 200*time.Millisecond {
		return nil
	}
	var objects []string
	for _, n := range r.order {
		o := r.objs[n]
		if o.kind == kindPerParent && !o.done && o.err == nil {
			objects = append(objects, n)
		}
	}
	if len(objects) == 0 {
		return nil
	}
	r.lastParentLoad = time.Now()
	claimed := make([]int64, 0, len(r.claimed))
	for id := range r.claimed {
		claimed = append(claimed, id)
	}
	rows, err := r.cfg.Pool.Query(ctx, `SELECT id, object, parent, coalesce(after, '') FROM stripe_sync.backfill_slices
WHERE NOT done AND parent IS NOT NULL AND object = ANY($1) AND NOT (id = ANY($2)) ORDER BY id LIMIT 500`, objects, claimed)
	if err != nil {
		return fmt.Errorf("backfill: load parent slices: %w", err)
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		s := &slice{}
		if err := rows.Scan(&s.id, &s.object, &s.parent, &s.after); err != nil {
			return err
		}
		r.claimed[s.id] = true
		r.objs[s.object].pending++
		r.push(s, false)
		found++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("backfill: load parent slices: %w", err)
	}
	r.parentsDry = found == 0
	return nil
}

// completeFinished records objects whose last slice is done.
func (r *runner) completeFinished(ctx context.Context) error {
	for _, n := range r.order {
		o := r.objs[n]
		if o.done || o.err != nil || o.kind == kindChild || o.pending > 0 {
			continue
		}
		if o.kind == kindPerParent {
			if p := r.objs[o.parent]; p != nil && !p.done {
				continue // more parents may come
			}
			if !r.parentsDry {
				continue
			}
			var left int
			if err := r.cfg.Pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.backfill_slices WHERE object = $1 AND NOT done`, n).Scan(&left); err != nil {
				return err
			}
			if left > 0 {
				r.parentsDry = false
				continue
			}
		}
		now := time.Now()
		var removed int
		var held []string
		err := r.inTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM stripe_sync.backfill_slices WHERE object = $1`, n); err != nil {
				return err
			}
			var err error
			if removed, held, err = sweep(ctx, tx, n); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE stripe_sync.backfill_objects SET completed_at = $2 WHERE object = $1`, n, now); err != nil {
				return err
			}
			for _, name := range append([]string{n}, o.children...) {
				if err := setPhase(ctx, tx, name, "live", "", nil, &now); err != nil {
					return err
				}
			}
			return logEvent(ctx, tx, "backfill_object_complete", map[string]any{"object": n, "children": o.children,
				"rows": o.rows.Load(), "requests": o.requests.Load(), "seconds": now.Sub(o.started).Seconds(), "removed": removed})
		})
		if err != nil {
			return fmt.Errorf("backfill: complete %s: %w", n, err)
		}
		if removed > 0 {
			r.log.Info("backfill: removed rows of objects that no longer exist", "object", n, "rows", removed)
		}
		if len(held) > 0 {
			r.log.Warn("backfill: rows of objects that may no longer exist are held by another transaction; the events loop checks them once the lock is released",
				"object", n, "ids", held)
		}
		o.done, o.completed = true, now
		for _, c := range o.children {
			r.objs[c].done, r.objs[c].completed = true, now
		}
		r.log.Info("backfill: object complete", "object", n, "rows", o.rows.Load(), "requests", o.requests.Load())
	}
	return nil
}

// runTask fetches one page of s and applies it, with s's successors, in
// one transaction.
func (r *runner) runTask(ctx context.Context, s *slice) (res taskResult) {
	if s.clocks {
		return r.runClocks(ctx, s)
	}
	res.s = s
	o := r.objs[s.object]
	begin := time.Now()
	var waited time.Duration
	defer func() { res.busy = time.Since(begin) - waited }()

	path := o.listPath
	q := url.Values{}
	for k, v := range listParams[s.object] {
		q[k] = v
	}
	pl := perParent[s.object]
	if s.parent != "" {
		if pl.param != "" {
			q.Set(pl.param, s.parent)
		} else {
			path = strings.ReplaceAll(path, "{parent}", s.parent)
		}
		if s.after != "" {
			q.Set("starting_after", s.after)
		}
	} else if s.ranged {
		q.Set("created[gte]", strconv.FormatInt(s.rng.Gte, 10))
		q.Set("created[lt]", strconv.FormatInt(s.rng.Lt, 10))
		if s.clock != "" {
			q.Set("test_clock", s.clock)
		}
		if s.inactive {
			q.Set("active", "false")
		}
		if s.rng.After != "" {
			q.Set("starting_after", s.rng.After)
		}
	} else if s.after != "" {
		q.Set("starting_after", s.after)
	}
	inl := r.inlineKids(o)
	for _, k := range inl {
		q.Add("expand[]", "data."+inline[k].field)
	}
	single := pl.single && s.parent != ""
	if len(o.table.Included) > 0 {
		q = stripeapi.ExpandIncluded(q, o.table, !single)
	}
	var page *stripeapi.Page
	var err error
	if single {
		var resp *stripeapi.Response
		resp, err = r.cfg.Client.Get(ctx, path, q)
		if resp != nil {
			page = &stripeapi.Page{Data: []json.RawMessage{resp.Body}, AsOf: resp.AsOf, RequestID: resp.RequestID, Waited: resp.Waited}
		}
	} else {
		page, err = r.cfg.Client.List(ctx, path, q)
	}
	res.reqs++
	o.requests.Add(1)
	if err != nil && q.Get("starting_after") != "" && cursorGone(err) {
		// The cursor object was deleted since its page was fetched: start
		// the rest over without it. For a range that re-reads only the
		// cursor's own second (the range ends right after it); a parent's
		// list is read again from its start. Rows read twice are the same.
		r.log.Info("backfill: cursor object gone, continuing without it", "object", s.object, "cursor", q.Get("starting_after"))
		q.Del("starting_after")
		s2 := *s
		s2.rng.After, s2.after = "", ""
		s = &s2
		res.s = s
		page, err = r.cfg.Client.List(ctx, path, q)
		res.reqs++
		o.requests.Add(1)
	}
	if err != nil && s.clock != "" && clockGone(err) {
		// The clock was deleted since it was listed, and its customers
		// with it: nothing of it to fetch.
		r.log.Info("backfill: test clock gone, skipping its objects", "object", s.object, "test_clock", s.clock)
		res.err = r.inTx(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM stripe_sync.backfill_slices WHERE id = $1`, s.id)
			return err
		})
		return res
	}
	if err != nil {
		res.err = err
		return res
	}
	waited += page.Waited

	objs := make([]store.Object, len(page.Data))
	var sum PageSummary
	ids := make([]string, 0, len(page.Data))
	for i, raw := range page.Data {
		id, created, err := stripeapi.ObjectHeader(raw)
		if err != nil {
			res.err = fmt.Errorf("%s page (request %s): %w", s.object, page.RequestID, err)
			return res
		}
		if i == 0 {
			sum.First = created
		}
		sum.Last, sum.LastID = created, id
		ids = append(ids, id)
		objs[i] = store.Object{Raw: raw, AsOf: page.AsOf}
	}
	sum.N, sum.HasMore = len(page.Data), page.HasMore
	included, more, err := extractInline(inl, objs, ids, page.AsOf)
	if err != nil {
		res.err = err
		return res
	}

	reqs, err := r.completeIncluded(ctx, o, objs)
	res.reqs += reqs
	if err != nil {
		res.err = err
		return res
	}

	childRows, reqs, w, err := r.completeNested(ctx, o, objs)
	res.reqs += reqs
	waited += w
	if err != nil {
		res.err = err
		return res
	}

	// Successors of s.
	var next []*slice
	var nextAfter string
	if s.ranged {
		pieces := Next(s.rng, sum, r.want())
		density := 0.0
		if sum.N > 0 && sum.First >= sum.Last {
			density = float64(sum.N) / float64(sum.First-sum.Last+1)
		}
		for _, p := range pieces {
			next = append(next, &slice{object: s.object, ranged: true, rng: p, est: density * float64(p.Seconds()), clock: s.clock, inactive: s.inactive})
		}
	} else if sum.HasMore && sum.N > 0 {
		nextAfter = sum.LastID
	}

	var written int
	var held []store.RowKey
	err = r.inTx(ctx, func(tx pgx.Tx) error {
		pw, err := withoutHeld(ctx, tx, o.table, s.parent, objs, ids, included)
		if err != nil {
			return err
		}
		written, held = len(pw.objs), pw.held
		if err := queueLocked(ctx, tx, pw.held, pw.heldStates, page.AsOf); err != nil {
			return err
		}
		if _, err := store.Upsert(ctx, tx, s.object, pw.objs); err != nil {
			return err
		}
		switch {
		case s.parent != "" && nextAfter != "":
			_, err = tx.Exec(ctx, `UPDATE stripe_sync.backfill_slices SET after = $2 WHERE id = $1`, s.id, nextAfter)
		case s.parent != "":
			_, err = tx.Exec(ctx, `UPDATE stripe_sync.backfill_slices SET done = true WHERE id = $1`, s.id)
		case !s.ranged && nextAfter != "":
			// Whole-list paging continues in the same row.
			_, err = tx.Exec(ctx, `UPDATE stripe_sync.backfill_slices SET after = $2 WHERE id = $1`, s.id, nextAfter)
		default:
			_, err = tx.Exec(ctx, `DELETE FROM stripe_sync.backfill_slices WHERE id = $1`, s.id)
		}
		if err != nil {
			return err
		}
		if err := insertSlices(ctx, tx, next); err != nil {
			return err
		}
		for _, k := range o.perParentKids {
			ko := r.objs[k]
			if ko == nil || ko.skipped {
				continue
			}
			parents := parentKeys(perParent[k], objs, ids)
			if _, isInline := inline[k]; isInline {
				parents = more[k]
				if _, err := store.Upsert(ctx, tx, k, pw.included[k]); err != nil {
					return err
				}
			}
			if len(parents) > 0 {
				if err := insertParents(ctx, tx, []string{k}, parents); err != nil {
					return err
				}
				res.parentsNew = true
			}
		}
		_, err = tx.Exec(ctx, `UPDATE stripe_sync.backfill_objects SET requests = requests + $2, rows = rows + $3 WHERE object = $1`,
			s.object, res.reqs, len(pw.objs))
		return err
	})
	if err != nil {
		res.err = err
		return res
	}
	if len(held) > 0 {
		r.log.Warn("backfill: rows held by another transaction; the events loop stores these objects once the lock is released, the backfill goes on",
			"object", s.object, "held", held)
	}
	o.rows.Add(int64(written))
	for k, rows := range included {
		r.objs[k].rows.Add(int64(len(rows)))
	}
	for table, n := range childRows {
		if c := r.objs[table]; c != nil {
			c.rows.Add(int64(n))
		}
	}
	if nextAfter != "" {
		// Continue the same parent/whole list.
		s2 := *s
		s2.after = nextAfter
		next = append(next, &s2)
	}
	res.next = next
	return res
}

// sweep removes the rows of object that its completed backfill did not
// write: the objects are gone (rows restored from an older dump without
// stripe_sync, or deleted while pgstripe was stopped, before a restart or
// a re-backfill). Every existing object was written with _as_of at or after
// upper_bound, Stripe's time when the backfill was planned; a resumed
// backfill keeps its first planning's bound. A key refused the test clocks
// list since then spares the rows on test clocks, which it could not list,
// as well as, in a table listed per customer, those of the customers on
// clocks (not among the parents it listed).
//
// Objects whose rows another transaction held (queued for re-fetch by a
// page, queueLocked) are left to the events loop, and so are rows to
// remove that are held now: sweep returns those ids, queued already.
func sweep(ctx context.Context, tx pgx.Tx, object string) (removed int, held []string, err error) {
	var before, planned time.Time
	if err := tx.QueryRow(ctx, `SELECT to_timestamp(upper_bound), planned_at FROM stripe_sync.backfill_objects WHERE object = $1`, object).Scan(&before, &planned); err != nil {
		return 0, nil, err
	}
	// A table listed per parent did not list the parents the parent
	// table's refused clocks hid.
	refused := []string{object}
	if parent, ok := listedPer(object); ok {
		refused = append(refused, parent)
	}
	var keepClocks bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe_sync.log
WHERE kind = 'backfill_test_clocks_refused' AND detail->>'object' = ANY($1) AND at >= $2)`, refused, planned).Scan(&keepClocks); err != nil {
		return 0, nil, err
	}
	// Any queued re-fetch, not only those of held rows: it stores the
	// object as Stripe has it, or removes it if Stripe answers 404, so it
	// decides as the sweep would, with a newer state. Not an unresolved
	// one (Stripe refuses its re-fetch, events.keepUnresolved): it would
	// never decide, and the sweep's list is the newer word; the events
	// loop then finds the row deleted and settles the entry. Unless it
	// holds an object's state as of the sweep's bound or later (a page
	// of this backfill found the row held, or an event since): the
	// object existed after the list began, the list is not the newer
	// word, and deleting its row would lose a live object for as long as
	// Stripe refuses the re-fetch.
	rows, err := tx.Query(ctx, `SELECT id FROM stripe_sync.events_refetch
WHERE object = $1 AND (reason <> 'unresolved' OR (held ? 'object' AND held_as_of >= $2))`, object, before)
	if err != nil {
		return 0, nil, fmt.Errorf("backfill: read re-fetch queue: %w", err)
	}
	spare, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, nil, fmt.Errorf("backfill: read re-fetch queue: %w", err)
	}
	removed, held, err = store.Sweep(ctx, tx, object, before, keepClocks, spare)
	if err != nil || len(held) == 0 {
		return removed, held, err
	}
	keys := make([]store.RowKey, len(held))
	states := make([]*store.Held, len(held))
	for i, id := range held {
		// The sweep's verdict, applied if Stripe refuses the re-fetch.
		keys[i], states[i] = store.RowKey{Table: object, ID: id}, &store.Held{Swept: true, KeepClocks: keepClocks, AsOf: before}
	}
	return removed, held, queueLocked(ctx, tx, keys, states, before)
}

// runClocks lists one page of test clocks and queues, in the same
// transaction as the clocks cursor moves, one range per clock for s's
// object: a kill between pages neither loses nor repeats a clock.
func (r *runner) runClocks(ctx context.Context, s *slice) (res taskResult) {
	res.s = s
	o := r.objs[s.object]
	begin := time.Now()
	q := url.Values{"limit": {"100"}}
	if s.after != "" {
		q.Set("starting_after", s.after)
	}
	page, err := r.cfg.Client.List(ctx, "/v1/test_helpers/test_clocks", q)
	res.reqs++
	o.requests.Add(1)
	if err != nil && s.after != "" && cursorGone(err) {
		// The cursor clock was deleted: list again from the start; clocks
		// queued twice are listed twice (the rows are the same).
		q.Del("starting_after")
		page, err = r.cfg.Client.List(ctx, "/v1/test_helpers/test_clocks", q)
		res.reqs++
		o.requests.Add(1)
	}
	var se *stripeapi.Error
	if err != nil && errors.As(err, &se) && se.HTTPStatus == 403 {
		// A restricted key without access to test clocks: the table
		// still gets everything else rather than failing.
		r.log.Warn("backfill: test clocks not readable with this key; objects on test clocks are left out", "object", s.object, "err", err)
		res.err = r.inTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM stripe_sync.backfill_slices WHERE id = $1`, s.id); err != nil {
				return err
			}
			return logEvent(ctx, tx, "backfill_test_clocks_refused", map[string]any{"object": s.object, "error": err.Error()})
		})
		return res
	}
	if err != nil {
		res.err = err
		return res
	}
	defer func() { res.busy = time.Since(begin) - page.Waited }()
	var next []*slice
	var last string
	for _, raw := range page.Data {
		id, _, err := stripeapi.ObjectHeader(raw)
		if err != nil {
			res.err = fmt.Errorf("test clocks page (request %s): %w", page.RequestID, err)
			return res
		}
		last = id
		// A clock's frozen time may lie anywhere, before Stripe's founding
		// too.
		next = append(next, &slice{object: s.object, ranged: true, rng: Range{Gte: 0, Lt: EndOfTime}, clock: id})
	}
	more := page.HasMore && last != ""
	err = r.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		if more {
			_, err = tx.Exec(ctx, `UPDATE stripe_sync.backfill_slices SET after = $2 WHERE id = $1`, s.id, last)
		} else {
			_, err = tx.Exec(ctx, `DELETE FROM stripe_sync.backfill_slices WHERE id = $1`, s.id)
		}
		if err != nil {
			return err
		}
		if err := insertSlices(ctx, tx, next); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE stripe_sync.backfill_objects SET requests = requests + $2 WHERE object = $1`, s.object, res.reqs)
		return err
	})
	if err != nil {
		res.err = err
		return res
	}
	if more {
		s2 := *s
		s2.after = last
		next = append(next, &s2)
	}
	res.next = next
	return res
}

// clockGone: Stripe refuses test_clock= naming a clock that no longer
// exists.
func clockGone(err error) bool {
	var se *stripeapi.Error
	return errors.As(err, &se) && se.Param == "test_clock" && (se.Code == "resource_missing" || se.HTTPStatus == 404)
}

// parentKeys are the parent ids the objects of a parent page bring for the
// per-parent table pl.
func parentKeys(pl parentList, objs []store.Object, ids []string) []string {
	if pl.key == nil {
		return ids
	}
	seen := map[string]bool{}
	var out []string
	for _, o := range objs {
		var f map[string]json.RawMessage
		if json.Unmarshal(o.Raw, &f) != nil {
			continue
		}
		if k := pl.key(f); k != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// inlineKids are the included lists to request with o's pages.
func (r *runner) inlineKids(o *objState) []string {
	var out []string
	for _, k := range o.perParentKids {
		if in, ok := inline[k]; ok && in.parent == o.table.Name {
			if ko := r.objs[k]; ko != nil && !ko.skipped {
				out = append(out, k)
			}
		}
	}
	return out
}

// extractInline takes the included lists out of the parents (rewriting
// their raw without the field) and returns the included objects per kid
// table, and the parents whose included list has more.
func extractInline(kids []string, objs []store.Object, ids []string, asOf time.Time) (map[string][]store.Object, map[string][]string, error) {
	if len(kids) == 0 {
		return nil, nil, nil
	}
	included := map[string][]store.Object{}
	more := map[string][]string{}
	for i := range objs {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(objs[i].Raw, &fields); err != nil {
			return nil, nil, err
		}
		changed := false
		for _, k := range kids {
			f := inline[k].field
			v, ok := fields[f]
			if !ok {
				// Not included (an old API or emulator): fetch per parent.
				more[k] = append(more[k], ids[i])
				continue
			}
			delete(fields, f)
			changed = true
			var l struct {
				Data    []json.RawMessage `json:"data"`
				HasMore bool              `json:"has_more"`
			}
			if err := json.Unmarshal(v, &l); err != nil {
				more[k] = append(more[k], ids[i])
				continue
			}
			if l.HasMore {
				more[k] = append(more[k], ids[i])
			}
			for _, d := range l.Data {
				included[k] = append(included[k], store.Object{Raw: d, AsOf: asOf})
			}
		}
		if changed {
			raw, err := json.Marshal(fields)
			if err != nil {
				return nil, nil, err
			}
			objs[i].Raw = raw
		}
	}
	return included, more, nil
}

// completeIncluded pages the rest of the included lists cut at has_more
// (schema.IncludedList: a checkout session's line_items), a few objects
// at a time.
func (r *runner) completeIncluded(ctx context.Context, o *objState, objs []store.Object) (reqs int, err error) {
	if len(o.table.Included) == 0 {
		return 0, nil
	}
	var mu sync.Mutex
	g := fanOut()
	for i := range objs {
		g.Go(func() error {
			raw, n, err := r.cfg.Client.CompleteIncluded(ctx, o.table, objs[i].Raw)
			mu.Lock()
			reqs += n
			mu.Unlock()
			switch {
			case err == nil:
				objs[i].Raw = raw
			case stripeapi.IsNotFound(err):
				// The object is gone meanwhile: its list is stored as
				// embedded, as nested lists are (completeNested).
			default:
				return err
			}
			return nil
		})
	}
	err = g.Wait()
	o.requests.Add(int64(reqs))
	return reqs, err
}

// fanOut runs the follow-up requests of one page (the rest of included and
// nested lists) a few at a time: enough to hide Stripe's latency, few
// enough to leave the limiter's share to the other objects' pages. Wait
// answers the first error; the other requests still run to their end.
func fanOut() *errgroup.Group {
	g := new(errgroup.Group)
	g.SetLimit(8)
	return g
}

// completeNested fetches the rest of every nested list with has_more, so
// the store gets complete child sets.
func (r *runner) completeNested(ctx context.Context, o *objState, objs []store.Object) (rows map[string]int, reqs int, waited time.Duration, err error) {
	rows = map[string]int{}
	if len(o.table.Nested) == 0 {
		return rows, 0, 0, nil
	}
	type job struct {
		i    int
		n    schema.NestedList
		id   string
		path string
		q    url.Values
	}
	var jobs []job
	for i, obj := range objs {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(obj.Raw, &fields); err != nil {
			return nil, 0, 0, err
		}
		var id string
		_ = json.Unmarshal(fields["id"], &id)
		for _, n := range o.table.Nested {
			var l struct {
				Data    []json.RawMessage `json:"data"`
				HasMore bool              `json:"has_more"`
			}
			if v, ok := fields[n.Field]; !ok || json.Unmarshal(v, &l) != nil {
				continue
			}
			rows[n.Table] += len(l.Data)
			if !l.HasMore {
				continue
			}
			j := job{i: i, n: n, id: id, path: n.ListPath, q: url.Values{}}
			if strings.Contains(j.path, "{id}") {
				j.path = strings.ReplaceAll(j.path, "{id}", id)
			} else if ct, ok := schema.Lookup(n.Table); ok && ct.Parent != nil {
				j.q.Set(ct.Parent.Column, id)
			}
			jobs = append(jobs, j)
		}
	}
	if len(jobs) == 0 {
		return rows, 0, 0, nil
	}
	var mu sync.Mutex
	g := fanOut()
	for _, j := range jobs {
		g.Go(func() error {
			var all []json.RawMessage
			n, w := 0, time.Duration(0)
			err := r.cfg.Client.ListAll(ctx, j.path, j.q, func(p *stripeapi.Page) error {
				n++
				w += p.Waited
				all = append(all, p.Data...)
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			reqs += max(n, 1)
			waited += w
			if err != nil {
				if stripeapi.IsNotFound(err) {
					return nil // parent deleted meanwhile: keep what was embedded
				}
				return fmt.Errorf("%s of %s: %w", j.n.Field, j.id, err)
			}
			if objs[j.i].Children == nil {
				objs[j.i].Children = map[string][]json.RawMessage{}
			}
			objs[j.i].Children[j.n.Field] = all
			rows[j.n.Table] += len(all)
			return nil
		})
	}
	firstErr := g.Wait()
	// The embedded first pages were counted above and replaced by the full
	// lists: don't count them twice.
	for _, j := range jobs {
		if _, ok := objs[j.i].Children[j.n.Field]; ok {
			var fields map[string]json.RawMessage
			_ = json.Unmarshal(objs[j.i].Raw, &fields)
			var l struct {
				Data []json.RawMessage `json:"data"`
			}
			_ = json.Unmarshal(fields[j.n.Field], &l)
			rows[j.n.Table] -= len(l.Data)
		}
	}
	o.requests.Add(int64(reqs))
	return rows, reqs, waited, firstErr
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
