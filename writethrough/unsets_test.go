package writethrough

import (
	"encoding/json"
	"net/http"
	url2 "net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// itemMetadataSubscription creates a monthly send_invoice subscription of a new
// customer whose one item has metadata {"a": "1", "b": "2"}, and returns
// the subscription's and the item's ids.
func itemMetadataSubscription(t *testing.T, e *env, email string) (sub, item string) {
	t.Helper()
	cus := e.newCustomers(email)[0]
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	price := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	sub = e.one(`INSERT INTO stripe.subscriptions (customer, items, collection_method, days_until_due)
		VALUES ($1, jsonb_build_array(jsonb_build_object('price', $2::text, 'metadata', '{"a": "1", "b": "2"}'::jsonb)), 'send_invoice', 7)
		RETURNING id`, cus, price)
	item = e.local(`SELECT items->'data'->0->>'id' FROM stripe.subscriptions WHERE id = $1`, sub)
	return sub, item
}

// recordPosts makes e record the form of every POST to a path under
// prefix (the emulator still answers it) and returns the recording.
func recordPosts(e *env, prefix string) func() []url2.Values {
	var mu sync.Mutex
	var bodies []url2.Values
	f := faultFunc(func(_ http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, prefix) {
			mu.Lock()
			bodies = append(bodies, form)
			mu.Unlock()
		}
		return false
	})
	e.fault.Store(&f)
	return func() []url2.Values {
		mu.Lock()
		defer mu.Unlock()
		return append([]url2.Values(nil), bodies...)
	}
}

// itemMetadata returns the metadata of the subscription item id in Stripe
// and in the local subscription_items table.
func itemMetadata(t *testing.T, e *env, id string) (stripe, local map[string]any) {
	t.Helper()
	stripe, _ = e.stripeObj("subscription_items", id)["metadata"].(map[string]any)
	if err := json.Unmarshal([]byte(e.local(`SELECT metadata::text FROM stripe.subscription_items WHERE id = $1`, id)), &local); err != nil {
		t.Fatal(err)
	}
	return stripe, local
}

// TestRequestShapedItemMetadataEmptied: an UPDATE that writes the
// subscription's items as the request's array, naming an item by its id
// with metadata {}, empties the item's metadata: items[0][metadata]= (the
// update-subscription spec takes "" for an item's metadata) reaches Stripe,
// and the emptied metadata is applied in Stripe and locally. Before, only
// items[0][id] was sent, and the item kept its metadata without a word.
// A key of such an element set to null where Stripe takes no "" (its
// quantity) is refused with 22023 naming the form key, before any call.
func TestRequestShapedItemMetadataEmptied(t *testing.T) {
	e := setup(t)
	sub, si := itemMetadataSubscription(t, e, "itemsmeta@b.co")
	if st, _ := itemMetadata(t, e, si); !reflect.DeepEqual(st, map[string]any{"a": "1", "b": "2"}) {
		t.Fatalf("Stripe's item metadata after the create: %v", st)
	}
	bodies := recordPosts(e, "/v1/subscriptions/")

	e.ok(`UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'metadata', '{}'::jsonb)) WHERE id = $1`, sub, si)
	got := bodies()
	if len(got) != 1 {
		t.Fatalf("%d updates reached Stripe, want 1", len(got))
	}
	if v, ok := got[0]["items[0][metadata]"]; !ok || !reflect.DeepEqual(v, []string{""}) {
		t.Errorf("items[0][metadata] sent as %q (present %v), want the empty string: %v", v, ok, got[0])
	}
	st, local := itemMetadata(t, e, si)
	if len(st) != 0 || len(local) != 0 {
		t.Errorf("item metadata after emptying it: Stripe %v, local %v; want both empty", st, local)
	}

	// A metadata key removed with null in the same shape: only that key.
	e.ok(`UPDATE stripe.subscription_items SET metadata = '{"c": "3", "d": "4"}' WHERE id = $1`, si)
	e.ok(`UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'metadata', '{"c": null}'::jsonb)) WHERE id = $1`, sub, si)
	if st, local := itemMetadata(t, e, si); !reflect.DeepEqual(st, map[string]any{"d": "4"}) || !reflect.DeepEqual(local, st) {
		t.Errorf("item metadata after removing c: Stripe %v, local %v; want {d: 4} in both", st, local)
	}

	before := e.calls()
	r := e.fails("22023", `UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'quantity', NULL)) WHERE id = $1`, sub, si)
	if !strings.Contains(r.err.Message, "items[0][quantity]") {
		t.Errorf("refusal %q does not name items[0][quantity]", r.err.Message)
	}
	if e.calls() != before {
		t.Errorf("%d Stripe calls for the refused statement", e.calls()-before)
	}
	if q := e.stripeObj("subscription_items", si)["quantity"]; q != 1.0 {
		t.Errorf("Stripe's quantity %v after the refused statement, want 1", q)
	}
}

