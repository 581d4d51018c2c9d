package writethrough

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
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
	cus := e.newCustomers("items@b.co")[0]
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	p1 := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	p2 := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 300, '{"interval":"month"}') RETURNING id`, prod)
	txr1 := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20, false) RETURNING id`)
	txr2 := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('GST', 5, false) RETURNING id`)
	sub := e.one(`INSERT INTO stripe.subscriptions (customer, collection_method, days_until_due, default_tax_rates, items)
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

// twoItemSubscription creates a monthly send_invoice subscription of a new
// customer with two items (the first with metadata {"a": "1", "b": "2"}),
// and returns the subscription's id, its items' ids and a third price of
// the same product.
func twoItemSubscription(t *testing.T, e *env, email string) (sub, si1, si2, p3 string) {
	t.Helper()
	cus := e.newCustomers(email)[0]
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	price := func(amount int) string {
		return e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', $2::int, '{"interval":"month"}') RETURNING id`, prod, amount)
	}
	p1, p2, p3 := price(1000), price(300), price(50)
	sub = e.one(`INSERT INTO stripe.subscriptions (customer, items, collection_method, days_until_due)
		VALUES ($1, jsonb_build_array(jsonb_build_object('price', $2::text, 'metadata', '{"a": "1", "b": "2"}'::jsonb), jsonb_build_object('price', $3::text)), 'send_invoice', 7)
		RETURNING id`, cus, p1, p2)
	si1 = e.local(`SELECT items->'data'->0->>'id' FROM stripe.subscriptions WHERE id = $1`, sub)
	si2 = e.local(`SELECT items->'data'->1->>'id' FROM stripe.subscriptions WHERE id = $1`, sub)
	return sub, si1, si2, p3
}

// replyText describes a reply that was not the success expected.
func replyText(r reply) string {
	if r.err != nil {
		return r.err.Code + ": " + r.err.Message + " (" + r.err.Detail + ")"
	}
	return "tag " + r.tag
}

// itemForm returns the items[…] keys of a recorded update.
func itemForm(form url.Values) map[string]string {
	out := map[string]string{}
	for k, v := range form {
		if strings.HasPrefix(k, "items[") {
			out[k] = strings.Join(v, ",")
		}
	}
	return out
}

