package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

// Every object of a seeded emulator upserts, and every row's typed columns
// agree with its _raw; parents arrive with their nested lists.
func TestEmulatorSeedRoundTrip(t *testing.T) {
	em, _ := emulatortest.Start(t, emulator.Options{Seed: 8})
	conn := setup(t)
	ctx := context.Background()
	seen := 0
	for _, tb := range schema.Tables() {
		m := em.Objects(tb.Name)
		if len(m) == 0 {
			t.Logf("emulator has no %s", tb.Name)
			continue
		}
		seen++
		objs := make([]store.Object, 0, len(m))
		for _, raw := range m {
			objs = append(objs, store.Object{Raw: json.RawMessage(raw), AsOf: t0})
		}
		res := upsert(t, conn, tb.Name, objs...)
		if tb.Parent == nil && len(res.Applied) != len(objs) {
			t.Errorf("%s: %d objects, result %+v", tb.Name, len(objs), res)
		}
		var n int
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s", tb.QualifiedName())).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < len(m) {
			t.Errorf("%s: %d rows for %d emulator objects", tb.Name, n, len(m))
		}
		checkColumnsAgree(t, conn, tb)
	}
	if seen < 10 {
		t.Errorf("only %d tables had seeded objects", seen)
	}
	// Child rows came with their parents: each seeded line belongs to a stored invoice.
	var orphans int
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe.invoice_line_items l LEFT JOIN stripe.invoices i ON i.id = l.invoice WHERE i.id IS NULL`).Scan(&orphans)
	if orphans != 0 {
		t.Errorf("%d line items without their invoice", orphans)
	}
}
