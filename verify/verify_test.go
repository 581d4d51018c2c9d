package verify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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

// TestUnlistedPaymentMethods: the payment method Stripe makes of a
// test card for a payment (pm_card_visa on a payment intent) is on no
// list and in no event, so the tables need not hold it; once attached to
// a customer (setup_future_usage) it is listed and expected.
func TestUnlistedPaymentMethods(t *testing.T) {
	e, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	post := func(path string, q url.Values) map[string]any {
		t.Helper()
		req := httptest.NewRequest("POST", path, strings.NewReader(q.Encode()))
		req.Header.Set("Authorization", "Bearer sk_test_x")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, w.Code, w.Body)
		}
		return decodeReview(t, w.Body.Bytes())
	}
	cus := post("/v1/customers", nil)["id"].(string)
	loose := post("/v1/payment_intents", url.Values{"amount": {"500"}, "currency": {"usd"}, "payment_method": {"pm_card_visa"}, "confirm": {"true"}})["payment_method"].(string)
	saved := post("/v1/payment_intents", url.Values{"amount": {"500"}, "currency": {"usd"}, "customer": {cus}, "payment_method": {"pm_card_visa"},
		"confirm": {"true"}, "setup_future_usage": {"off_session"}})["payment_method"].(string)
	tbl, _ := schema.Lookup("payment_methods")
	want, err := Expected(e, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Objects("payment_methods")[loose]; !ok {
		t.Fatalf("the emulator has no %s", loose)
	}
	if _, ok := want[loose]; ok {
		t.Errorf("the unattached copy %s of pm_card_visa is expected in the table", loose)
	}
	if _, ok := want[saved]; !ok {
		t.Errorf("the copy %s saved for %s is not expected in the table", saved, cus)
	}
}

func decodeReview(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
