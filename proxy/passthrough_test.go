package proxy

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/pgtest"
)

// queryAll runs the same workload on a connection and returns a transcript,
// so that direct and proxied connections can be compared.
func pgxWorkload(t *testing.T, url string, mode pgx.QueryExecMode) string {
	t.Helper()
	ctx := ctxT(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var b strings.Builder
	note := func(format string, args ...any) {
		b.WriteString(strings.TrimSpace(strings.ReplaceAll(fmtS(format, args...), "\n", " ")))
		b.WriteByte('\n')
	}
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS items (id int primary key, name text, price numeric, data jsonb, at timestamptz, blob bytea)`)
	note("create: %v", err)
	_, err = conn.Exec(ctx, `TRUNCATE items`)
	note("truncate: %v", err)
	for i := 1; i <= 50; i++ {
		_, err := conn.Exec(ctx, `INSERT INTO items VALUES ($1, $2, $3, $4, '2024-01-02T03:04:05Z', $5)`,
			i, "item "+strings.Repeat("x", i), float64(i)*1.5, map[string]any{"i": i}, []byte{byte(i), 0, 255})
		if err != nil {
			note("insert %d: %v", i, err)
		}
	}
	rows, err := conn.Query(ctx, `SELECT id, name, price::text, data, at, blob FROM items WHERE id > $1 ORDER BY id`, 40)
	if err != nil {
		note("select: %v", err)
	} else {
		for rows.Next() {
			vals, err := rows.Values()
			note("row %v %v", vals, err)
		}
		note("rows err: %v", rows.Err())
	}
	// A failing statement, then the connection keeps working.
	_, err = conn.Exec(ctx, `INSERT INTO items (id) VALUES (1)`)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		note("dup: %s %s", pe.Code, pe.Message)
	} else {
		note("dup: %v", err)
	}
	// Transaction with savepoint and error inside.
	tx, err := conn.Begin(ctx)
	note("begin: %v", err)
	_, err = tx.Exec(ctx, `UPDATE items SET name = 'changed' WHERE id = 1`)
	note("update: %v", err)
	_, err = tx.Exec(ctx, `SELECT 1/0`)
	note("div: %v", err)
	_, err = tx.Exec(ctx, `SELECT 1`)
	note("after error: %v", err)
	note("rollback: %v", tx.Rollback(ctx))
	var name string
	err = conn.QueryRow(ctx, `SELECT name FROM items WHERE id = 1`).Scan(&name)
	note("name after rollback: %s %v", name, err)
	// Batch (pipelined).
	batch := &pgx.Batch{}
	for i := 0; i < 20; i++ {
		batch.Queue(`SELECT count(*) FROM items WHERE id <= $1`, i)
	}
	batch.Queue(`SELECT 1/0`)
	batch.Queue(`SELECT 2`)
	br := conn.SendBatch(ctx, batch)
	for i := 0; i < 22; i++ {
		var n int64
		err := br.QueryRow().Scan(&n)
		note("batch %d: %d %v", i, n, err)
	}
	note("batch close: %v", br.Close())
	// Large row.
	big := strings.Repeat("abcdefghij", 300000)
	var got string
	err = conn.QueryRow(ctx, `SELECT $1::text || 'z'`, big).Scan(&got)
	note("big: %d %v %v", len(got), got == big+"z", err)
	// Notices, parameter status.
	_, err = conn.Exec(ctx, `SET application_name = 'through'`)
	note("set: %v %s", err, conn.PgConn().ParameterStatus("application_name"))
	var tz string
	err = conn.QueryRow(ctx, `SHOW TimeZone`).Scan(&tz)
	note("tz: %s %v", tz, err)
	// Multi-statement simple query.
	mrr := conn.PgConn().Exec(ctx, `SELECT 1; SELECT 'a', 'b'; SELECT * FROM items WHERE false`)
	res, err := mrr.ReadAll()
	for _, r := range res {
		note("multi: %v %s %v", r.Rows, r.CommandTag, r.Err)
	}
	note("multi err: %v", err)
	_, err = conn.Exec(ctx, ``)
	note("empty: %v", err)
	return b.String()
}

func fmtS(format string, args ...any) string { return fmtSprintf(format, args...) }

func TestPgxThroughProxyMatchesDirect(t *testing.T) {
	tp := startProxy(t, Config{})
	url := pgtest.NewDB(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			direct := pgxWorkload(t, url, mode)
			proxied := pgxWorkload(t, tp.via(t, url), mode)
			if direct != proxied {
				t.Errorf("through the proxy:\n%s\ndirect:\n%s", proxied, direct)
			}
			if testing.Verbose() && mode == pgx.QueryExecModeCacheStatement {
				t.Log(direct)
			}
			if !strings.Contains(direct, "batch 20: 0 ERROR: division by zero") || !strings.Contains(direct, "big: 3000001 true <nil>") {
				t.Errorf("workload did not exercise what it should:\n%s", direct)
			}
		})
	}
	tp.waitSessions(t, 0)
}
