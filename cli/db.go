package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/schema"
)

func runMigrate(ctx context.Context, env *Env, args []string) error {
	conn, err := databaseCommand(ctx, env, "migrate", args)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := schema.Migrate(ctx, conn); err != nil {
		return err // "migrate: …" already
	}
	fmt.Fprintf(env.Stdout, "schemas stripe and stripe_sync are up to date (%d tables)\n", len(schema.Tables()))
	return nil
}

// databaseCommand parses the flags of a command that needs only the
// database and connects to it.
func databaseCommand(ctx context.Context, env *Env, name string, args []string) (*pgx.Conn, error) {
	fs := flagSet(env, name)
	loader := config.Flags(fs, config.NeedDatabase)
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	cfg, err := loader.Load()
	if err != nil {
		return nil, err
	}
	return connect(ctx, cfg.DatabaseURL)
}

// connect opens a connection; its errors never carry the password.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, config.BadDatabaseURL(err)
	}
	config.OwnSession(&cfg.Config)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
	}
	return conn, nil
}

func runStatus(ctx context.Context, env *Env, args []string) error {
	conn, err := databaseCommand(ctx, env, "status", args)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	errs, err := printStatus(ctx, conn, env.Stdout)
	if err != nil {
		return err
	}
	if errs > 0 {
		return exitCode(1)
	}
	return nil
}

// printStatus writes stripe_sync.status as a table and returns how many
// objects are in phase error.
func printStatus(ctx context.Context, conn *pgx.Conn, w io.Writer) (int, error) {
	rows, err := conn.Query(ctx, `
		SELECT object, phase, rows, backfill_started_at, backfill_completed_at,
		       last_event_at, lag_seconds, last_error
		FROM stripe_sync.status ORDER BY object`)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
			return 0, errors.New("stripe_sync.status does not exist: run 'pgstripe migrate' (or serve) first")
		}
		return 0, err
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "OBJECT\tPHASE\tROWS\tBACKFILL\tLAST EVENT\tLAG\tLAST ERROR")
	errs := 0
	// Errors cut to fit the table, given whole below it: what to do (grant
	// a key a permission, say) often comes after the first 80 characters.
	type longError struct{ object, text string }
	var long []longError
	for rows.Next() {
		var object, phase string
		var n *int64
		var started, completed, lastEvent *time.Time
		var lag *float64
		var lastErr *string
		if err := rows.Scan(&object, &phase, &n, &started, &completed, &lastEvent, &lag, &lastErr); err != nil {
			return 0, err
		}
		if phase == "error" {
			errs++
		}
		backfill := "-"
		switch {
		case completed != nil:
			backfill = "done " + completed.Local().Format("2006-01-02 15:04:05")
		case started != nil:
			backfill = "since " + started.Local().Format("15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", object, phase, orDash(n, func(v int64) string { return fmt.Sprint(v) }),
			backfill, orDash(lastEvent, func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }),
			orDash(lag, func(v float64) string { return fmt.Sprintf("%.1fs", v) }),
			orDash(lastErr, func(s string) string { return truncate(s, statusErrorWidth) }))
		if lastErr != nil && truncate(*lastErr, statusErrorWidth) != oneLine(*lastErr) {
			long = append(long, longError{object, oneLine(*lastErr)})
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	tw.Flush()
	if len(long) > 0 {
		fmt.Fprintln(w, "\nlast errors in full:")
		for _, e := range long {
			fmt.Fprintf(w, "  %s: %s\n", e.object, e.text)
		}
	}
	cur, ok, err := leader.Lookup(ctx, conn)
	switch {
	case err != nil:
		return 0, err
	case !ok:
		fmt.Fprintln(w, "\nsync leader: none elected yet")
	case !cur.Alive:
		fmt.Fprintf(w, "\nsync leader: none alive (last: %s on %s, epoch %d)\n", cur.Instance, cur.Host, cur.Epoch)
	default:
		fmt.Fprintf(w, "\nsync leader: %s on %s (Postgres backend pid %d), epoch %d, since %s\n", cur.Instance, cur.Host, cur.PID, cur.Epoch, cur.Since.Local().Format("2006-01-02 15:04:05"))
	}
	if errs > 0 {
		fmt.Fprintf(w, "%d object type(s) in phase error\n", errs)
	}
	return errs, nil
}

func orDash[T any](v *T, f func(T) string) string {
	if v == nil {
		return "-"
	}
	return f(*v)
}

// statusErrorWidth is how many characters of last_error the status
// table shows.
const statusErrorWidth = 80

// truncate is oneLine(s) cut to at most n characters (runes, so that a
// multi-byte character is never split), the last one then "…".
func truncate(s string, n int) string {
	s = oneLine(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
