package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/metrics"
	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/stripeapi"
)

const (
	// DefaultPollInterval is PGSTRIPE_POLL_INTERVAL's default.
	DefaultPollInterval = 500 * time.Millisecond
	// DefaultLookBack is how late an event may become visible and still be
	// applied by a sweep. Stripe's list is usually consistent within
	// seconds (Sequin re-reads ~5 s); a minute leaves a wide margin at the
	// cost of one extra read of a minute of events every SweepEvery.
	DefaultLookBack = 60 * time.Second
	// Retention is how long Stripe keeps events.
	Retention = 30 * 24 * time.Hour
	// headOverlap is what every poll re-reads before the last checked point:
	// it covers whole-second truncation of created and Date, and events
	// that become visible up to about two seconds late, without waiting for
	// a sweep.
	headOverlap = 3 * time.Second
	// retentionMargin is kept between the cursor's window and Stripe's
	// retention: events near the edge may already be gone.
	retentionMargin = time.Hour
	// maxPerTx bounds the events applied in one transaction (a catch-up of
	// days of events commits in steps and resumes from there).
	maxPerTx = 1000
)

// ErrCursorExpired is returned by Run when the cursor is older than Stripe's
// event retention and Config.Backfill is nil: the events that would bring
// the tables up to date are gone. The caller must run a complete backfill
// (after SetCursor) and then Run again; see Rebackfill.
var ErrCursorExpired = errors.New("events: cursor is older than Stripe's 30-day event retention; a complete re-backfill is needed")

// Config configures Run.
type Config struct {
	Pool   *pgxpool.Pool
	Client *stripeapi.Client
	// PollInterval between polls of /v1/events (default 500 ms).
	PollInterval time.Duration
	// LookBack is the window a sweep re-reads: an event that becomes visible
	// up to LookBack after its creation is still applied (default 60 s).
	LookBack time.Duration
	// SweepEvery is how often the LookBack window is re-read (default
	// LookBack/2, at least PollInterval). The last 3 s are re-read every
	// poll (or every second, above a page of events per 3 s).
	SweepEvery time.Duration
	// BalanceEvery is how often balance_transactions (no events of their
	// own) and checkout_sessions (no creation event) are listed by created
	// (default 10 s; negative: never).
	BalanceEvery time.Duration
	// Epoch is the leader epoch: every apply transaction is fenced with it
	// (leader.Fence). 0 disables fencing (single instance, tests).
	Epoch int64
	// Backfill, when set, is called when the cursor is older than Stripe's
	// retention. since is Stripe's time when the re-backfill began (the
	// same on every call for one re-backfill, also after a crash): it must
	// backfill every table completely, refetching whatever it completed
	// before since and resuming what it began after (backfill.Config's
	// RestartCompletedBefore = since). Afterwards rows older than since
	// are removed (their objects are gone) and the loop continues from
	// since. When nil, Run returns ErrCursorExpired.
	Backfill func(ctx context.Context, since time.Time) error
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// OnApplied, when set, is called after each commit with the events it
	// applied (benchmarks and tests measure lag with it).
	OnApplied func(evs []Event, committed time.Time)
}

