package events_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
	"github.com/pgstripe/pgstripe/verify"
)

// stripe.customers.default_source follows a customer's cards saved the
// legacy way: set by source on create, moved by default_source, handed to
// the newest card left when the default is deleted (customer.updated),
// while the customer.source.* events of the cards (which
// stripe.payment_methods follows: TestSourceCardsInPaymentMethods)
// leave every table equal to the emulator; a fresh backfill agrees.
func TestCustomerDefaultSourceSynced(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
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

// pmRows is stripe.payment_methods of customer cus: id → _raw.
func pmRows(t *testing.T, pool *pgxpool.Pool, cus string) map[string]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, _raw::text FROM stripe.payment_methods WHERE customer = $1`, cus)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			t.Fatal(err)
		}
		out[id] = raw
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantPMs checks that stripe.payment_methods holds for customer cus
// exactly the ids want, each as Stripe's Payment Methods API answers it.
func wantPMs(t *testing.T, v *env, pool *pgxpool.Pool, cus string, want ...string) {
	t.Helper()
	got := pmRows(t, pool, cus)
	ids := make([]string, 0, len(got))
	for id := range got {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("stripe.payment_methods of %s: %v, want %v", cus, ids, want)
	}
	for _, id := range want {
		resp, err := v.client.Get(context.Background(), "/v1/payment_methods/"+id, nil)
		if err != nil {
			t.Fatalf("GET /v1/payment_methods/%s: %v", id, err)
		}
		if !verify.SameJSON([]byte(got[id]), resp.Body) {
			t.Fatalf("row %s:\n  got  %s\n  want %s", id, got[id], resp.Body)
		}
	}
}

// Cards saved as a customer's sources are payment methods in Stripe's
// Payment Methods API (retrieved and listed under their card_ id: see
// emulator/cardpm.go), so stripe.payment_methods holds them as a backfill
// (per customer list) finds them, and follows them through the events
// Stripe sends for them, customer.source.created, .updated and .deleted
// (no payment_method.* event): saved on create, by POST /sources and by a
// customer update with source (which deletes the default it replaces),
// changed by a source update, gone when deleted; a fresh backfill agrees.
func TestSourceCardsInPaymentMethods(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, call := opsEnv(t)
	cus := call("/v1/customers", url.Values{"email": {"legacy@example.com"}, "source": {"tok_visa"}})
	pm := call("/v1/payment_methods", url.Values{"type": {"card"}, "card[token]": {"tok_amex"}})
	call("/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {cus}})
	v.converge(t, 10*time.Second)
	visa := savedCardBesides(t, v, cus, pm)
	wantPMs(t, v, v.pool, cus, pm, visa)

	master := call("/v1/customers/"+cus+"/sources", url.Values{"source": {"tok_mastercard"}})
	call("/v1/customers/"+cus+"/sources/"+visa, url.Values{"name": {"Jenny Rosen"}, "exp_month": {"3"}, "metadata[k]": {"v"}})
	v.converge(t, 10*time.Second)
	wantPMs(t, v, v.pool, cus, pm, visa, master)
	var name, k string
	if err := v.pool.QueryRow(context.Background(),
		`SELECT billing_details->>'name', metadata->>'k' FROM stripe.payment_methods WHERE id = $1`, visa).Scan(&name, &k); err != nil || name != "Jenny Rosen" || k != "v" {
		t.Fatalf("updated card's row: name %q, metadata k %q (%v)", name, k, err)
	}

	// A new source replaces the default card (visa), which Stripe deletes.
	call("/v1/customers/"+cus, url.Values{"source": {"tok_discover"}})
	v.converge(t, 10*time.Second)
	rows := pmRows(t, v.pool, cus)
	var discover string
	for id := range rows {
		if id != pm && id != master {
			discover = id
		}
	}
	if discover == "" || discover == visa {
		t.Fatalf("after replacing the default source: %v", rows)
	}
	wantPMs(t, v, v.pool, cus, pm, master, discover)
	var tomb bool
	if err := v.pool.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE object = 'payment_methods' AND id = $1)`, visa).Scan(&tomb); err != nil || !tomb {
		t.Fatalf("deleted card %s has no tombstone (%v)", visa, err)
	}

	v.deleteOp(t, "/v1/customers/"+cus+"/sources/"+master)
	v.converge(t, 10*time.Second)
	wantPMs(t, v, v.pool, cus, pm, discover)

	// A fresh backfill finds the same.
	pool, _ := pgtest.NewMigratedDB(t)
	if err := backfill.Run(context.Background(), backfill.Config{Pool: pool, Client: v.client}); err != nil {
		t.Fatal(err)
	}
	d, err := verify.Compare(context.Background(), pool, v.e)
	if err != nil {
		t.Fatal(err)
	}
	if d.Total() != 0 {
		t.Fatalf("fresh backfill differs from the emulator: %d missing, %d extra, %d stale %v\n%v", d.Missing, d.Extra, d.Stale, d.ByTable, d.Details)
	}
	wantPMs(t, v, pool, cus, pm, discover)
}

