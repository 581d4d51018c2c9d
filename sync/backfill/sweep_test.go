package backfill_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// A dump of schema stripe alone, restored into a new database, holds rows
// of objects deleted since the dump; the first backfill there (no
// stripe_sync state) removes them, as a re-backfill does, and keeps the
// rows of objects on test clocks when the key may not list the clocks.
func TestFirstBackfillRemovesRestoredGhosts(t *testing.T) {
	for _, tool := range []string{"pg_dump", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run scripts/install-deps", tool)
		}
	}
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(20, "uniform"); err != nil {
		t.Fatal(err)
	}
	clockCustomers := clockAccount(t, v, 2)
	ctx := context.Background()
	c := v.client(t, 5000)
	// Seeded customers, with payment methods (which Stripe keeps, on no
	// list, when their customer is deleted) and one with a tax id.
	var gone []string
	for id := range v.e.Objects("customers") {
		if len(gone) < 3 && !slices.Contains(clockCustomers, id) {
			gone = append(gone, id)
		}
	}
	mustPost(t, c, "/v1/customers/"+gone[0]+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE123456789"}})
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c}); err != nil {
		t.Fatal(err)
	}
	var owned int
	if err := v.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM stripe.payment_methods WHERE customer = ANY($1)) + (SELECT count(*) FROM stripe.tax_ids WHERE customer = ANY($1))`, gone).Scan(&owned); err != nil || owned < 2 {
		t.Fatalf("%d payment methods and tax ids of the customers to delete (%v)", owned, err)
	}
	dump, err := exec.Command("pg_dump", "--schema=stripe", "--no-owner", v.db).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}

	// After the dump: customers are deleted, one customer
	// changes.
	for _, id := range gone {
		if _, err := c.Delete(ctx, "/v1/customers/"+id, nil); err != nil {
			t.Fatal(err)
		}
	}
	kept := ""
	for id := range v.e.Objects("customers") {
		// Not one on a test clock: this run can't list those.
		if !slices.Contains(gone, id) && !slices.Contains(clockCustomers, id) {
			kept = id
			break
		}
	}
	mustPost(t, c, "/v1/customers/"+kept, url.Values{"description": {"changed after the dump"}})

	restoredURL := pgtest.NewDB(t)
	restore := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", restoredURL)
	restore.Stdin = bytes.NewReader(dump)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	restored, err := pgxpool.New(ctx, restoredURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restored.Close)
	if err := schema.Migrate(ctx, restored); err != nil {
		t.Fatal(err)
	}
	// This key may not list test clocks: the restored rows of the clocks'
	// customers are all the data there is.
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if strings.HasPrefix(r.URL.Path, "/v1/test_helpers/test_clocks") {
			return 403, `{"error":{"type":"invalid_request_error","message":"This key can't list test clocks."}}`
		}
		return 0, ""
	})
	if err := backfill.Run(ctx, backfill.Config{Pool: restored, Client: c}); err != nil {
		t.Fatal(err)
	}
	v.pool = restored
	requireSame(t, v)

	var removed int
	if err := restored.QueryRow(ctx, `SELECT (detail->>'removed')::int FROM stripe_sync.log
WHERE kind = 'backfill_object_complete' AND detail->>'object' = 'customers'`).Scan(&removed); err != nil {
		t.Fatal(err)
	}
	if removed != len(gone) {
		t.Errorf("backfill_object_complete logs %d customers removed, want %d", removed, len(gone))
	}
	// The removed ids are tombstoned: an older event can't bring one back.
	var tombstoned int
	if err := restored.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.tombstones WHERE object = 'customers' AND id = ANY($1)`, gone).Scan(&tombstoned); err != nil {
		t.Fatal(err)
	}
	if tombstoned != len(gone) {
		t.Errorf("%d of %d removed customers tombstoned", tombstoned, len(gone))
	}
	var onClocks int
	if err := restored.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE id = ANY($1)`, clockCustomers).Scan(&onClocks); err != nil {
		t.Fatal(err)
	}
	if onClocks != len(clockCustomers) {
		t.Errorf("%d of %d restored customers on test clocks kept", onClocks, len(clockCustomers))
	}
}