func (c *Config) defaults() error {
	if c.Pool == nil {
		return errors.New("events: Config.Pool is required")
	}
	if c.Client == nil {
		return errors.New("events: Config.Client is required")
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.LookBack <= 0 {
		c.LookBack = DefaultLookBack
	}
	if c.LookBack > Retention/2 {
		return fmt.Errorf("events: LookBack %s is longer than half of Stripe's event retention", c.LookBack)
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = max(c.LookBack/2, c.PollInterval)
	}
	if c.BalanceEvery == 0 {
		c.BalanceEvery = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Run follows Stripe's events until ctx ends, starting at the cursor
// recorded by SetCursor (before the backfill) or by an earlier Run. It
// returns ctx's error on cancellation, leader.ErrDeposed when another
// instance took over, ErrNoCursor, or ErrCursorExpired (Config.Backfill
// nil). Stripe and database errors are logged and retried, never fatal.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	return newPoller(cfg).run(ctx)
}

// newPoller is a poller for cfg (defaults applied), with the maps its
// goroutines share made once.
func newPoller(cfg Config) *poller {
	return &poller{cfg: cfg, log: cfg.Logger.With("component", "events"), seen: seenSet{},
		refusals: map[string]tableRefusal{}, readable: map[string]bool{}, probed: map[string]string{}, doubted: map[string]string{},
		failing: map[refetchKey]time.Time{}, fetches: newFetches()}
}

type poller struct {
	cfg Config
	log *slog.Logger
	cur Cursor
	// seen: applied events of the current look-back window.
	seen seenSet
	// clock is the newest response Date: Stripe's clock, for retention and
	// for "the second has passed". Shared with the re-fetcher.
	clock stripeClock
	// anchor is the newest event listed so far (head polls list what
	// came after it); "" until the first poll.
	anchor                 string
	lastSweep, lastBalance time.Time
	lastOverlap            time.Time
	overlapPages           int       // pages the last overlap read took
	overlap, sweep         *lateScan // re-reads in progress, nil if none
	overlapBase            time.Time // checked_through when the last overlap re-read began
	sweepStarved           bool      // the last step read no page of the sweep under way
	errorShown             bool      // last_error was set by recordError
	lastSave, lastStatus   time.Time
	lastPrune              time.Time
	lastTombstonePrune     time.Time
	// txMu serializes the write transactions of the poll and the
	// re-fetcher (inTx).
	txMu sync.Mutex
	// taxIDsChanged is, per customer, when a transaction last applied a
	// change to its tax ids (guarded by txMu; the re-fetcher forgets
	// what no fetch of its can predate): a draft of that customer the
	// re-fetcher fetched before then may show the tax ids from before the
	// change, and the change's apply, which compares stored drafts, ran
	// before that draft was stored.
	taxIDsChanged map[string]time.Time
	// locked are the objects the re-fetcher found held by another
	// transaction (its goroutine only).
	locked map[refetchKey]*lockWait
	// look counts the re-fetcher's looks at the held rows (skipHeld
	// starts one per drain): a held row's backoff grows once per look,
	// however often a transaction that postpones its entry runs again.
	look uint64
	// onlyReason, when set, restricts the drain to entries queued for
	// that reason or carrying a held state (DrainHeld: reasonLocked; a
	// held state merged into an entry queued for another reason keeps
	// that entry's reason).
	onlyReason *string
	// drainOnly: the tables DrainHeld waits for and reports (nil: all).
	drainOnly []string
	// fetchFailed, when not nil (DrainHeld), records the last failed
	// re-fetch of each object: an object still queued at the end is
	// reported as held only if its rows, not Stripe, stopped it last.
	fetchFailed map[refetchKey]fetchFailure
	// refusalMu guards refusals, readable, probed and doubted, which the
	// re-fetcher's fetches (goroutines) read and write.
	refusalMu sync.Mutex
	// refusals are the tables whose re-fetches Stripe refuses the key
	// wholesale (403), with the refusal and until when no request is
	// made for them (tableGate).
	refusals map[string]tableRefusal
	// readable are the tables Stripe answered a re-fetch of since their
	// last 403 or unanswered one: their entries need no probe.
	readable map[string]bool
	// probed is, per table not known readable, the object whose re-fetch
	// left it so last (a 403, or no answer): the next probe is the due
	// entry after it, in the queue's order (probeOnly).
	probed map[string]string
	// doubted is, per table, the object whose 403 made it not known
	// readable, while no other was refused: its 403 alone gates nothing.
	doubted map[string]string
	// fetches are the re-fetcher's fetches under way, which may outlive
	// the drain that started them (drainRefetch).
	fetches *fetches
	// failing are the queued objects whose last re-fetch Stripe did not
	// answer (nor their table's probe), with when: a drain reads them
	// after the others (the re-fetcher's goroutine only).
	failing map[refetchKey]time.Time
	// beforeWrite, when set (tests), is called by writeFetched with the
	// jobs it took, before its transaction: a seam to end the loop with
	// results in hand.
	beforeWrite func(jobs []*fetchJob)
}

func (p *poller) run(ctx context.Context) error {
	var err error
	p.cur, err = LoadCursor(ctx, p.cfg.Pool)
	if errors.Is(err, ErrNoCursor) {
		p.cur, err = adoptBackfillCursor(ctx, p.cfg.Pool)
	}
	if err != nil {
		return err
	}
	if err := p.markLive(ctx); err != nil {
		return err
	}
	if err := p.loadSeen(ctx); err != nil {
		return err
	}
	// Re-fetches run beside the polls: a burst of them (hundreds of
	// same-second objects or upcoming invoices, each a request) must not
	// hold up the next poll.
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.refetchLoop(ctx); err != nil {
			cancel(err)
		}
	}()
	defer func() { cancel(nil); wg.Wait() }()
	backoff := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-timer.C:
		}
		started := time.Now()
		err := p.step(ctx)
		switch {
		case err == nil:
			backoff = 0
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case errors.Is(err, leader.ErrDeposed), errors.Is(err, ErrCursorExpired), errors.Is(err, errBackfill):
			return err
		default:
			backoff = min(max(2*backoff, p.cfg.PollInterval), 30*time.Second)
			p.log.Warn("events poll failed; retrying", "in", backoff, "err", err)
			p.recordError(ctx, err)
		}
		// Poll every PollInterval from start to start, so a poll that took
		// a while doesn't add its duration to the lag of the next one.
		wait := p.cfg.PollInterval - time.Since(started)
		if backoff > 0 {
			wait = backoff
		}
		timer.Reset(max(wait, 0))
	}
}

