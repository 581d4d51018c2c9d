package events_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"encoding/json"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/verify"
)

// A deleted customer's tax ids and payment methods: the events path and a
// fresh backfill end with the same rows, and both equal the emulator. A
// later event of the payment method (Stripe keeps updating it, e.g.
// payment_method.card_automatically_updated, mozilla/fxa#12380) doesn't
// bring it back, even once the customer's tombstone is pruned.
func TestDeletedCustomerDependents(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, call := opsEnv(t)
	ctx := context.Background()
	cus := call("/v1/customers", url.Values{"name": {"Gone"}})
	pm := call("/v1/payment_methods", url.Values{"type": {"card"}})
	call("/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {cus}})
	txi := call("/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE123456789"}})
	keep := call("/v1/customers", url.Values{"name": {"Kept"}})
	keptPM := call("/v1/payment_methods", url.Values{"type": {"card"}})
	call("/v1/payment_methods/"+keptPM+"/attach", url.Values{"customer": {keep}})
	v.converge(t, 10*time.Second)
	if v.rows(t, "payment_methods") != 2 || v.rows(t, "tax_ids") != 1 {
		t.Fatalf("before the deletion: %d payment methods, %d tax ids", v.rows(t, "payment_methods"), v.rows(t, "tax_ids"))
	}

	v.deleteOp(t, "/v1/customers/"+cus)
	v.converge(t, 10*time.Second)
	gone := func(table, id string) {
		t.Helper()
		var n int
		if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.`+table+` WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s %s still stored after its customer's deletion", table, id)
		}
	}
	waitFor(t, "the deleted customer's rows to go", func() bool {
		return v.rows(t, "payment_methods") == 1 && v.rows(t, "tax_ids") == 0
	})
	gone("payment_methods", pm)
	gone("tax_ids", txi)

	// Stripe still changes the payment method: its event must not bring
	// the row back, with the customer's tombstone or after it is pruned.
	call("/v1/payment_methods/"+pm, url.Values{"metadata[k]": {"1"}})
	v.converge(t, 10*time.Second)
	if _, err := v.pool.Exec(ctx, `DELETE FROM stripe_sync.tombstones WHERE object = 'customers'`); err != nil {
		t.Fatal(err)
	}
	call("/v1/payment_methods/"+pm, url.Values{"metadata[k]": {"2"}})
	resp, err := v.mut.Get(ctx, "/v1/events", url.Values{"limit": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	var last struct{ Data []struct{ ID, Type string } }
	if err := json.Unmarshal(resp.Body, &last); err != nil || len(last.Data) != 1 || last.Data[0].Type != "payment_method.updated" {
		t.Fatalf("newest event: %s (%v)", resp.Body, err)
	}
	waitFor(t, "the payment method's event and re-fetches", func() bool {
		var applied, q int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.applied_events WHERE id = $1`, last.Data[0].ID).Scan(&applied)
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch`).Scan(&q)
		return applied == 1 && q == 0
	})
	v.converge(t, 10*time.Second)
	gone("payment_methods", pm)

	// A fresh backfill of the same account ends with the same rows.
	pool, _ := pgtest.NewMigratedDB(t)
	if err := backfill.Run(ctx, backfill.Config{Pool: pool, Client: v.client}); err != nil {
		t.Fatal(err)
	}
	d, err := verify.Compare(ctx, pool, v.e)
	if err != nil {
		t.Fatal(err)
	}
	if d.Total() != 0 {
		t.Fatalf("fresh backfill differs from the emulator: %d missing, %d extra, %d stale %v\n%v", d.Missing, d.Extra, d.Stale, d.ByTable, d.Details)
	}
	for _, table := range []string{"payment_methods", "tax_ids", "customers"} {
		var a, b []string
		q := `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM stripe.` + table
		if err := v.pool.QueryRow(ctx, q).Scan(&a); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, q).Scan(&b); err != nil {
			t.Fatal(err)
		}
		if len(a) != len(b) {
			t.Errorf("%s: events path %v, fresh backfill %v", table, a, b)
			continue
		}
		for i := range a {
			if a[i] != b[i] {
				t.Errorf("%s: events path %v, fresh backfill %v", table, a, b)
				break
			}
		}
	}
}

// A payment method re-fetched instead of taken from its event (an event
// rendered in the account's other API version queues exactly this
// re-fetch; so does a same-second ambiguity) after its deleted customer's
// tombstone was pruned: the fetched object still names the customer, so
// the customer is re-fetched too, and its "deleted" answer removes the
// row again, as for a payment method taken from its event.
func TestRefetchedPaymentMethodOfPrunedCustomer(t *testing.T) {
	v, call := opsEnv(t)
	ctx := context.Background()
	cus := call("/v1/customers", url.Values{"name": {"Gone"}})
	pm := call("/v1/payment_methods", url.Values{"type": {"card"}})
	call("/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {cus}})
	v.converge(t, 10*time.Second)
	v.deleteOp(t, "/v1/customers/"+cus)
	v.converge(t, 10*time.Second)
	if n := v.rows(t, "payment_methods"); n != 0 {
		t.Fatalf("%d payment methods after the customer's deletion", n)
	}
	// The retention passes: the customer's tombstone is pruned.
	if _, err := v.pool.Exec(ctx, `DELETE FROM stripe_sync.tombstones WHERE object = 'customers'`); err != nil {
		t.Fatal(err)
	}
	if _, err := v.pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
VALUES ('payment_methods', $1, now() - interval '1 hour', 'version')`, pm); err != nil {
		t.Fatal(err)
	}
	// The customer's re-fetch, if any, is queued in the transaction that
	// dequeues the payment method's.
	waitFor(t, "the re-fetch queue to drain", func() bool {
		var n int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch`).Scan(&n)
		return n == 0
	})
	if n := v.rows(t, "payment_methods"); n != 0 {
		t.Errorf("the re-fetched payment method of deleted customer %s is stored (%d rows)", cus, n)
	}
	v.converge(t, 10*time.Second)
}