// TestMetadataHashOrArrayValue: a metadata value that is a hash or
// an array, empty or not, is refused with 22023 naming its form key
// before any call, on an update as on a create: before, {"k": {}} removed
// k while {"k": []} was refused, and {"k": {"x": "1"}} reached Stripe as
// metadata[k][x]=1, which Stripe refuses after the calls of the
// statement's earlier rows (here: the first customer was created). null
// still removes the key.
func TestMetadataHashOrArrayValue(t *testing.T) {
	e := setup(t)
	cus := e.ok(`INSERT INTO stripe.customers (email, metadata) VALUES ('md@b.co', '{"k": "v", "j": "w"}') RETURNING id`).rows[0][0]
	for _, v := range []string{`{"k": {}}`, `{"k": []}`, `{"k": {"x": "1"}}`, `{"k": ["a"]}`} {
		before := e.calls()
		r := e.fails("22023", `UPDATE stripe.customers SET metadata = $2::jsonb WHERE id = $1`, cus, v)
		if !strings.Contains(r.err.Message, "metadata[k]") {
			t.Errorf("%s: refusal %q does not name metadata[k]", v, r.err.Message)
		}
		if e.calls() != before {
			t.Errorf("%s: %d Stripe calls for the refused statement", v, e.calls()-before)
		}
		if md := e.stripeObj("customers", cus)["metadata"].(map[string]any); md["k"] != "v" {
			t.Errorf("%s: Stripe's metadata %v after the refused statement", v, md)
		}
	}
	e.ok(`UPDATE stripe.customers SET metadata = '{"k": null, "j": "w"}' WHERE id = $1`, cus)
	if md := e.stripeObj("customers", cus)["metadata"].(map[string]any); !reflect.DeepEqual(md, map[string]any{"j": "w"}) {
		t.Errorf("Stripe's metadata %v after removing k with null, want {j: w}", md)
	}

	before := e.calls()
	e.fails("22023", `INSERT INTO stripe.customers (email, metadata) VALUES ('md1@b.co', '{"k": "v"}'), ('md2@b.co', '{"k": {"x": "1"}}')`)
	if e.calls() != before {
		t.Errorf("%d Stripe calls for the refused INSERT", e.calls()-before)
	}
	if n := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email IN ('md1@b.co', 'md2@b.co')`); n != "0" {
		t.Errorf("%s customers created by the refused INSERT", n)
	}
}

// TestParamsUnsetOnUpdate: on an UPDATE, a _params key of the
// update itself set to null or {} is no longer left out (which changed
// nothing): a metadata key's null removes that key alone, {} for a
// parameter that takes "" unsets it, and {} or null anywhere else is
// refused with 22023 naming the key, before any call.
func TestParamsUnsetOnUpdate(t *testing.T) {
	e := setup(t)
	sub, _ := itemMetadataSubscription(t, e, "params@b.co")
	e.ok(`UPDATE stripe.subscriptions SET metadata = '{"a": "1", "b": "2"}' WHERE id = $1`, sub)

	e.ok(`UPDATE stripe.subscriptions SET _params = '{"metadata": {"a": null}}' WHERE id = $1`, sub)
	if md := e.stripeObj("subscriptions", sub)["metadata"].(map[string]any); !reflect.DeepEqual(md, map[string]any{"b": "2"}) {
		t.Errorf("Stripe's metadata %v, want {b: 2}", md)
	}
	if got := e.local(`SELECT metadata::text FROM stripe.subscriptions WHERE id = $1`, sub); got != `{"b": "2"}` {
		t.Errorf("local metadata %s, want {\"b\": \"2\"}", got)
	}

	e.ok(`UPDATE stripe.subscriptions SET _params = '{"pause_collection": {"behavior": "void"}}' WHERE id = $1`, sub)
	if pc := e.stripeObj("subscriptions", sub)["pause_collection"]; pc == nil {
		t.Fatal("pause_collection not set")
	}
	e.ok(`UPDATE stripe.subscriptions SET _params = '{"pause_collection": {}}' WHERE id = $1`, sub)
	if pc := e.stripeObj("subscriptions", sub)["pause_collection"]; pc != nil {
		t.Errorf("Stripe's pause_collection %v after _params {\"pause_collection\": {}}, want null", pc)
	}

	for _, v := range []string{`{"trial_settings": {}}`, `{"proration_behavior": null}`} {
		before := e.calls()
		r := e.fails("22023", `UPDATE stripe.subscriptions SET _params = $2::jsonb WHERE id = $1`, sub, v)
		if !strings.Contains(r.err.Message, "_params key") {
			t.Errorf("%s: refusal %q does not name the _params key", v, r.err.Message)
		}
		if e.calls() != before {
			t.Errorf("%s: %d Stripe calls for the refused statement", v, e.calls()-before)
		}
	}
}

// TestItemPriceNullRefused: an element of subscriptions.items that
// names an item by its id with price null or {} is refused with 22023
// naming items[0][price] before any call, in the request's array as in
// the list read back. Since the items element was updated key by key,
// such a price went to Stripe as items[0][price]= (an item's price is
// no unset: Stripe answered "No such price", after the calls of the
// statement's earlier rows), where before it was left out; in the list
// read back it always went so.
func TestItemPriceNullRefused(t *testing.T) {
	e := setup(t)
	sub, si := itemMetadataSubscription(t, e, "itemprice@b.co")
	price := e.local(`SELECT items->'data'->0->'price'->>'id' FROM stripe.subscriptions WHERE id = $1`, sub)
	for _, sql := range []string{
		`UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'price', NULL, 'quantity', 2)) WHERE id = $1`,
		`UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'price', '{}'::jsonb, 'quantity', 2)) WHERE id = $1`,
		`UPDATE stripe.subscriptions SET items = jsonb_set(jsonb_set(items, '{data,0,price}', 'null'), '{data,0,quantity}', '2') WHERE id = $1 AND $2::text <> ''`,
	} {
		before := e.calls()
		r := e.fails("22023", sql, sub, si)
		if !strings.Contains(r.err.Message, "items[0][price]") {
			t.Errorf("%s: refusal %q does not name items[0][price]", sql, r.err.Message)
		}
		if e.calls() != before {
			t.Errorf("%s: %d Stripe calls for the refused statement", sql, e.calls()-before)
		}
		it := e.stripeObj("subscription_items", si)
		if q := it["quantity"]; q != 1.0 {
			t.Errorf("%s: Stripe's quantity %v after the refused statement, want 1", sql, q)
		}
		if p, _ := it["price"].(map[string]any); p["id"] != price {
			t.Errorf("%s: Stripe's price %v after the refused statement, want %s", sql, it["price"], price)
		}
	}
	// A price given changes it as before.
	e.ok(`UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'price', $3::text, 'quantity', 2)) WHERE id = $1`, sub, si, price)
	if q := e.stripeObj("subscription_items", si)["quantity"]; q != 2.0 {
		t.Errorf("Stripe's quantity %v, want 2", q)
	}
}

// TestParamsItemsUpdatedKeyByKey: _params of an UPDATE with items
// naming an item by its id updates it as the items column's array does:
// metadata {} empties the item's metadata (items[0][metadata]= reaches
// Stripe), and a quantity of null is refused with 22023 naming
// items[0][quantity] before any call. Before, _params' items went as a
// create's: items[0][id] alone, and the item kept its metadata without
// a word (the loss the column's array was fixed for).
func TestParamsItemsUpdatedKeyByKey(t *testing.T) {
	e := setup(t)
	sub, si := itemMetadataSubscription(t, e, "paramsitems@b.co")
	bodies := recordPosts(e, "/v1/subscriptions/")
	e.ok(`UPDATE stripe.subscriptions SET _params = jsonb_build_object('items', jsonb_build_array(jsonb_build_object('id', $2::text, 'metadata', '{}'::jsonb)), 'proration_behavior', 'none') WHERE id = $1`, sub, si)
	got := bodies()
	if len(got) != 1 {
		t.Fatalf("%d updates reached Stripe, want 1", len(got))
	}
	if v, ok := got[0]["items[0][metadata]"]; !ok || !reflect.DeepEqual(v, []string{""}) {
		t.Errorf("items[0][metadata] sent as %q (present %v), want the empty string: %v", v, ok, got[0])
	}
	if st, local := itemMetadata(t, e, si); len(st) != 0 || len(local) != 0 {
		t.Errorf("item metadata after emptying it through _params: Stripe %v, local %v; want both empty", st, local)
	}

	before := e.calls()
	r := e.fails("22023", `UPDATE stripe.subscriptions SET _params = jsonb_build_object('items', jsonb_build_array(jsonb_build_object('id', $2::text, 'quantity', NULL))) WHERE id = $1`, sub, si)
	if !strings.Contains(r.err.Message, "items[0][quantity]") || !strings.Contains(r.err.Message, `_params key "items"`) {
		t.Errorf("refusal %q does not name _params key \"items\" and items[0][quantity]", r.err.Message)
	}
	if e.calls() != before {
		t.Errorf("%d Stripe calls for the refused statement", e.calls()-before)
	}
}
