package writethrough

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestSubscriptionItemsRoundTrip: subscriptions.items holds the
// list object Stripe returns ({"object": "list", "data": [subscription
// items]}), while Stripe's update takes an array of request-shaped items.
// A value read back from the column and changed goes as that array: the
// changed item by id with its changed keys, a new element as a new item,
// an element left out as deleted. Tax rates given through the proxy are
// kept by Stripe as tax rate objects, on the subscription and its items;
// the local row ends equal to the emulator's.
func TestSubscriptionItemsRoundTrip(t *testing.T) {
	e := setup(t)
	one := func(sql string, args ...any) string {
		t.Helper()
		return e.ok(sql, args...).rows[0][0]
	}
	cus := e.newCustomers("items@b.co")[0]
	prod := one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	p1 := one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	p2 := one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 300, '{"interval":"month"}') RETURNING id`, prod)
	txr1 := one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20, false) RETURNING id`)
	txr2 := one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('GST', 5, false) RETURNING id`)
	sub := one(`INSERT INTO stripe.subscriptions (customer, collection_method, days_until_due, default_tax_rates, items)
		VALUES ($1, 'send_invoice', 7, jsonb_build_array($2::text), jsonb_build_array(jsonb_build_object('price', $3::text, 'tax_rates', jsonb_build_array($4::text))))
		RETURNING id`, cus, txr2, p1, txr1)

	sameAsStripe := func(step string) {
		t.Helper()
		var local map[string]any
		if err := json.Unmarshal([]byte(e.local(`SELECT jsonb_build_object('items', items, 'default_tax_rates', default_tax_rates)::text FROM stripe.subscriptions WHERE id = $1`, sub)), &local); err != nil {
			t.Fatal(err)
		}
		st := e.stripeObj("subscriptions", sub)
		for _, k := range []string{"items", "default_tax_rates"} {
			if !reflect.DeepEqual(local[k], st[k]) {
				t.Fatalf("%s: local %s differs from Stripe's:\n local  %v\n stripe %v", step, k, local[k], st[k])
			}
		}
	}
	sameAsStripe("create")
	if got := e.local(`SELECT default_tax_rates->0->>'id' || ' ' || (items->'data'->0->'tax_rates'->0->>'id') FROM stripe.subscriptions WHERE id = $1`, sub); got != txr2+" "+txr1 {
		t.Fatalf("tax rates of the subscription and its item: %s, want %s %s", got, txr2, txr1)
	}
	si1 := e.local(`SELECT items->'data'->0->>'id' FROM stripe.subscriptions WHERE id = $1`, sub)

	// One key of the stored item changed.
	before := e.calls()
	e.ok(`UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,quantity}', '3') WHERE id = $1`, sub)
	if e.calls() == before {
		t.Fatal("Stripe was not called")
	}
	sameAsStripe("quantity")
	if got := e.local(`SELECT quantity::text FROM stripe.subscription_items WHERE id = $1`, si1); got != "3" {
		t.Fatalf("subscription_items quantity %s, want 3", got)
	}

	// A tax rate appended to the item (the stored one is an object), and a
	// new item added.
	e.ok(`UPDATE stripe.subscriptions SET items = jsonb_insert(
		jsonb_set(items, '{data,0,tax_rates}', (items->'data'->0->'tax_rates') || jsonb_build_array($2::text)),
		'{data,1}', jsonb_build_object('price', $3::text, 'quantity', 2), true) WHERE id = $1`, sub, txr2, p2)
	sameAsStripe("append")
	if got := e.local(`SELECT count(*)::text FROM stripe.subscription_items WHERE subscription = $1`, sub); got != "2" {
		t.Fatalf("%s subscription items, want 2", got)
	}
	if got := e.local(`SELECT string_agg(x->>'id', ',' ORDER BY n) FROM stripe.subscription_items, jsonb_array_elements(tax_rates) WITH ORDINALITY AS t(x, n) WHERE id = $1`, si1); got != txr1+","+txr2 {
		t.Fatalf("item tax rates %s, want %s,%s", got, txr1, txr2)
	}

	// The first item left out: Stripe deletes it.
	e.ok(`UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data}', (SELECT jsonb_agg(x) FROM jsonb_array_elements(items->'data') x WHERE x->>'id' <> $2)) WHERE id = $1`, sub, si1)
	sameAsStripe("delete")
	if got := e.local(`SELECT string_agg(price->>'id', ',') FROM stripe.subscription_items WHERE subscription = $1`, sub); got != p2 {
		t.Fatalf("items left: prices %s, want %s", got, p2)
	}

	// A key only Stripe sets: refused before any call.
	before = e.calls()
	e.fails("42703", `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,created}', '1') WHERE id = $1`, sub)
	if e.calls() != before {
		t.Fatal("Stripe was called")
	}
}
