package store

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/schema"
)

// Retryable reports whether err ended a transaction that may simply run
// again, whole: a serialization failure (40001), a deadlock (40P01: the
// other transactions of the cycle go on, so the next attempt meets none
// of it), or a lock wait cut short by a lock_timeout the role or database
// sets (55P03). pgstripe's writers lock rows in key order, but users'
// transactions (SELECT … FOR UPDATE, an UPDATE of several rows, LOCK
// TABLE) lock in any order they like.
func Retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "40001", "40P01", "55P03":
		return true
	}
	return false
}

// Attempts and backoff of Retry: 5 to 9 s of backoff in all, so a lock
// conflict that outlasts it (a user's transaction holding rows for
// minutes) still surfaces as an error.
var (
	retryAttempts = 10
	retryBase     = 50 * time.Millisecond
	retryMax      = 2 * time.Second
)

// Retry runs run, a whole transaction (begin to commit), and runs it again
// while it fails with a Retryable error, after a jittered exponential
// backoff (transactions that just deadlocked would otherwise meet again
// at once). run must be repeatable: a rolled-back attempt may have
// changed nothing outside the database, or only what the next attempt
// overwrites. Retries are logged at debug level, from the third attempt
// at warn level (something keeps conflicting); the error is returned
// after the last attempt, or when ctx ends.
func Retry(ctx context.Context, log *slog.Logger, what string, run func() error) error {
	wait := retryBase
	for attempt := 1; ; attempt++ {
		err := run()
		if err == nil || !Retryable(err) || attempt >= retryAttempts || ctx.Err() != nil {
			return err
		}
		d := wait/2 + rand.N(wait/2+1)
		if log != nil {
			level := slog.LevelDebug
			if attempt >= 3 {
				level = slog.LevelWarn
			}
			log.Log(ctx, level, "transaction conflicted with another; running it again", "tx", what, "attempt", attempt, "in", d, "err", err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, retryMax)
	}
}

// LockOrder sorts table names into the order in which a transaction that
// upserts several tables must write them, the order Upsert itself locks
// in: a parent's rows before its nested lists' (subscriptions, then
// subscription_items), and prices after everything, since an upsert of a
// subscription, an invoice or an invoice item ends with the prices its
// objects embed. (An insert that finds the price row being updated by
// another transaction waits for it, so prices-then-subscriptions in one
// transaction and subscriptions-then-prices in another deadlock.) Other
// tables go in name order.
func LockOrder(tables []string) { slices.SortFunc(tables, LockCompare) }

// LockCompare orders two table names as LockOrder does.
func LockCompare(a, b string) int {
	rank := func(name string) int {
		if name == "prices" {
			return 2
		}
		if t, ok := schema.Lookup(name); ok && t.Parent != nil {
			return 1
		}
		return 0
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra - rb
	}
	return strings.Compare(a, b)
}