// A saved card's customer.source.* events move its payment method row
// (Stripe shows the card as a payment method of its id and sends no
// payment_method.* event for it): created and updated re-fetch it, deleted
// removes it; a card source (src_ of type card) likewise; bank accounts,
// other sources and customer.source.expiring change no stored object.
func TestRouteSourceEvents(t *testing.T) {
	for _, tc := range []struct {
		typ, obj string
		want     events.Route
	}{
		{"customer.source.created", `{"id":"card_1","object":"card","customer":"cus_1"}`, events.Route{Action: events.Refetch, Table: "payment_methods", ID: "card_1"}},
		{"customer.source.updated", `{"id":"card_1","object":"card","customer":"cus_1"}`, events.Route{Action: events.Refetch, Table: "payment_methods", ID: "card_1"}},
		{"customer.source.deleted", `{"id":"card_1","object":"card","customer":"cus_1"}`, events.Route{Action: events.Delete, Table: "payment_methods", ID: "card_1"}},
		{"customer.source.expiring", `{"id":"card_1","object":"card","customer":"cus_1"}`, events.Route{}},
		{"customer.source.created", `{"id":"src_1","object":"source","type":"card","customer":"cus_1"}`, events.Route{Action: events.Refetch, Table: "payment_methods", ID: "src_1"}},
		{"customer.source.deleted", `{"id":"src_1","object":"source","type":"card","customer":"cus_1"}`, events.Route{Action: events.Delete, Table: "payment_methods", ID: "src_1"}},
		{"customer.source.created", `{"id":"src_2","object":"source","type":"sepa_debit","customer":"cus_1"}`, events.Route{}},
		{"customer.source.created", `{"id":"ba_1","object":"bank_account","customer":"cus_1"}`, events.Route{}},
		{"customer.source.deleted", `{"id":"ba_1","object":"bank_account","customer":"cus_1"}`, events.Route{}},
	} {
		if got := events.RouteEvent(tc.typ, json.RawMessage(tc.obj)); got != tc.want {
			t.Errorf("%s %s: %+v, want %+v", tc.typ, tc.obj, got, tc.want)
		}
	}
}

// payment_method.detached of a saved card (card_) or a card source (src_)
// removes its row: Stripe deleted the card, and a detached source is no
// payment method any more, so the event's object (customer null) is a
// state Stripe no longer holds; a payment method of its own (pm_) is
// upserted detached as before.
func TestRouteDetachedCard(t *testing.T) {
	for _, tc := range []struct {
		obj  string
		want events.Route
	}{
		{`{"id":"card_1","object":"payment_method","type":"card","customer":null}`, events.Route{Action: events.Delete, Table: "payment_methods", ID: "card_1"}},
		{`{"id":"src_1","object":"payment_method","type":"card","customer":null}`, events.Route{Action: events.Delete, Table: "payment_methods", ID: "src_1"}},
		{`{"id":"pm_1","object":"payment_method","type":"card","customer":null}`, events.Route{Action: events.Upsert, Table: "payment_methods", ID: "pm_1"}},
	} {
		if got := events.RouteEvent("payment_method.detached", json.RawMessage(tc.obj)); got != tc.want {
			t.Errorf("payment_method.detached %s: %+v, want %+v", tc.obj, got, tc.want)
		}
	}
	// Other payment_method events of a card's view are its states.
	if got, want := events.RouteEvent("payment_method.updated", json.RawMessage(`{"id":"card_1","object":"payment_method"}`)),
		(events.Route{Action: events.Upsert, Table: "payment_methods", ID: "card_1"}); got != want {
		t.Errorf("payment_method.updated of a card: %+v, want %+v", got, want)
	}
}

// A saved card changed through the Payment Methods API (update, then
// detach, which deletes it) is followed by the events loop: the row as
// Stripe answers it after the update, gone (tombstoned) after the detach,
// with the customer's default_source handed to the other card; every
// table equals the emulator after each step.
func TestCardChangedThroughPaymentMethods(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, call := opsEnv(t)
	ctx := context.Background()
	cus := call("/v1/customers", url.Values{"email": {"legacy@example.com"}, "source": {"tok_visa"}})
	master := call("/v1/customers/"+cus+"/sources", url.Values{"source": {"tok_mastercard"}})
	v.converge(t, 10*time.Second)
	visa := savedCardBesides(t, v, cus, master)

	call("/v1/payment_methods/"+visa, url.Values{"billing_details[name]": {"Jenny Rosen"}, "card[exp_year]": {"2031"}, "metadata[k]": {"v"}})
	v.converge(t, 10*time.Second)
	wantPMs(t, v, v.pool, cus, visa, master)
	var name string
	var year int
	if err := v.pool.QueryRow(ctx, `SELECT billing_details->>'name', (card->>'exp_year')::int FROM stripe.payment_methods WHERE id = $1`, visa).Scan(&name, &year); err != nil || name != "Jenny Rosen" || year != 2031 {
		t.Fatalf("row after the update: name %q, exp_year %d (%v)", name, year, err)
	}

	if _, err := v.mut.Post(stripeapi.WithPriority(ctx, stripeapi.Interactive), "/v1/payment_methods/"+visa+"/detach", nil, ""); err != nil {
		t.Fatalf("detach: %v", err)
	}
	v.converge(t, 10*time.Second)
	wantPMs(t, v, v.pool, cus, master)
	var tomb bool
	var ds *string
	if err := v.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE object = 'payment_methods' AND id = $1),
		(SELECT default_source FROM stripe.customers WHERE id = $2)`, visa, cus).Scan(&tomb, &ds); err != nil {
		t.Fatal(err)
	}
	if !tomb || ds == nil || *ds != master {
		t.Fatalf("after the detach: tombstone %v, default_source %v, want %s", tomb, ds, master)
	}
}

// savedCardBesides is the id of cus's payment method in
// stripe.payment_methods other than known, which must be a saved card
// (card_).
func savedCardBesides(t *testing.T, v *env, cus, known string) string {
	t.Helper()
	var card string
	for id := range pmRows(t, v.pool, cus) {
		if id != known {
			card = id
		}
	}
	if !strings.HasPrefix(card, "card_") {
		t.Fatalf("no saved card besides %s in stripe.payment_methods: %v", known, pmRows(t, v.pool, cus))
	}
	return card
}