// errBackfill wraps a failed re-backfill (Run returns it; a restart resumes
// the re-backfill).
var errBackfill = errors.New("events: re-backfill failed")

// step is one iteration: re-backfill if needed, poll, re-fetch, balance.
func (p *poller) step(ctx context.Context) error {
	ctx = stripeapi.WithPriority(ctx, stripeapi.Background)
	if !p.cur.RebackfillSince.IsZero() {
		return p.rebackfill(ctx, "resume")
	}
	now := time.Now()
	// While the overlap window fits in one page, re-reading it costs what a
	// head poll costs and catches late events at once.
	mode := modeHead
	if p.anchor == "" || p.overlapPages <= 1 {
		mode = modeOverlap
	}
	base := p.cur.CheckedThrough
	pages, err := p.poll(ctx, mode)
	if err != nil {
		if mode == modeHead {
			p.anchor = "" // e.g. gone past retention: re-read by time next
		}
		return err
	}
	if mode == modeOverlap {
		// This poll re-read by time from base, and it set the anchor head
		// polls list from: an event late for it and older than the anchor
		// is left to the next overlap re-read, which must reach back from
		// base, as from an overlap re-read's, not from where head polls
		// will have moved checked_through by then (a slow step: a long
		// catch-up, a loaded machine).
		p.lastOverlap, p.overlapPages, p.overlapBase = now, pages, base
	}
	// The rest of the cycle re-reads windows for late events, a page at a
	// time, so a long sweep (a minute of a busy account, against Stripe's
	// latency) never holds up the next poll by more than one request. The
	// overlap goes first: it is short and keeps late events' lag low.
	if mode == modeHead && p.overlap == nil && now.Sub(p.lastOverlap) >= overlapEvery {
		p.overlap = p.newScan(false, now)
	}
	if p.sweep == nil && now.Sub(p.lastSweep) >= p.cfg.SweepEvery {
		p.sweep = p.newScan(true, now)
	}
	deadline := now.Add(p.cfg.PollInterval * 3 / 4)
	// A page holding only events applied already (a re-read of what head
	// polls caught up with after a burst) needs no transaction, so no wait
	// for the re-fetcher's: past the deadline, a scan reads on while its
	// pages hold nothing new, for up to one more cycle. Otherwise, when
	// steps outlast the cycle (a loaded machine), re-reading a burst takes
	// a step per page, and the late events at its far end wait for all of
	// them.
	grace := deadline
	if t := time.Now(); t.After(grace) {
		grace = t
	}
	grace = grace.Add(p.cfg.PollInterval)
	more := func(seenOnly bool) bool {
		t := time.Now()
		return t.Before(deadline) || (seenOnly && t.Before(grace))
	}
	readOverlap, seenOnly := false, false
	for p.overlap != nil && (!readOverlap || more(seenOnly)) {
		done, applied, err := p.scanPage(ctx, p.overlap)
		if err != nil {
			return err // the scan resumes at its page next step
		}
		readOverlap, seenOnly = true, !applied
		if done {
			p.lastOverlap, p.overlapBase, p.overlap = p.overlap.began, p.overlap.base, nil
		}
	}
	// The sweep gets what the cycle has left, and a page at least every
	// other step: when steps outlast the cycle (a slow Stripe, a loaded
	// machine), every step reads an overlap page past its deadline, and a
	// sweep of more than one page would otherwise never end.
	readSweep := false
	seenOnly = false
	for p.sweep != nil && ((!readSweep && (!readOverlap || p.sweepStarved)) || more(seenOnly)) {
		done, applied, err := p.scanPage(ctx, p.sweep)
		if err != nil {
			return err
		}
		readSweep, seenOnly = true, !applied
		if done {
			p.lastSweep, p.sweep = p.sweep.began, nil
		}
	}
	p.sweepStarved = p.sweep != nil && !readSweep
	if p.cfg.BalanceEvery > 0 && now.Sub(p.lastBalance) >= p.cfg.BalanceEvery {
		if err := p.pollBalance(ctx); err != nil {
			return err
		}
		p.lastBalance = now
	}
	if now.Sub(p.lastPrune) >= p.cfg.LookBack {
		if err := p.prune(ctx); err != nil {
			return err
		}
		p.lastPrune = now
	}
	return nil
}

