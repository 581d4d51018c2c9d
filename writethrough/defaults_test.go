package writethrough

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The columns Stripe and sync fill (id, _raw, _synced_at, _as_of) have a
// default that raises when Postgres evaluates it (schema.SetByStripeFunc),
// so that model generators let them out of creates. Through the proxy that
// default must never be evaluated: not by the Parse, Bind and Describe of
// the client's statement that go upstream (Bind plans it), not by
// write-through's own queries on the client's connection. INSERTs that
// leave the columns out, name them with DEFAULT (as Sequelize does), or use
// DEFAULT VALUES reach Stripe; what Stripe refuses is Stripe's error.
func TestSetByStripeDefaultsThroughProxy(t *testing.T) {
	e := setup(t)
	// A role with no USAGE on stripe_sync, as an application's would be.
	role := e.asRole(`GRANT SELECT, INSERT, UPDATE, DELETE ON stripe.prices, stripe.disputes TO $role`)
	pu, err := url.Parse(e.proxied())
	if err != nil {
		t.Fatal(err)
	}
	pu.User = url.User(role)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := e.client(pu.String(), m.mode)
			email := m.name + "@example.com"
			one := func(sql string, args ...any) string {
				t.Helper()
				var id string
				if err := c.QueryRow(e.ctx, sql, args...).Scan(&id); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
				if !strings.HasPrefix(id, "cus_") {
					t.Fatalf("%s: id %q", sql, id)
				}
				return id
			}
			one(`INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id`, email)
			// Sequelize names every attribute it has, DEFAULT for those
			// without a value, and returns them all.
			var id, gotEmail string
			var raw map[string]any
			var syncedAt, asOf time.Time
			if err := c.QueryRow(e.ctx, `INSERT INTO "stripe"."customers" ("id","email","_raw","_synced_at","_as_of","_params") VALUES (DEFAULT,$1,DEFAULT,DEFAULT,DEFAULT,DEFAULT) RETURNING "id","email","_raw","_synced_at","_as_of"`, email).
				Scan(&id, &gotEmail, &raw, &syncedAt, &asOf); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(id, "cus_") || gotEmail != email || raw["id"] != id || syncedAt.IsZero() || asOf.IsZero() {
				t.Errorf("returning %q %q %v %v %v", id, gotEmail, raw, syncedAt, asOf)
			}
			if got := e.local(`SELECT _raw->>'email' FROM stripe.customers WHERE id = $1`, id); got != email {
				t.Errorf("_raw email %q", got)
			}
			one(`INSERT INTO stripe.customers DEFAULT VALUES RETURNING id`)
			tag, err := c.Exec(e.ctx, `INSERT INTO stripe.customers (id, email, _as_of) VALUES (DEFAULT, $1, DEFAULT), (DEFAULT, $2, DEFAULT)`, email, email)
			if err != nil || tag.String() != "INSERT 0 2" {
				t.Errorf("two rows: %v %v", tag, err)
			}
			// In a transaction (ORMs wrap creates in one), and an UPDATE
			// setting the columns to DEFAULT, which leaves them as they are.
			tx, err := c.Begin(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			one(`INSERT INTO stripe.customers (id, email) VALUES (DEFAULT, $1) RETURNING id`, email)
			if tag, err := tx.Exec(e.ctx, `UPDATE stripe.customers SET name = $1, _raw = DEFAULT, _synced_at = DEFAULT, _as_of = DEFAULT WHERE id = $2`, "N", id); err != nil || tag.String() != "UPDATE 1" {
				t.Errorf("update with DEFAULT: %v %v", tag, err)
			}
			if err := tx.Commit(e.ctx); err != nil {
				t.Fatal(err)
			}
			if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, id); got != "N" {
				t.Errorf("name %q", got)
			}
			// A table whose create needs values: refused for the value
			// Stripe requires (before any call), not with the default's
			// message.
			before := e.calls()
			_, err = c.Exec(e.ctx, `INSERT INTO stripe.prices DEFAULT VALUES`)
			if sqlstate(err) != "23502" || !strings.Contains(err.Error(), "Stripe requires currency") || e.calls() != before {
				t.Errorf("prices DEFAULT VALUES: %v (calls %d → %d)", err, before, e.calls())
			}
			if m.mode != pgx.QueryExecModeSimpleProtocol {
				return
			}
			// A table Stripe can't create: write-through's own refusal.
			_, err = c.Exec(e.ctx, `INSERT INTO stripe.disputes DEFAULT VALUES`)
			if sqlstate(err) != "0A000" || strings.Contains(err.Error(), "connect to the proxy port") {
				t.Errorf("disputes DEFAULT VALUES: %v", err)
			}
		})
	}
}
