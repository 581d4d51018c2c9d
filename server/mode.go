package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/schema"
)

// checkMode keeps a database to one Stripe mode. Test-mode and live-mode
// objects are different accounts' worth of data: a live key on a database
// synced in test mode would mix both in schema stripe and follow events
// from a cursor of the other mode. The first run records the mode
// (stripe_sync.account), or the mode of rows an older pgstripe stored; a
// key of the other mode is then bad configuration.
func checkMode(ctx context.Context, pool *pgxpool.Pool, live bool) error {
	var recorded bool
	err := pool.QueryRow(ctx, `SELECT livemode FROM stripe_sync.account`).Scan(&recorded)
	if errors.Is(err, pgx.ErrNoRows) {
		recorded, err = storedMode(ctx, pool, live)
		if err == nil {
			_, err = pool.Exec(ctx, `INSERT INTO stripe_sync.account (livemode) VALUES ($1) ON CONFLICT (singleton) DO NOTHING`, recorded)
		}
		if err == nil {
			err = pool.QueryRow(ctx, `SELECT livemode FROM stripe_sync.account`).Scan(&recorded)
		}
	}
	if err != nil {
		return fmt.Errorf("read the Stripe mode of the database: %w", err)
	}
	if recorded == live {
		return nil
	}
	return fmt.Errorf("STRIPE_API_KEY is a %s key, but this database holds %s data: use one database per mode (or drop schemas stripe and stripe_sync to start this one over)", modeName(live), modeName(recorded))
}

// storedMode is the mode of the rows already in schema stripe (a database
// synced before the mode was recorded), or live when there are none.
func storedMode(ctx context.Context, pool *pgxpool.Pool, live bool) (bool, error) {
	for _, t := range schema.Tables() {
		if _, ok := t.Column("livemode"); !ok || t.Virtual {
			continue
		}
		var m bool
		err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT livemode FROM %s WHERE livemode IS NOT NULL LIMIT 1`, t.QualifiedName())).Scan(&m)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		return m, err
	}
	return live, nil
}

func modeName(live bool) string {
	if live {
		return "live-mode"
	}
	return "test-mode"
}