// recordError shows a failing poll in stripe_sync.status (last_error of
// the live tables) until the next successful one clears it. Best effort:
// the database may be what fails.
func (p *poller) recordError(ctx context.Context, err error) {
	msg := err.Error()
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	// updated_at stays: it dates the last complete poll, from which the
	// status view counts the lag while polls fail.
	_, _ = p.cfg.Pool.Exec(ctx, `UPDATE stripe_sync.objects SET last_error = $1 WHERE phase = 'live'`, "events: "+msg)
	p.errorShown = true
}

// observeDate records a response Date as Stripe's current time.
func (p *poller) observeDate(d time.Time) { p.clock.observe(d) }

// stripeClock is the newest response Date seen.
type stripeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stripeClock) observe(d time.Time) {
	c.mu.Lock()
	if d.After(c.now) {
		c.now = d
	}
	c.mu.Unlock()
}

func (c *stripeClock) get() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// expired reports whether the cursor's window reaches past Stripe's
// retention at Stripe time now.
func expired(cur Cursor, now time.Time, lookBack time.Duration) bool {
	return cur.CheckedThrough.Add(-lookBack).Before(now.Add(-Retention + retentionMargin))
}

// pollMode is what a poll reads.
type pollMode uint8

const (
	// modeHead lists only the events after the newest one seen
	// (ending_before): cheap, one request while fewer than 100 arrived.
	modeHead pollMode = iota
	// modeOverlap re-reads from headOverlap before the checked point:
	// events that became visible a little late, after newer ones.
	modeOverlap
)

