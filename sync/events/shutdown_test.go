package events

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// stopEnv is an emulator with customers that no event announced (seeded),
// each queued for re-fetch in a migrated database: their rows can come
// from re-fetches only.
type stopEnv struct {
	e      *emulator.Emulator
	pool   *pgxpool.Pool // direct
	db     string
	client *stripeapi.Client
	ids    []string
}

const stopCustomers = 5

func newStopEnv(t *testing.T) *stopEnv {
	t.Helper()
	ctx := context.Background()
	e, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if err := e.SeedCustomers(stopCustomers, ""); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_stop", BaseURL: srv.URL, RateLimit: 500, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	pool, db := pgtest.NewMigratedDB(t)
	if _, _, err := EnsureCursor(ctx, pool, c, 0); err != nil {
		t.Fatal(err)
	}
	v := &stopEnv{e: e, pool: pool, db: db, client: c}
	for id := range e.Objects("customers") {
		v.ids = append(v.ids, id)
	}
	slices.Sort(v.ids)
	if len(v.ids) != stopCustomers {
		t.Fatalf("seeded %d customers, want %d", len(v.ids), stopCustomers)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
SELECT 'customers', id, $2, $3 FROM unnest($1::text[]) AS id`, v.ids, e.Now().Add(-time.Minute), reasonAmbiguous); err != nil {
		t.Fatal(err)
	}
	return v
}

// fetches counts the customer retrieves Stripe answered.
func (v *stopEnv) fetches(t *testing.T) int64 {
	t.Helper()
	var n int64
	for route, c := range v.e.Stats().ByRoute {
		if strings.HasPrefix(route, "GET /v1/customers/") {
			n += c
		}
	}
	return n
}

func (v *stopEnv) queued(t *testing.T) []string {
	t.Helper()
	rows, _ := v.pool.Query(context.Background(), `SELECT id FROM stripe_sync.events_refetch ORDER BY id`)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// emails are the stored customers' emails by id.
func (v *stopEnv) emails(t *testing.T) map[string]string {
	t.Helper()
	rows, err := v.pool.Query(context.Background(), `SELECT id, coalesce(email, '') FROM stripe.customers`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var id, email string
		if err := rows.Scan(&id, &email); err != nil {
			t.Fatal(err)
		}
		out[id] = email
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (v *stopEnv) stripeEmail(t *testing.T, id string) string {
	t.Helper()
	var c struct{ Email string }
	if err := json.Unmarshal(v.e.Objects("customers")[id], &c); err != nil {
		t.Fatal(err)
	}
	return c.Email
}

// runUntilInHand runs the loop on pool until every queued customer was
// fetched, and ends it as SIGTERM would, with the last results still in
// hand: after the drain took them to write, before its transaction.
// atStop runs then, with those results. It returns when Run has returned, and how long
// that took after the cancel.
func (v *stopEnv) runUntilInHand(t *testing.T, pool *pgxpool.Pool, epoch int64, atStop func(inHand []*fetchJob)) time.Duration {
	t.Helper()
	cfg := Config{Pool: pool, Client: v.client, PollInterval: 100 * time.Millisecond, LookBack: 5 * time.Second,
		SweepEvery: time.Second, Epoch: epoch, Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, nil))}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	p := newPoller(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fetched int
	var once sync.Once
	var cancelled atomic.Int64
	p.beforeWrite = func(jobs []*fetchJob) {
		for _, j := range jobs {
			if j.res != nil {
				fetched++
			}
		}
		if fetched < stopCustomers {
			return
		}
		once.Do(func() {
			var inHand []*fetchJob
			for _, j := range jobs {
				if j.res != nil {
					inHand = append(inHand, j)
				}
			}
			atStop(inHand)
			cancelled.Store(time.Now().UnixNano())
			cancel()
		})
	}
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	select {
	case err := <-done:
		if err != nil && ctx.Err() == nil {
			t.Fatalf("Run ended before the stop: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not end within 60 s")
	}
	if cancelled.Load() == 0 {
		t.Fatal("the loop ended without its re-fetches in hand")
	}
	return time.Since(time.Unix(0, cancelled.Load()))
}

// restart is the next start's re-fetcher: a new poller drains what is
// due and writes every fetch it began.
func (v *stopEnv) restart(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	cfg := Config{Pool: v.pool, Client: v.client, PollInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, nil))}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	p := newPoller(cfg)
	p.clock.observe(v.e.Now())
	if _, err := p.drainRefetch(ctx); err != nil {
		t.Fatal(err)
	}
	p.fetches.wait()
	if err := p.writeFetched(ctx); err != nil {
		t.Fatal(err)
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Re-fetch results in hand when the loop ends are written, not fetched
// again at the next start; the write is the drain's own: a newer state
// stored meanwhile is kept (the ordering guard), and an entry queued
// again meanwhile stays queued (its fetch may predate that change). Before,
// they were dropped: the rows stayed unwritten and the next start fetched
// every one again.
func TestStopWritesFetched(t *testing.T) {
	v := newStopEnv(t)
	ctx := context.Background()
	var newer, again string
	v.runUntilInHand(t, v.pool, 0, func(inHand []*fetchJob) {
		if len(inHand) < 2 {
			// Needs two of them in hand: one given a newer state, one
			// queued again.
			t.Errorf("%d results in hand at the stop, want at least 2", len(inHand))
			return
		}
		newer, again = inHand[0].ID, inHand[1].ID
		// An event applied after the fetch: a newer state than the
		// fetched one (as of its response Date).
		// (On the loop's goroutine: t.Error, not t.Fatal.)
		tx, err := v.pool.Begin(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		defer tx.Rollback(ctx)
		raw := `{"id":"` + newer + `","object":"customer","created":1700000000,"email":"newer@example.com"}`
		if _, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: json.RawMessage(raw), AsOf: inHand[0].res.obj.AsOf.Add(time.Hour)}}); err != nil {
			t.Error(err)
			return
		}
		// An event queueing the other again while its result is in hand.
		if _, err := tx.Exec(ctx, `UPDATE stripe_sync.events_refetch SET queued_at = clock_timestamp() WHERE object = 'customers' AND id = $1`, again); err != nil {
			t.Error(err)
			return
		}
		if err := tx.Commit(ctx); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		return
	}
	if n := v.fetches(t); n != stopCustomers {
		t.Fatalf("%d customer fetches before the stop, want %d", n, stopCustomers)
	}
	emails := v.emails(t)
	for _, id := range v.ids {
		want := v.stripeEmail(t, id)
		if id == newer {
			want = "newer@example.com"
		}
		got, ok := emails[id]
		switch {
		case !ok:
			t.Errorf("customer %s not stored after the stop: its re-fetch, in hand, was dropped", id)
		case got != want:
			t.Errorf("customer %s: email %q after the stop, want %q", id, got, want)
		}
	}
	if q := v.queued(t); !slices.Equal(q, []string{again}) {
		t.Errorf("queued after the stop: %v, want only %s (queued again after its fetch)", q, again)
	}

	v.restart(t)
	// Only the entry queued again is fetched again.
	if n := v.fetches(t); n != stopCustomers+1 {
		t.Errorf("%d customer fetches after the restart, want %d (%d, and %s once more)", n, stopCustomers+1, stopCustomers, again)
	}
	if q := v.queued(t); len(q) != 0 {
		t.Errorf("queued after the restart: %v", q)
	}
	if got := v.emails(t)[newer]; got != "newer@example.com" {
		t.Errorf("customer %s: email %q after the restart, want the newer state's", newer, got)
	}
}

// A leader deposed before its loop's end writes nothing at the stop (the
// write is fenced as every other): the entries stay queued for the new
// leader.
func TestStopWriteFenced(t *testing.T) {
	v := newStopEnv(t)
	ctx := context.Background()
	if _, err := v.pool.Exec(ctx, `INSERT INTO stripe_sync.leader (epoch, instance, host, pid, since) VALUES (1, 'this', 'h', 1, now())`); err != nil {
		t.Fatal(err)
	}
	v.runUntilInHand(t, v.pool, 1, func([]*fetchJob) {
		if _, err := v.pool.Exec(ctx, `UPDATE stripe_sync.leader SET epoch = 2, instance = 'other'`); err != nil {
			t.Error(err)
		}
	})
	var fromRefetch int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.customers`).Scan(&fromRefetch); err != nil {
		t.Fatal(err)
	}
	// Results that earlier drains wrote, before the takeover, are left
	// out: the last ones, in hand at the stop, must still be queued.
	if q := v.queued(t); fromRefetch+len(q) != stopCustomers || len(q) == 0 {
		t.Errorf("after a deposed leader's stop: %d customers stored, %v queued; want the ones in hand still queued, none stored", fromRefetch, q)
	}
}

