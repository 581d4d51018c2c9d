package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// markerKey is the metadata key every write-through create carries, unique
// per attempt: two Stripe objects with one marker are a duplicate create.
const markerKey = "chaos_marker"

// writer is an application writing through the proxy while pgstripe is
// being killed: INSERT (with a unique marker), UPDATE and DELETE of its own
// customers, and a read of each confirmed create right after it.
type writer struct {
	url string
	id  int

	inflight atomic.Int32

	mu        sync.Mutex
	confirmed map[string]string // marker -> id the client was told
	tried     map[string]bool   // every marker sent
	live      []string          // ids created and not deleted
	deleted   map[string]bool   // ids a DELETE was sent for
	stats     writeStats
	lastErr   map[string]string
	codes     map[string]int // SQLSTATE -> errors (connection failures apart)
}

type writeStats struct {
	Inserts, Updates, Deletes int // confirmed
	Failed                    int // statements that got an error (connection or SQL)
	ConnErrors                int // of which: the connection broke (pgstripe or Postgres killed)
	ReadMisses                int // a confirmed create not readable at once through the proxy
	UpdateMisses              int // UPDATE of an own, confirmed, undeleted customer said UPDATE 0
}

func newWriter(url string, id int) *writer {
	return &writer{url: url, id: id, confirmed: map[string]string{}, tried: map[string]bool{},
		deleted: map[string]bool{}, lastErr: map[string]string{}, codes: map[string]int{}}
}

func (w *writer) run(ctx context.Context, gap time.Duration) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for seq := 0; ctx.Err() == nil; seq++ {
		if conn == nil || conn.IsClosed() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := pgx.Connect(cctx, w.url)
			cancel()
			if err != nil {
				sleep(ctx, 200*time.Millisecond)
				continue
			}
			conn = c
		}
		if err := w.step(ctx, conn, seq); err != nil && ctx.Err() == nil {
			w.fail(err)
			if isConnError(err) {
				conn.Close(context.Background())
				conn = nil
			}
		}
		sleep(ctx, gap)
	}
}

func (w *writer) step(ctx context.Context, conn *pgx.Conn, seq int) error {
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	w.mu.Lock()
	var target string
	if len(w.live) > 0 {
		target = w.live[seq%len(w.live)]
	}
	w.mu.Unlock()
	w.inflight.Add(1)
	defer w.inflight.Add(-1)
	switch {
	case target != "" && seq%7 == 3:
		// Whatever the outcome, the customer may be gone in Stripe (a
		// DELETE whose answer was lost): never counted as lost, never
		// updated again.
		w.mu.Lock()
		w.deleted[target] = true
		w.removeLive(target)
		w.mu.Unlock()
		if _, err := conn.Exec(sctx, `DELETE FROM stripe.customers WHERE id = $1`, target); err != nil {
			return err
		}
		w.mu.Lock()
		w.stats.Deletes++
		w.mu.Unlock()
		return nil
	case target != "" && seq%3 == 1:
		tag, err := conn.Exec(sctx, `UPDATE stripe.customers SET name = $1 WHERE id = $2`, fmt.Sprintf("chaos-upd-%d-%d", w.id, seq), target)
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.stats.Updates++
		if tag.RowsAffected() != 1 {
			w.stats.UpdateMisses++
			w.lastErr["update_miss"] = fmt.Sprintf("%s on %s", tag, target)
		}
		w.mu.Unlock()
		return nil
	default:
		// Every fifth create is a three-row INSERT: a kill between its
		// Stripe calls leaves some rows made, the rest never sent.
		rows := 1
		if seq%5 == 0 {
			rows = 3
		}
		markers := make([]string, rows)
		var values []string
		var args []any
		w.mu.Lock()
		for r := range markers {
			markers[r] = fmt.Sprintf("w%d-%d-%d-%d", w.id, seq, r, time.Now().UnixNano())
			w.tried[markers[r]] = true
			values = append(values, fmt.Sprintf("($%d, $%d)", 2*r+1, 2*r+2))
			args = append(args, markers[r]+"@chaos.example", fmt.Sprintf(`{%q: %q}`, markerKey, markers[r]))
		}
		w.mu.Unlock()
		res, err := conn.Query(sctx, `INSERT INTO stripe.customers (email, metadata) VALUES `+strings.Join(values, ", ")+` RETURNING id, metadata->>'`+markerKey+`'`, args...)
		if err != nil {
			return err
		}
		got := map[string]string{}
		for res.Next() {
			var id, m string
			if err := res.Scan(&id, &m); err != nil {
				res.Close()
				return err
			}
			got[m] = id
		}
		res.Close()
		if err := res.Err(); err != nil {
			return err
		}
		if len(got) != rows {
			return fmt.Errorf("INSERT of %d rows returned %d", rows, len(got))
		}
		w.mu.Lock()
		w.stats.Inserts++
		for m, id := range got {
			w.confirmed[m] = id
			w.live = append(w.live, id)
		}
		w.mu.Unlock()
		for _, id := range got {
			var n int
			if err := conn.QueryRow(sctx, `SELECT count(*) FROM stripe.customers WHERE id = $1`, id).Scan(&n); err != nil {
				return err
			}
			if n != 1 {
				w.mu.Lock()
				w.stats.ReadMisses++
				w.mu.Unlock()
			}
		}
		return nil
	}
}

func (w *writer) removeLive(id string) {
	for i, x := range w.live {
		if x == id {
			w.live = append(w.live[:i:i], w.live[i+1:]...)
			return
		}
	}
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Failed++
	key := "conn"
	if isConnError(err) {
		w.stats.ConnErrors++
	} else {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			key = pe.Code
		} else {
			key = "other"
		}
		w.codes[key]++
	}
	w.lastErr[key] = err.Error()
}

// isConnError: the statement failed because the connection did, not
// because the server answered with an error.
func isConnError(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Postgres shutting down or crashing tells the client so.
		switch pe.Code {
		case "57P01", "57P02", "57P03", "08006", "08003", "08000":
			return true
		}
		return false
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
