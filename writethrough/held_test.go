package writethrough

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgstripe/pgstripe/heaptest"
)

// TestHeldBounded: what a write's own queries bring into the
// proxy's memory (the WITH query RETURNING reads, the values, a DELETE's
// RETURNING, an INSERT's RETURNING) is bounded by Config.MaxHeld. Past
// it the statement is refused with 54000, naming the limit, before any
// Stripe call, nothing changed; the proxy's heap stays near the limit
// (the values here are 6 to 12 times it; an endless WITH query would
// have taken all memory). RETURNING of an INSERT runs after the call:
// its error says that the write reached Stripe and is applied. Under the
// limit, the same statements work as they did.
func TestHeldBounded(t *testing.T) {
	const limit = 1 << 20
	e := setup(t, func(c *Config) { c.MaxHeld = limit })
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	keep := e.newCustomers("keep@b.co")[0]
	for _, tc := range []struct {
		name, sql string
		args      []any
		message   string // the refusal's, in part
		detail    string // the refusal's DETAIL, in part
		calls     int64  // Stripe calls made
	}{
		{name: "WITH query RETURNING reads, large",
			sql:     `WITH w AS (SELECT repeat('x', 100) AS v FROM generate_series(1, 60000)) INSERT INTO stripe.customers (email) VALUES ('with@b.co') RETURNING (SELECT count(*) FROM w)`,
			message: `WITH query "w" takes more than 1 MB`, detail: "Stripe was not called"},
		{name: "WITH query RETURNING reads, endless",
			sql:     `WITH w AS (SELECT repeat('x', 100) AS v, generate_series(1, 1000000000) AS g) INSERT INTO stripe.customers (email) VALUES ('with@b.co') RETURNING (SELECT count(*) FROM w)`,
			message: `WITH query "w" takes more than 1 MB`, detail: "Stripe was not called"},
		{name: "INSERT value",
			sql:     `INSERT INTO stripe.customers (email, description) VALUES ('big@b.co', repeat('x', 6000000))`,
			message: "INSERT on stripe.customers: its values take more than 1 MB", detail: "Stripe was not called"},
		{name: "UPDATE value",
			sql: `UPDATE stripe.customers SET description = repeat('x', 6000000) WHERE id = $1`, args: []any{keep},
			message: "UPDATE on stripe.customers: its values take more than 1 MB", detail: "Stripe was not called"},
		{name: "DELETE RETURNING",
			sql: `DELETE FROM stripe.customers WHERE id = $1 RETURNING repeat('x', 6000000)`, args: []any{keep},
			message: "DELETE on stripe.customers: its rows and RETURNING take more than 1 MB", detail: "Stripe was not called"},
		{name: "INSERT RETURNING",
			sql:     `INSERT INTO stripe.customers (email) VALUES ('ret@b.co') RETURNING id, repeat('y', 6000000)`,
			message: "RETURNING of this INSERT on stripe.customers takes more than 1 MB",
			detail:  "only RETURNING failed: the insert reached Stripe and is applied locally in stripe.customers for rows 1", calls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.calls()
			var err error
			start := time.Now()
			grew := heaptest.PeakGrowth(func() { _, err = c.Exec(e.ctx, tc.sql, tc.args...) })
			t.Logf("heap rose %d MB in %v: %v", grew>>20, time.Since(start).Round(time.Millisecond), err)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "54000" || !strings.Contains(pe.Message, tc.message) || !strings.Contains(pe.Detail, tc.detail) || pe.Hint == "" {
				t.Fatalf("got %v, want 54000 %q with DETAIL %q and a hint", err, tc.message, tc.detail)
			}
			if n := e.calls() - before; n != tc.calls {
				t.Errorf("%d Stripe calls, want %d", n, tc.calls)
			}
			if grew > 16<<20 {
				t.Errorf("heap rose %d MB for a limit of 1 MB", grew>>20)
			}
		})
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email IN ('with@b.co', 'big@b.co')`); got != "0" {
		t.Errorf("%s refused rows applied locally", got)
	}
	if got := e.local(`SELECT coalesce(description, '') FROM stripe.customers WHERE id = $1`, keep); got != "" || e.stripeObj("customers", keep) == nil {
		t.Errorf("the refused UPDATE or DELETE changed %s: description %.20q, in Stripe: %v", keep, got, e.stripeObj("customers", keep) != nil)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email = 'ret@b.co'`); got != "1" {
		t.Errorf("the INSERT whose RETURNING failed: %s local rows, want 1", got)
	}

	// Under the limit: as before (0.3 MB of WITH rows, 0.5 MB of RETURNING).
	var n int
	var id string
	if err := c.QueryRow(e.ctx, `WITH w AS (SELECT repeat('x', 100) AS v FROM generate_series(1, 2000)) INSERT INTO stripe.customers (email) VALUES ('small@b.co') RETURNING id, (SELECT count(*) FROM w)`).Scan(&id, &n); err != nil || n != 2000 {
		t.Fatalf("under the limit: %d, %v", n, err)
	}
	var desc, pad string
	if err := c.QueryRow(e.ctx, `UPDATE stripe.customers SET description = repeat('d', 5000) WHERE id = $1 RETURNING description, repeat('r', 500000)`, id).Scan(&desc, &pad); err != nil || len(desc) != 5000 || len(pad) != 500000 {
		t.Fatalf("under the limit: %d, %d, %v", len(desc), len(pad), err)
	}
	if got, _ := e.stripeObj("customers", id)["description"].(string); got != desc {
		t.Errorf("description of %d bytes in Stripe", len(got))
	}
}

