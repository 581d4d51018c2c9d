package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/metrics"
	"github.com/pgstripe/pgstripe/schema"
)

// lockKey is the leader's advisory lock key: the bytes of "pgstrldr" (distinct
// from schema's migration lock, which Migrate takes while a leader holds this).
const lockKey int64 = 0x70677374726c6472

// ErrDeposed means another instance has been elected since this one.
var ErrDeposed = errors.New("this pgstripe instance is no longer the sync leader")

func init() {
	schema.Register(schema.Migration{Version: 400, Name: "leader: elected sync leader and its epoch", SQL: DDL})
}

// DDL creates the leader table; it is part of the stripe_sync migrations.
const DDL = `
CREATE TABLE IF NOT EXISTS stripe_sync.leader (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	epoch     bigint NOT NULL,
	instance  text NOT NULL,
	host      text NOT NULL,
	pid       integer NOT NULL,
	since     timestamptz NOT NULL
)`

// Info identifies an instance.
type Info struct {
	Instance string // unique per process, e.g. host-pid-random
	Host     string
}

// DefaultInfo identifies this process.
func DefaultInfo() Info {
	host, _ := os.Hostname()
	return Info{Instance: fmt.Sprintf("%s-%d-%d", host, os.Getpid(), time.Now().UnixNano()%100000), Host: host}
}

// Elector campaigns for leadership.
type Elector struct {
	ConnConfig *pgx.ConnConfig
	Info       Info
	Logger     *slog.Logger
	// Poll is how often a follower retries the lock and a leader checks its
	// connection; default 1s.
	Poll time.Duration
}

// Run campaigns until ctx ends. Each time this instance is elected it calls
// lead with a context that is canceled when leadership is lost, and the new
// epoch. When lead returns early with an error, Run resigns, waits and
// campaigns again: Poll after a term that lasted, then twice as long after
// each term that failed quickly, up to MaxFailBackoff (a wrong Stripe key
// must not mean a new term, a Stripe call and two log lines a second).
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, epoch int64) error) error {
	poll := e.Poll
	if poll == 0 {
		poll = time.Second
	}
	log := e.Logger
	if log == nil {
		log = slog.Default()
	}
	backoff := poll
	for {
		start := time.Now()
		err := e.term(ctx, poll, log, lead)
		if ctx.Err() != nil {
			return nil
		}
		wait := poll
		var le *leadError
		switch {
		case errors.As(err, &le):
			if time.Since(start) >= MaxFailBackoff {
				backoff = poll
			}
			wait = backoff
			backoff = min(2*backoff, MaxFailBackoff)
			log.Warn("sync failed; resigned, campaigning again", "err", config.ErrorText(le.err), "retry_in", wait)
		case err != nil:
			backoff = poll
			log.Warn("leader election", "err", config.ErrorText(err))
		default:
			backoff = poll
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// MaxFailBackoff bounds the wait after terms whose lead failed quickly.
const MaxFailBackoff = time.Minute

// leadError is the error lead returned, as distinct from the election's own.
type leadError struct{ err error }

func (e *leadError) Error() string { return e.err.Error() }
func (e *leadError) Unwrap() error { return e.err }

// term connects, waits to be elected, leads until the connection or ctx
// fails.
func (e *Elector) term(ctx context.Context, poll time.Duration, log *slog.Logger, lead func(ctx context.Context, epoch int64) error) error {
	cfg := e.ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "pgstripe leader election"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	// If this process loses the network (host gone, partition: no FIN, no
	// RST), its backend would keep the lock until TCP keepalive gives up,
	// hours by default, and no one could take over. An elector talks to it
	// every poll, so a session idle for much longer than that is dead:
	// Postgres ends it and releases the lock. (Postgres < 14 lacks the
	// setting; ignore the error there.)
	idle := max(10*poll, 5*time.Second)
	if _, err := conn.Exec(ctx, fmt.Sprintf("SET idle_session_timeout = %d", idle.Milliseconds())); err != nil && ctx.Err() != nil {
		return nil
	}
	for {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&got); err != nil {
			return err
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
	var epoch int64
	err = conn.QueryRow(ctx, `
		INSERT INTO stripe_sync.leader (epoch, instance, host, pid, since)
		VALUES (1, $1, $2, pg_backend_pid(), now())
		ON CONFLICT (singleton) DO UPDATE SET epoch = stripe_sync.leader.epoch + 1,
			instance = excluded.instance, host = excluded.host, pid = excluded.pid, since = excluded.since
		RETURNING epoch`, e.Info.Instance, e.Info.Host).Scan(&epoch)
	if err != nil {
		return fmt.Errorf("record leadership: %w", err)
	}
	log.Info("elected sync leader", "instance", e.Info.Instance, "epoch", epoch)
	metrics.SyncLeader.Set(1)
	defer metrics.SyncLeader.Set(0)

	leadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- lead(leadCtx, epoch) }()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return &leadError{err}
			}
			return nil
		case <-tick.C:
			pctx, pcancel := context.WithTimeout(ctx, 2*poll+time.Second)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && ctx.Err() == nil {
				log.Warn("lost the leader connection; stepping down", "err", config.ErrorText(err))
				cancel()
				<-done
				return nil
			}
		case <-ctx.Done():
			<-done
			return nil
		}
	}
}

// Fence must be the first statement of every transaction that applies sync
// results: it fails with ErrDeposed unless epoch is still current, and holds
// a share lock on the leader row until the transaction ends.
func Fence(ctx context.Context, tx pgx.Tx, epoch int64) error {
	var current int64
	err := tx.QueryRow(ctx, "SELECT epoch FROM stripe_sync.leader FOR SHARE").Scan(&current)
	if err != nil {
		return fmt.Errorf("leader fence: %w", err)
	}
	if current != epoch {
		return ErrDeposed
	}
	return nil
}

// Current describes the elected leader, for status.
type Current struct {
	Instance, Host string
	PID            int
	Epoch          int64
	Since          time.Time
	Alive          bool // its lock connection is still open
}

// Lookup reads the current leader; ok is false when none was ever elected.
func Lookup(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (c Current, ok bool, err error) {
	err = q.QueryRow(ctx, `
		SELECT l.instance, l.host, l.pid, l.epoch, l.since,
			EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.pid)
		FROM stripe_sync.leader l`).Scan(&c.Instance, &c.Host, &c.PID, &c.Epoch, &c.Since, &c.Alive)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return c, false, nil
	}
	return c, err == nil, err
}
