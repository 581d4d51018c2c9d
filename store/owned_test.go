package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/store"
)

// A customer's deletion removes and tombstones its payment methods and tax
// ids (store.Owned), and one of them written after the deletion (an event
// listed late, or a later change Stripe still sends) is not stored while
// the customer's tombstone stands; those of other customers are left alone.
func TestCustomerDeletionTakesOwned(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	pm := func(id, cus string) store.Object {
		return store.Object{Raw: json.RawMessage(fmt.Sprintf(`{"id": %q, "object": "payment_method", "type": "card", "created": 1700000000, "customer": %q}`, id, cus)), AsOf: t0}
	}
	txi := func(id, cus string) store.Object {
		return store.Object{Raw: json.RawMessage(fmt.Sprintf(`{"id": %q, "object": "tax_id", "type": "eu_vat", "value": "DE1", "created": 1700000000, "customer": %q}`, id, cus)), AsOf: t0}
	}
	upsert(t, conn, "customers", store.Object{Raw: customer("cus_a", ""), AsOf: t0}, store.Object{Raw: customer("cus_b", ""), AsOf: t0})
	upsert(t, conn, "payment_methods", pm("pm_a", "cus_a"), pm("pm_b", "cus_b"))
	upsert(t, conn, "tax_ids", txi("txi_a", "cus_a"), txi("txi_b", "cus_b"))
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		return store.Delete(ctx, tx, "customers", "cus_a", t0.Add(time.Second))
	}); err != nil {
		t.Fatal(err)
	}
	ids := func(table string) []string {
		var out []string
		if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM stripe.`+table).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := ids("payment_methods"); !slices.Equal(got, []string{"pm_b"}) {
		t.Errorf("payment methods after cus_a's deletion: %v", got)
	}
	if got := ids("tax_ids"); !slices.Equal(got, []string{"txi_b"}) {
		t.Errorf("tax ids after cus_a's deletion: %v", got)
	}
	// The tax id is deleted with its customer; the payment method is not,
	// and can still be detached.
	var tombstoned []string
	conn.QueryRow(ctx, `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM stripe_sync.tombstones WHERE object <> 'customers'`).Scan(&tombstoned)
	if !slices.Equal(tombstoned, []string{"txi_a"}) {
		t.Errorf("tombstoned: %v, want the tax id only", tombstoned)
	}
	// Written after the deletion: a payment method attached, and a tax id
	// added, just before it, whose events are applied late.
	later := func(o store.Object) store.Object { o.AsOf = t0.Add(time.Hour); return o }
	res := upsert(t, conn, "payment_methods", later(pm("pm_c", "cus_a")), later(pm("pm_a", "cus_a")), later(pm("pm_d", "cus_b")))
	if !slices.Equal(res.Tombstoned, []string{"pm_c", "pm_a"}) || !slices.Equal(res.Applied, []string{"pm_d"}) {
		t.Errorf("late payment methods: %+v", res)
	}
	res = upsert(t, conn, "tax_ids", later(txi("txi_c", "cus_a")))
	if !slices.Equal(res.Tombstoned, []string{"txi_c"}) {
		t.Errorf("late tax id: %+v", res)
	}
	if got := ids("payment_methods"); !slices.Equal(got, []string{"pm_b", "pm_d"}) {
		t.Errorf("payment methods after late events: %v", got)
	}
	// Detached (before or after the deletion): on no customer's list, but
	// stored as a detached payment method is.
	detached := store.Object{Raw: json.RawMessage(`{"id": "pm_a", "object": "payment_method", "type": "card", "created": 1700000000, "customer": null}`), AsOf: t0.Add(2 * time.Hour)}
	if res := upsert(t, conn, "payment_methods", detached); !slices.Equal(res.Applied, []string{"pm_a"}) {
		t.Errorf("detached payment method of the deleted customer: %+v", res)
	}
	if got := ids("tax_ids"); !slices.Equal(got, []string{"txi_b"}) {
		t.Errorf("tax ids after late events: %v", got)
	}
}

// A customer's deletion takes its upcoming invoice along whichever path
// stores it (a re-fetch answering "deleted", a backfill's sweep, a
// write-through), not only a customer.deleted event's apply; another
// customer's stays.
func TestCustomerDeletionTakesUpcomingInvoice(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	up := func(cus string) store.Object {
		return store.Object{Raw: json.RawMessage(fmt.Sprintf(`{"object": "invoice", "customer": %q, "total": 100, "lines": {"object": "list", "data": [], "has_more": false}}`, cus)), AsOf: t0}
	}
	upsert(t, conn, "customers", store.Object{Raw: customer("cus_u", ""), AsOf: t0}, store.Object{Raw: customer("cus_v", ""), AsOf: t0})
	upsert(t, conn, "upcoming_invoices", up("cus_u"), up("cus_v"))
	// A re-fetch of the customer answers with its deletion stub.
	upsert(t, conn, "customers", store.Object{Raw: json.RawMessage(`{"id": "cus_u", "object": "customer", "deleted": true}`), AsOf: t0.Add(time.Second)})
	var got []string
	if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(customer ORDER BY customer), '{}') FROM stripe.upcoming_invoices`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"cus_v"}) {
		t.Errorf("upcoming invoices after cus_u's deletion: %v", got)
	}
	// The same through Delete (a sweep, a write-through's DELETE).
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		return store.Delete(ctx, tx, "customers", "cus_v", t0.Add(time.Second))
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM stripe.upcoming_invoices`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d upcoming invoices after both deletions (%v)", n, err)
	}
}

// A backfill's sweep removes the payment methods it didn't list (a
// detached one is on no customer's list) without a tombstone: Stripe
// keeps them, and a later attach must be stored.
func TestSweepKeepsNoTombstoneOfPaymentMethods(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	detached := store.Object{Raw: json.RawMessage(`{"id": "pm_x", "object": "payment_method", "type": "card", "created": 1700000000, "customer": null}`), AsOf: t0}
	upsert(t, conn, "payment_methods", detached)
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		n, _, err := store.Sweep(ctx, tx, "payment_methods", t0.Add(time.Minute), false, nil)
		if err == nil && n != 1 {
			err = fmt.Errorf("swept %d rows, want 1", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	attached := store.Object{Raw: customer("cus_x", ""), AsOf: t0.Add(time.Hour)}
	upsert(t, conn, "customers", attached)
	later := store.Object{Raw: json.RawMessage(`{"id": "pm_x", "object": "payment_method", "type": "card", "created": 1700000000, "customer": "cus_x"}`), AsOf: t0.Add(time.Hour)}
	if res := upsert(t, conn, "payment_methods", later); !slices.Equal(res.Applied, []string{"pm_x"}) {
		t.Errorf("a payment method attached after the sweep: %+v", res)
	}
}
