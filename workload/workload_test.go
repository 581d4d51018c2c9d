package workload_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/schema"
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

// TestEveryTable: a random run of the workload, as chaos and lag
// make it, leaves objects in every table pgstripe syncs, every operation
// succeeds at least once (its pools give it valid targets) and none fails.
func TestEveryTable(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_workload", BaseURL: base, RateLimit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := workload.New(c, 7)
	if err := w.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	seen := map[string]int{} // table → most objects at once
	for i := range 40 * len(workload.Ops) {
		op := workload.Ops[rng.IntN(len(workload.Ops))]
		if err := w.Do(ctx, op); err != nil {
			t.Errorf("%s: %v", op, err)
		}
		if i%20 == 0 {
			for tb, n := range e.Stats().Objects {
				seen[tb] = max(seen[tb], n)
			}
		}
	}
	for _, op := range workload.Ops {
		if w.OK(op) == 0 {
			t.Errorf("%s never succeeded", op)
		}
	}
	for _, tb := range schema.Tables() {
		if !tb.Virtual && seen[tb.Name] == 0 {
			t.Errorf("never any %s in the account", tb.Name)
		}
	}
	if t.Failed() {
		t.Log(w.Summary())
	}
}

// TestEveryOperationHasEvents: each operation that succeeds sends
// at least one event, since the events are all sync has to follow a
// change it didn't make (a setup intent's metadata update, say, has none
// in Stripe: no setup_intent.updated, so the workload doesn't make one).
// Checkout sessions' creation is the exception Stripe makes (no
// checkout.session.created): sync lists those by created.
func TestEveryOperationHasEvents(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_workload", BaseURL: base, RateLimit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := workload.New(c, 11)
	if err := w.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 11))
	for range 20 * len(workload.Ops) {
		op := workload.Ops[rng.IntN(len(workload.Ops))]
		ok, events := w.OK(op), e.Stats().Events
		if err := w.Do(ctx, op); err != nil {
			t.Errorf("%s: %v", op, err)
		}
		if w.OK(op) > ok && e.Stats().Events == events && op != "createCheckoutSession" {
			t.Errorf("%s succeeded without an event", op)
		}
	}
}