// With Postgres unreachable at the stop, the write of the results in hand
// delays the loop's end by stopWriteGrace at most, and loses nothing: the
// entries stay queued and the next start fetches and stores them.
func TestStopPostgresGone(t *testing.T) {
	v := newStopEnv(t)
	ctx := context.Background()
	u, err := url.Parse(v.db)
	if err != nil {
		t.Fatal(err)
	}
	b := pgtest.NewPartition(t, u.Host)
	u.Host = b.Addr().String()
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	// The pool's sockets are hung: free them before closing it.
	t.Cleanup(func() { b.Release(); pool.Close() })
	took := v.runUntilInHand(t, pool, 0, func([]*fetchJob) { b.Cut() })
	if limit := stopWriteGrace + time.Second; took > limit {
		t.Errorf("the loop ended %s after the cancel with Postgres gone, want at most %s", took.Round(time.Millisecond), limit)
	}
	q := v.queued(t)
	if len(q) == 0 {
		t.Fatal("nothing queued after the stop: the results in hand can't have been written with Postgres gone")
	}
	before := v.fetches(t)
	v.restart(t)
	if n := v.fetches(t); n != before+int64(len(q)) {
		t.Errorf("restart made %d customer fetches, want %d (those still queued)", n-before, len(q))
	}
	if emails := v.emails(t); len(emails) != stopCustomers {
		t.Errorf("%d customers stored after the restart, want %d", len(emails), stopCustomers)
	}
	if q := v.queued(t); len(q) != 0 {
		t.Errorf("queued after the restart: %v", q)
	}
}