// TestItemsArrayCopied: subscriptions.items written as a plain array
// of the stored items (items->'data', what an ORM mapping the column to an
// array holds) goes to Stripe as the list object form does: each copied
// item cut down to the keys the request takes, only the changed keys of a
// changed item (by id), a request-shaped element as a new item, and a
// stored item left out as {id, deleted: true}. Before, every key of the
// copied items was sent (items[0][object], [created], [plan][…], the price
// object), and Stripe refused the update as unknown parameters. After each
// step the local items equal Stripe's.
func TestItemsArrayCopied(t *testing.T) {
	e := setup(t)
	sub, si1, si2, p3 := twoItemSubscription(t, e, "itemsarray@b.co")
	bodies := recordPosts(e, "/v1/subscriptions/")
	// A step that fails is reported and the next runs: each is a case
	// of its own.
	step := func(name, sql string, want map[string]string) {
		t.Helper()
		n := len(bodies())
		if r := e.run(sql, sub); r.err != nil || r.tag != "UPDATE 1" {
			t.Errorf("%s: %s", name, replyText(r))
			return
		}
		got := bodies()
		if len(got) != n+1 {
			t.Errorf("%s: %d updates reached Stripe, want 1", name, len(got)-n)
			return
		}
		if f := itemForm(got[n]); !reflect.DeepEqual(f, want) {
			t.Errorf("%s: Stripe got items\n %v\nwant\n %v", name, f, want)
		}
		var local any
		if err := json.Unmarshal([]byte(e.local(`SELECT items::text FROM stripe.subscriptions WHERE id = $1`, sub)), &local); err != nil {
			t.Fatal(err)
		}
		if stripe := e.stripeObj("subscriptions", sub)["items"]; !reflect.DeepEqual(local, stripe) {
			t.Errorf("%s: local items differ from Stripe's:\n local  %v\n stripe %v", name, local, stripe)
		}
	}

	step("quantity", `UPDATE stripe.subscriptions SET items = jsonb_set(items->'data', '{0,quantity}', '3') WHERE id = $1`,
		map[string]string{"items[0][id]": si1, "items[0][quantity]": "3"})
	if q := e.stripeObj("subscription_items", si1)["quantity"]; q != 3.0 {
		t.Errorf("Stripe's quantity of %s is %v, want 3", si1, q)
	}

	step("metadata", `UPDATE stripe.subscriptions SET items = jsonb_set(items->'data', '{0,metadata,a}', '"9"') WHERE id = $1`,
		map[string]string{"items[0][id]": si1, "items[0][metadata][a]": "9"})
	if st, local := itemMetadata(t, e, si1); !reflect.DeepEqual(st, map[string]any{"a": "9", "b": "2"}) || !reflect.DeepEqual(local, st) {
		t.Errorf("item metadata: Stripe %v, local %v; want {a: 9, b: 2} in both", st, local)
	}

	// The stored items in the order Stripe lists them, whichever that is.
	step("add", `UPDATE stripe.subscriptions SET items = items->'data' || jsonb_build_array(jsonb_build_object('price', '`+p3+`', 'quantity', 2)) WHERE id = $1`,
		map[string]string{"items[0][price]": p3, "items[0][quantity]": "2"})
	if got := e.local(`SELECT count(*)::text FROM stripe.subscription_items WHERE subscription = $1`, sub); got != "3" {
		t.Errorf("%s subscription items after adding one, want 3", got)
	}

	step("remove", `UPDATE stripe.subscriptions SET items = (SELECT jsonb_agg(x) FROM jsonb_array_elements(items->'data') x WHERE x->>'id' <> '`+si2+`') WHERE id = $1`,
		map[string]string{"items[0][id]": si2, "items[0][deleted]": "true"})
	if e.stripeObj("subscription_items", si2) != nil {
		t.Errorf("%s is still in Stripe", si2)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.subscription_items WHERE subscription = $1`, sub); got != "2" {
		t.Errorf("%s subscription items after removing one, want 2", got)
	}

	// Copied back unchanged: nothing to send.
	n := len(bodies())
	if r := e.ok(`UPDATE stripe.subscriptions SET items = items->'data' WHERE id = $1`, sub); r.tag != "UPDATE 1" {
		t.Errorf("tag %q, want UPDATE 1", r.tag)
	}
	if got := len(bodies()); got != n {
		t.Errorf("%d updates reached Stripe for the unchanged items, want none", got-n)
	}
}

// TestItemsArrayCopiedKeyStripeSets: a key of a copied item that
// Stripe's update doesn't take (created, subscription, the content of the
// price it takes by id) and that the statement changed is refused before
// any call, naming the key, rather than dropped as the unchanged ones
// are.
func TestItemsArrayCopiedKeyStripeSets(t *testing.T) {
	e := setup(t)
	sub, si1, _, _ := twoItemSubscription(t, e, "itemsarraybad@b.co")
	for _, c := range []struct {
		path       []string
		value, key string
	}{
		{[]string{"0", "created"}, "1", "created"},
		{[]string{"1", "price", "unit_amount"}, "5", "price"},
		{[]string{"0", "subscription"}, `"sub_x"`, "subscription"},
	} {
		before := e.calls()
		r := e.fails("42703", `UPDATE stripe.subscriptions SET items = jsonb_set(jsonb_set(items->'data', '{0,quantity}', '4'), $2::text[], $3::jsonb) WHERE id = $1`, sub, c.path, c.value)
		if !strings.Contains(r.err.Message, "items.[]."+c.key) {
			t.Errorf("%s: refusal %q does not name items.[].%s", c.path, r.err.Message, c.key)
		}
		if e.calls() != before {
			t.Errorf("%s: %d Stripe calls for the refused statement", c.path, e.calls()-before)
		}
	}
	if q := e.stripeObj("subscription_items", si1)["quantity"]; q != 1.0 {
		t.Errorf("Stripe's quantity %v after the refused statements, want 1", q)
	}
}
