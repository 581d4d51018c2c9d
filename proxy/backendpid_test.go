package proxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgstripe/pgstripe/pgtest"
)

// TestBackendPIDIsUpstream: the process id a client gets in
// BackendKeyData is its upstream backend's, so what clients do with it works
// as on a direct connection. knex's query timeout (`.timeout(ms, {cancel:
// true})`) cancels with `SELECT pg_cancel_backend(<processID>)` on another
// pooled connection; with a made-up id that cancelled nothing, the query
// ran on and held the connection. LISTEN clients compare a notification's
// sender with their own process id to skip their own notifications.
func TestBackendPIDIsUpstream(t *testing.T) {
	tp := startProxy(t, Config{})
	url := tp.via(t, pgtest.NewDB(t))
	ctx := ctxT(t)
	conn := pgtest.Connect(t, url)
	other := pgtest.Connect(t, url)

	pid := conn.PgConn().PID()
	var backend uint32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		t.Fatal(err)
	}
	if pid != backend {
		t.Fatalf("BackendKeyData process id %d, pg_backend_pid() %d", pid, backend)
	}

	// LISTEN/NOTIFY on the same session: the sender is this client.
	if _, err := conn.Exec(ctx, `LISTEN backend_pid`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `NOTIFY backend_pid, 'x'`); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := conn.WaitForNotification(wctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if n.PID != pid {
		t.Errorf("notification from pid %d, own process id %d", n.PID, pid)
	}

	// knex's cancel: pg_cancel_backend(processID) from another connection.
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), `SELECT pg_sleep(20)`)
		done <- err
	}()
	waitSleeping(t, pid)
	var ok bool
	if err := other.QueryRow(ctx, `SELECT pg_cancel_backend($1)`, int32(pid)).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Errorf("pg_cancel_backend(%d) found no backend", pid)
	}
	select {
	case err := <-done:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("query after pg_cancel_backend: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pg_cancel_backend(processID) did not cancel the query")
	}

	// The session stays usable, and its CancelRequest still reaches it.
	if _, err := conn.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := conn.Exec(context.Background(), `SELECT pg_sleep(20)`)
		done <- err
	}()
	waitSleeping(t, pid)
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("query after CancelRequest: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CancelRequest did not cancel the query")
	}
}