// overlapEvery is how often the overlap window is re-read when polls read
// only the head.
const overlapEvery = time.Second

// lateScan is a re-read of a created window, newest first, for events that
// became visible after newer ones: the overlap or a sweep (LookBack).
type lateScan struct {
	sweep bool
	q     url.Values
	began time.Time
	base  time.Time // checked_through when it began
}

// newScan starts a re-read. An overlap reads from 3 s before where the
// previous one began, so that overlaps leave no gap however they are
// scheduled; a sweep from LookBack before the checked point.
func (p *poller) newScan(sweep bool, now time.Time) *lateScan {
	base := p.cur.CheckedThrough
	from := windowStart(base, sweep, p.cfg.LookBack)
	if !sweep && !p.overlapBase.IsZero() && p.overlapBase.Before(base) {
		from = windowStart(p.overlapBase, false, p.cfg.LookBack)
	}
	q := url.Values{}
	q.Set("limit", "100")
	q.Set("created[gte]", strconv.FormatInt(from.Unix(), 10))
	return &lateScan{sweep: sweep, q: q, began: now, base: base}
}

// scanPage reads the next page of the current scan and applies what is
// new (applied: there was some); done when the window is exhausted.
func (p *poller) scanPage(ctx context.Context, sc *lateScan) (done, applied bool, err error) {
	started := time.Now()
	page, err := p.cfg.Client.List(ctx, "/v1/events", sc.q)
	if err != nil {
		return false, false, fmt.Errorf("re-read events: %w", err)
	}
	p.observeDate(page.AsOf)
	evs, err := parseEvents(page.Data)
	if err != nil {
		return false, false, err
	}
	var pending []Event
	for _, e := range evs {
		if !p.seen.has(e.ID) {
			pending = append(pending, e)
		}
	}
	if len(pending) > 0 {
		p.log.Debug("late events found", "events", len(pending), "sweep", sc.sweep)
		if err := p.apply(ctx, pending, nil, started); err != nil {
			return false, false, err
		}
	}
	applied = len(pending) > 0
	if !page.HasMore || len(evs) == 0 {
		return true, applied, nil
	}
	sc.q.Set("starting_after", evs[len(evs)-1].ID)
	return false, applied, nil
}

// poll reads events and applies what is new, page by page.
func (p *poller) poll(ctx context.Context, mode pollMode) (pages int, err error) {
	q := url.Values{}
	q.Set("limit", "100")
	if mode == modeHead {
		q.Set("ending_before", p.anchor)
	} else {
		from := windowStart(p.cur.CheckedThrough, false, p.cfg.LookBack)
		q.Set("created[gte]", strconv.FormatInt(from.Unix(), 10))
	}
	var checked time.Time
	var pending []Event
	anchor := p.anchor
	pollStarted := time.Now()
	for first := true; ; first = false {
		page, err := p.cfg.Client.List(ctx, "/v1/events", q)
		if err != nil {
			return pages, fmt.Errorf("list events: %w", err)
		}
		pages++
		p.observeDate(page.AsOf)
		if first {
			checked = page.AsOf
			if expired(p.cur, page.AsOf, p.cfg.LookBack) {
				// The re-backfill sets the cursor and the re-reads anew.
				return pages, p.rebackfill(ctx, "cursor_expired")
			}
		}
		evs, err := parseEvents(page.Data)
		if err != nil {
			return pages, err
		}
		for _, e := range evs {
			if !p.seen.has(e.ID) {
				pending = append(pending, e)
			}
		}
		// The newest event listed: a head poll pages toward newer events
		// (each page newest first), the others toward older ones.
		if len(evs) > 0 && (mode == modeHead || first) {
			anchor = evs[0].ID
		}
		if !page.HasMore || len(evs) == 0 {
			break
		}
		// Commit a long catch-up in steps, so a crash doesn't lose it all
		// and memory stays bounded.
		if len(pending) >= maxPerTx {
			if err := p.apply(ctx, pending, nil, pollStarted); err != nil {
				return pages, err
			}
			pending = nil
		}
		if mode == modeHead {
			q.Set("ending_before", evs[0].ID)
		} else {
			q.Set("starting_after", evs[len(evs)-1].ID)
		}
	}
	var next *Cursor
	if checked.After(p.cur.CheckedThrough) && (len(pending) > 0 || time.Since(p.lastSave) >= 5*time.Second) {
		c := p.cur
		c.CheckedThrough = checked
		next = &c
	}
	if len(pending) == 0 && next == nil {
		err = p.idleStatus(ctx, pollStarted)
	} else {
		err = p.apply(ctx, pending, next, pollStarted)
	}
	if err == nil {
		p.anchor = anchor
		metrics.EventsPolled.Set(float64(pollStarted.UnixNano()) / 1e9)
	}
	return pages, err
}

