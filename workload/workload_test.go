package workload_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/workload"
)

// Every operation runs against the emulator without failing, and the
// objects the workload believes live are live in the account.
func TestEveryOperation(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_workload", BaseURL: base, RateLimit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := workload.New(c, 1)
	if err := w.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		for _, op := range workload.Ops {
			if err := w.Do(ctx, op); err != nil {
				t.Errorf("%s: %v", op, err)
			}
		}
	}
	ok, failed := w.Totals()
	if failed != 0 || ok < 3*len(workload.Ops)/2 {
		t.Fatalf("ok %d, failed %d: %s", ok, failed, w.Summary())
	}
	for _, kind := range []string{"customers", "products", "prices"} {
		id := w.Pick(kind)
		if id == "" {
			t.Fatalf("no live %s: %s", kind, w.Summary())
		}
		if _, live := e.Objects(kind)[id]; !live {
			t.Errorf("%s %s not in the account", kind, id)
		}
	}
	gone := w.Pick("customers")
	if err := w.Delete(ctx, "customers", gone); err != nil {
		t.Fatal(err)
	}
	if _, live := e.Objects("customers")[gone]; live {
		t.Errorf("deleted customer %s still live", gone)
	}

	// Run paces itself and stops with its context.
	before, _ := w.Totals()
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	w.Run(rctx, []string{"updateCustomer"}, 20)
	after, _ := w.Totals()
	if n := after - before; n < 3 || n > 12 {
		t.Errorf("Run at 20/s for 0.5 s did %d operations", n)
	}
}
