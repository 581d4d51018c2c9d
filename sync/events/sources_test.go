package events_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/verify"
)

// stripe.customers.default_source follows a customer's cards saved the
// legacy way: set by source on create, moved by default_source, handed to
// the newest card left when the default is deleted (customer.updated),
// while the customer.source.* events of the cards, objects pgstripe
// doesn't store, leave every table equal to the emulator; a fresh
// backfill agrees.
func TestCustomerDefaultSourceSynced(t *testing.T) {
	v, call := opsEnv(t)
	ctx := context.Background()
	defaultSource := func(cus string) string {
		t.Helper()
		var ds *string
		if err := v.pool.QueryRow(ctx, `SELECT default_source FROM stripe.customers WHERE id = $1`, cus).Scan(&ds); err != nil {
			t.Fatal(err)
		}
		if ds == nil {
			return ""
		}
		return *ds
	}
	cus := call("/v1/customers", url.Values{"email": {"legacy@example.com"}, "source": {"tok_visa"}})
	v.converge(t, 10*time.Second)
	visa := defaultSource(cus)
	if len(visa) < 5 || visa[:5] != "card_" {
		t.Fatalf("default_source of a customer created with source=tok_visa: %q", visa)
	}
	master := call("/v1/customers/"+cus+"/sources", url.Values{"source": {"tok_mastercard"}})
	call("/v1/customers/"+cus, url.Values{"default_source": {master}})
	v.converge(t, 10*time.Second)
	if got := defaultSource(cus); got != master {
		t.Fatalf("default_source after the update: %q, want %s", got, master)
	}
	v.deleteOp(t, "/v1/customers/"+cus+"/sources/"+master)
	v.converge(t, 10*time.Second)
	if got := defaultSource(cus); got != visa {
		t.Fatalf("default_source after deleting the default: %q, want %s", got, visa)
	}
	v.deleteOp(t, "/v1/customers/"+cus+"/sources/"+visa)
	v.converge(t, 10*time.Second)
	if got := defaultSource(cus); got != "" {
		t.Fatalf("default_source after deleting every card: %q", got)
	}

	pool, _ := pgtest.NewMigratedDB(t)
	call("/v1/customers", url.Values{"source": {"tok_amex"}})
	v.converge(t, 10*time.Second)
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
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE default_source LIKE 'card\_%'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("backfilled customers with a card as default_source: %d (%v), want 1", n, err)
	}
}