// inTx runs fn in a transaction fenced by the leader epoch. The loop's
// transactions (polls, re-fetches, balance lists) run one at a time: a
// Delete can't see a row that another transaction inserted and has not
// committed, so a poll deleting an object that a re-fetch was storing for
// the first time would leave the re-fetched row behind its tombstone for
// ever (store's documented gap). Only the transactions are serialized,
// not the requests to Stripe before them, so no transaction may wait for
// a user's: rows held by other transactions are left to the re-fetch
// queue (lockRows), and any other lock wait ends after loopLockTimeout.
// A transaction Postgres rolled back for a conflict (a deadlock with a
// write-through or a user's transaction, a lock timeout,
// store.Retryable) runs again, whole, after a backoff: fn must be
// repeatable.
func (p *poller) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	return store.Retry(ctx, p.log, "events", func() error {
		return pgx.BeginTxFunc(ctx, p.cfg.Pool, pgx.TxOptions{BeginQuery: beginLoopTx}, func(tx pgx.Tx) error {
			if p.cfg.Epoch != 0 {
				if err := leader.Fence(ctx, tx, p.cfg.Epoch); err != nil {
					return err
				}
			}
			return fn(tx)
		})
	})
}

// apply writes one batch of new events (and optionally the new cursor) in
// one transaction: the objects, the applied ids, the re-fetch queue, the
// status. Nothing of it is visible, or remembered as applied, before
// commit, so a crash at any point re-applies the batch as a whole.
func (p *poller) apply(ctx context.Context, evs []Event, next *Cursor, pollStarted time.Time) error {
	pl := planBatch(evs)
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		if err := p.applyPlan(ctx, tx, pl); err != nil {
			return err
		}
		if next != nil {
			if pl.maxEvent.ID != "" && !pl.maxEvent.At().Before(next.LastEventAt) {
				next.LastEventID, next.LastEventAt = pl.maxEvent.ID, pl.maxEvent.At()
			}
			if err := saveCursor(ctx, tx, *next); err != nil {
				return err
			}
		}
		return p.writeStatus(ctx, tx, pl, pollStarted)
	})
	if err != nil {
		return err
	}
	committed := time.Now()
	p.seen.add(evs)
	if next != nil {
		p.cur = *next
		p.lastSave = committed
	}
	p.lastStatus, p.errorShown = committed, false
	for _, e := range evs {
		metrics.EventsApplied.WithLabelValues(e.Type).Inc()
		metrics.EventLag.Observe(committed.Sub(e.At()).Seconds())
	}
	if len(evs) > 0 {
		p.log.Debug("applied events", "events", len(evs), "ignored", pl.Ignored, "deletes", len(pl.Deletes), "refetch", len(pl.Refetch))
	}
	if p.cfg.OnApplied != nil && len(evs) > 0 {
		p.cfg.OnApplied(evs, committed)
	}
	return nil
}
