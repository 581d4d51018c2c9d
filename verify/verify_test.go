package verify

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Compare finds each kind of difference, and none when the tables hold
// exactly the emulator's objects.
func TestCompare(t *testing.T) {
	ctx := context.Background()
	e, err := emulator.New(emulator.Options{RateLimit: -1, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	customers := e.Objects("customers")
	if len(customers) < 3 {
		t.Fatalf("seed gave %d customers", len(customers))
	}
	var objs []store.Object
	for _, raw := range customers {
		objs = append(objs, store.Object{Raw: raw, AsOf: time.Now()})
	}
	tx, _ := pool.Begin(ctx)
	if _, err := store.Upsert(ctx, tx, "customers", objs); err != nil {
		t.Fatal(err)
	}
	tx.Commit(ctx)
	d, err := CompareTables(ctx, pool, e, []string{"customers"})
	if err != nil || d.Total() != 0 {
		t.Fatalf("identical tables: %+v, %v", d, err)
	}

	var victim, other string
	for id := range customers {
		if victim == "" {
			victim = id
		} else if other == "" {
			other = id
		}
	}
	if _, err := pool.Exec(ctx, `DELETE FROM stripe.customers WHERE id = $1`, victim); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE stripe.customers SET _raw = jsonb_set(_raw, '{email}', '"changed@x"') WHERE id = $1`, other); err != nil {
		t.Fatal(err)
	}
	extra, _ := json.Marshal(map[string]any{"id": "cus_extra", "object": "customer", "created": 1})
	tx, _ = pool.Begin(ctx)
	if _, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: extra, AsOf: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	tx.Commit(ctx)
	d, err = CompareTables(ctx, pool, e, []string{"customers"})
	if err != nil || d.Missing != 1 || d.Stale != 1 || d.Extra != 1 || d.ByTable["customers"] != 3 {
		t.Fatalf("want 1 missing, 1 stale, 1 extra: %+v, %v", d, err)
	}
}