// TestHeldReturningRepeatableRead: RETURNING that fits in
// Config.MaxHeld under READ COMMITTED fits under REPEATABLE READ too. There
// RETURNING runs twice (over the client's snapshot, then over the applied
// rows), and both runs were counted against one budget, so a RETURNING of
// 0.6 of the limit failed with 54000 after the write reached Stripe.
func TestHeldReturningRepeatableRead(t *testing.T) {
	const limit = 1 << 20
	e := setup(t, func(c *Config) { c.MaxHeld = limit })
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	id := e.newCustomers("rr-held@b.co")[0]
	const sql = `UPDATE stripe.customers SET description = $2 WHERE id = $1 RETURNING description, repeat('r', 600000)`
	var desc, pad string
	if err := c.QueryRow(e.ctx, sql, id, "rc").Scan(&desc, &pad); err != nil || desc != "rc" || len(pad) != 600000 {
		t.Fatalf("READ COMMITTED: %q, %d, %v", desc, len(pad), err)
	}
	if _, err := c.Exec(e.ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ`); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(e.ctx, sql, id, "rr").Scan(&desc, &pad); err != nil || desc != "rr" || len(pad) != 600000 {
		t.Fatalf("REPEATABLE READ: %q, %d, %v", desc, len(pad), err)
	}
	if _, err := c.Exec(e.ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
}

// TestStoredCopiesGivenBack: the stored copy an UPDATE's
// _params metadata is counted with (Statement.Objects) counts against
// Config.MaxHeld only until Build is done with it: RETURNING, which runs
// after the calls, has that room again. Here the copy (24 KB) and
// RETURNING (48 KB) together pass the 64 KB bound, RETURNING alone
// doesn't. Before, the copy's count was kept, and the RETURNING failed
// with 54000 after the update reached Stripe.
func TestStoredCopiesGivenBack(t *testing.T) {
	const limit = 64 << 10
	e := setup(t, func(c *Config) { c.MaxHeld = limit })
	var kv []string
	for i := 0; i < 45; i++ {
		kv = append(kv, fmt.Sprintf(`"k%d": "%s"`, i, strings.Repeat("m", 500)))
	}
	id := e.one(`INSERT INTO stripe.customers (email, metadata) VALUES ('held@b.co', '{` + strings.Join(kv, ", ") + `}') RETURNING id`)
	if n, _ := strconv.Atoi(e.local(`SELECT length(_raw::text)::text FROM stripe.customers WHERE id = $1`, id)); n < 23000 || n > 26000 {
		t.Fatalf("stored copy of %d bytes, want some 24 KB", n)
	}
	before := e.calls()
	r := e.run(`UPDATE stripe.customers SET _params = '{"metadata": {"k1": "v"}}' WHERE id = $1 RETURNING id, repeat('r', 48000)`, id)
	if r.err != nil {
		t.Fatalf("RETURNING of 48 KB after a stored copy of 24 KB, bound 64 KB: %s %s (%s)", r.err.Code, r.err.Message, r.err.Detail)
	}
	if r.tag != "UPDATE 1" || len(r.rows) != 1 || r.rows[0][0] != id || len(r.rows[0][1]) != 48000 {
		t.Errorf("tag %q, %d rows", r.tag, len(r.rows))
	}
	if n := e.calls() - before; n != 1 {
		t.Errorf("%d Stripe calls, want 1", n)
	}
	if md, _ := e.stripeObj("customers", id)["metadata"].(map[string]any); len(md) != 45 || md["k1"] != "v" {
		t.Errorf("Stripe's metadata: %d keys, k1 %v", len(md), md["k1"])
	}
}
