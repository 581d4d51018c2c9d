package emulator_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// sourceEvents lists, oldest first, the types of the events whose object
// is id, with their previous_attributes' default_source where they have one.
func sourceEvents(t *testing.T, base, id string) []string {
	t.Helper()
	var out []string
	for _, x := range oldestFirst(getObj(t, base, "/v1/events?limit=100")["data"].([]any)) {
		obj := x["data"].(map[string]any)["object"].(map[string]any)
		if obj["id"] != id {
			continue
		}
		typ := x["type"].(string)
		if prev, ok := x["data"].(map[string]any)["previous_attributes"].(map[string]any); ok {
			if ds, ok := prev["default_source"]; ok {
				s, _ := ds.(string)
				typ += " from " + cmpOr(s, "null")
			}
		}
		out = append(out, typ)
	}
	return out
}

// cardID is the card id body names under field, failing t if it names
// none.
func cardID(t *testing.T, body map[string]any, field string) string {
	t.Helper()
	id, _ := body[field].(string)
	if !strings.HasPrefix(id, "card_") {
		t.Fatalf("%s is %v, not a card: %v", field, body[field], body)
	}
	return id
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// A card saved from a token the legacy way: the customer's default_source
// when it had none (on create, or by POST /sources), a card object with
// the token's brand, last4, funding, fingerprint and a future expiry,
// listed under /sources and /cards, in customer.sources only when
// expanded (not included by default since 2020-08-27); a second card
// leaves the default alone (spec: "if the owner already has a default,
// then it will not change"); default_source takes only the customer's own
// cards; deleting the default makes the most recently added card the
// default, deleting the last leaves it null (docs.stripe.com/api/cards/
// delete), with customer.source.* and customer.updated events.
func TestCustomerSources(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path, body string) apiResp { t.Helper(); return do(t, "POST", base+path, key, body) }

	cr := mustOK(t, post("/v1/customers", "email=src%40example.com&source=tok_visa"))
	cus := idOfResp(cr)
	visa, _ := cr.body["default_source"].(string)
	if !strings.HasPrefix(visa, "card_") {
		t.Fatalf("customer created with source=tok_visa: default_source %v", cr.body["default_source"])
	}
	if _, ok := cr.body["sources"]; ok {
		t.Errorf("customer has sources without expand: %s", cr.raw)
	}
	card := getObj(t, base, "/v1/customers/"+cus+"/sources/"+visa)
	year := int64(time.Now().Year())
	if card["object"] != "card" || card["brand"] != "Visa" || card["last4"] != "4242" || card["funding"] != "credit" ||
		card["customer"] != cus || card["fingerprint"] == nil || num(card["exp_year"]) <= year-1 || num(card["exp_month"]) < 1 {
		t.Fatalf("card of tok_visa: %v", card)
	}
	if _, ok := card["account"]; ok {
		t.Errorf("a customer's card has account: %v", card)
	}

	mc := mustOK(t, post("/v1/customers/"+cus+"/sources", "source=tok_mastercard_debit&metadata[k]=v")).body
	if mc["brand"] != "MasterCard" || mc["funding"] != "debit" || mc["last4"] != "8210" || mc["customer"] != cus ||
		mc["metadata"].(map[string]any)["k"] != "v" || mc["fingerprint"] == card["fingerprint"] {
		t.Fatalf("card of tok_mastercard_debit: %v", mc)
	}
	master := mc["id"].(string)
	if ds := getObj(t, base, "/v1/customers/"+cus)["default_source"]; ds != visa {
		t.Errorf("a second card changed default_source to %v", ds)
	}

	ids := func(path string) []string {
		t.Helper()
		var out []string
		for _, x := range getObj(t, base, path)["data"].([]any) {
			out = append(out, x.(map[string]any)["id"].(string))
		}
		return out
	}
	for _, p := range []string{"/v1/customers/" + cus + "/sources", "/v1/customers/" + cus + "/sources?object=card", "/v1/customers/" + cus + "/cards"} {
		if got := ids(p); !slices.Equal(got, []string{master, visa}) {
			t.Errorf("GET %s: %v, want %v", p, got, []string{master, visa})
		}
	}
	if got := ids("/v1/customers/" + cus + "/sources?object=bank_account"); len(got) != 0 {
		t.Errorf("bank accounts: %v", got)
	}
	ex := getObj(t, base, "/v1/customers/"+cus+"?expand[]=sources&expand[]=default_source")
	if src, _ := ex["sources"].(map[string]any); src == nil || len(src["data"].([]any)) != 2 || src["url"] != "/v1/customers/"+cus+"/sources" {
		t.Errorf("expanded sources: %v", ex["sources"])
	}
	if ds, _ := ex["default_source"].(map[string]any); ds == nil || ds["id"] != visa || ds["object"] != "card" {
		t.Errorf("expanded default_source: %v", ex["default_source"])
	}

	// Another customer's card, or none, can't be the default.
	other := idOfResp(mustOK(t, post("/v1/customers", "source=tok_amex")))
	otherCard := cardID(t, getObj(t, base, "/v1/customers/"+other), "default_source")
	for _, bad := range []string{otherCard, "card_nope"} {
		r := post("/v1/customers/"+cus, "default_source="+bad)
		if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != "default_source" {
			t.Errorf("default_source=%s: %d %s", bad, r.status, r.raw)
		}
		if r := do(t, "GET", base+"/v1/customers/"+cus+"/sources/"+bad, key, ""); r.status != 404 {
			t.Errorf("GET another customer's card %s: %d %s", bad, r.status, r.raw)
		}
	}
	mustOK(t, post("/v1/customers/"+cus, "default_source="+master))

	// Deleting the default: the most recently added card left is the
	// default, then null.
	third := idOfResp(mustOK(t, post("/v1/customers/"+cus+"/cards", "source=tok_discover")))
	del := mustOK(t, do(t, "DELETE", base+"/v1/customers/"+cus+"/sources/"+master, key, "")).body
	if del["id"] != master || del["object"] != "card" || del["deleted"] != true || len(del) != 3 {
		t.Errorf("deleted card: %v", del)
	}
	if ds := getObj(t, base, "/v1/customers/"+cus)["default_source"]; ds != third {
		t.Errorf("default_source after deleting the default: %v, want the newest card %s", ds, third)
	}
	mustOK(t, do(t, "DELETE", base+"/v1/customers/"+cus+"/sources/"+visa, key, ""))
	mustOK(t, do(t, "DELETE", base+"/v1/customers/"+cus+"/sources/"+third, key, ""))
	if ds := getObj(t, base, "/v1/customers/"+cus)["default_source"]; ds != nil {
		t.Errorf("default_source after deleting every card: %v", ds)
	}
	if r := do(t, "GET", base+"/v1/customers/"+cus+"/sources/"+visa, key, ""); r.status != 404 {
		t.Errorf("deleted card retrieved: %d %s", r.status, r.raw)
	}
	if got := sourceEvents(t, base, cus); !slices.Equal(got, []string{"customer.created", "customer.updated from " + visa,
		"customer.updated from " + master, "customer.updated from " + third}) {
		t.Errorf("customer events: %v", got)
	}
	for id, want := range map[string][]string{visa: {"customer.source.created", "customer.source.deleted"},
		master: {"customer.source.created", "customer.source.deleted"}} {
		if got := sourceEvents(t, base, id); !slices.Equal(got, want) {
			t.Errorf("events of card %s: %v, want %v", id, got, want)
		}
	}

	// A deleted customer's cards go with it.
	mustOK(t, do(t, "DELETE", base+"/v1/customers/"+other, key, ""))
	if _, ok := e.Objects("cards")[otherCard]; ok {
		t.Errorf("card %s kept after its customer's deletion", otherCard)
	}
}

// source on a customer update saves the card as the new default and
// deletes the old default (the card it replaces): customer.source.created,
// customer.source.deleted, then customer.updated naming the old default.
func TestCustomerUpdateSourceReplacesDefault(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cu := mustOK(t, do(t, "POST", base+"/v1/customers", key, "source=tok_visa")).body
	cus, old := cu["id"].(string), cardID(t, cu, "default_source")
	kept := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers/"+cus+"/sources", key, "source=tok_jcb")))
	up := mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, key, "source=tok_amex&name=N")).body
	amex, _ := up["default_source"].(string)
	if !strings.HasPrefix(amex, "card_") || amex == old || up["name"] != "N" {
		t.Fatalf("update with source=tok_amex: %v", up)
	}
	if c := getObj(t, base, "/v1/customers/"+cus+"/sources/"+amex); c["brand"] != "American Express" || c["last4"] != "0005" {
		t.Errorf("card of tok_amex: %v", c)
	}
	if r := do(t, "GET", base+"/v1/customers/"+cus+"/sources/"+old, key, ""); r.status != 404 {
		t.Errorf("replaced default still there: %d %s", r.status, r.raw)
	}
	getObj(t, base, "/v1/customers/"+cus+"/sources/"+kept) // other cards stay
	evs := oldestFirst(getObj(t, base, "/v1/events?limit=3")["data"].([]any))
	var got []string
	for _, ev := range evs {
		got = append(got, ev["type"].(string)+" "+ev["data"].(map[string]any)["object"].(map[string]any)["id"].(string))
	}
	if want := []string{"customer.source.created " + amex, "customer.source.deleted " + old, "customer.updated " + cus}; !slices.Equal(got, want) {
		t.Errorf("events:\n got %v\nwant %v", got, want)
	}
	if prev := evs[2]["data"].(map[string]any)["previous_attributes"].(map[string]any); prev["default_source"] != old {
		t.Errorf("customer.updated previous_attributes: %v", prev)
	}
}

// Saving a card from a token or card number follows Stripe's table of
// declining test cards as attaching a payment method does: refused with
// the card error and nothing saved, except tok_chargeCustomerFail's card,
// which is saved and declines its charges; a number failing the Luhn check
// is incorrect_number, an unknown token resource_missing.
func TestSaveDecliningSource(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	for _, d := range declineRows {
		t.Run(d.name, func(t *testing.T) {
			cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "name=s")))
			for _, body := range []string{"source=" + d.tok, url.Values{"card[number]": {d.number}, "card[exp_month]": {"12"}, "card[exp_year]": {"2034"}}.Encode()} {
				r := do(t, "POST", base+"/v1/customers/"+cus+"/sources", key, body)
				if !d.attaches {
					d.checkSaveRefused(t, "POST /sources "+body, r)
					continue
				}
				card := idOfResp(mustOK(t, r))
				ch := do(t, "POST", base+"/v1/charges", key, "amount=700&currency=usd&customer="+cus+"&source="+card)
				if ch.status != 402 || errField(ch, "code") != d.code {
					t.Errorf("charge of the card of %s: %d %s", body, ch.status, ch.raw)
				}
			}
			l := getObj(t, base, "/v1/customers/"+cus+"/sources")["data"].([]any)
			cu := getObj(t, base, "/v1/customers/"+cus)
			if d.attaches != (len(l) == 2) || d.attaches != (cu["default_source"] != nil) {
				t.Errorf("after saving %s: %d cards, default_source %v", d.tok, len(l), cu["default_source"])
			}
		})
	}
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "name=s")))
	for body, code := range map[string]string{"source=tok_nope": "resource_missing",
		"card[number]=4242424242424241&card[exp_month]=1&card[exp_year]=2034": "incorrect_number"} {
		r := do(t, "POST", base+"/v1/customers/"+cus+"/sources", key, body)
		if r.status < 400 || r.status >= 500 || errField(r, "code") != code {
			t.Errorf("POST /sources %s: %d %s, want %s", body, r.status, r.raw, code)
		}
	}
	// A customer made with an unknown token is not made.
	if r := do(t, "POST", base+"/v1/customers", key, "email=nope%40example.com&source=tok_nope"); r.status != 400 || errField(r, "param") != "source" {
		t.Errorf("POST /v1/customers source=tok_nope: %d %s", r.status, r.raw)
	}
	if l := getObj(t, base, "/v1/customers?email=nope%40example.com")["data"].([]any); len(l) != 0 {
		t.Errorf("customer made with an unknown token: %v", l)
	}
	if l := getObj(t, base, "/v1/customers/"+cus+"/sources")["data"].([]any); len(l) != 0 {
		t.Errorf("refused sources saved: %v", l)
	}
}

// Payments with a customer's cards: a charge of a customer with no source
// takes its default_source, the card standing as the charge's
// payment_method; a payment intent takes a card id as payment_method; an
// invoice is paid with the default source; another customer's card is
// refused ("Customer … does not have a linked source with ID …"); a card
// saved from tok_createDispute is disputed once charged.
func TestSourcePayments(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path, body string) apiResp { t.Helper(); return do(t, "POST", base+path, key, body) }
	cu := mustOK(t, post("/v1/customers", "source=tok_visa")).body
	cus, card := cu["id"].(string), cardID(t, cu, "default_source")

	ch := mustOK(t, post("/v1/charges", "amount=1200&currency=usd&customer="+cus)).body
	if ch["payment_method"] != card || ch["status"] != "succeeded" || ch["customer"] != cus {
		t.Errorf("charge of the default source: %v %v %v", ch["payment_method"], ch["status"], ch["customer"])
	}
	pi := mustOK(t, post("/v1/payment_intents", "amount=1300&currency=usd&confirm=true&customer="+cus+"&payment_method="+card)).body
	if pi["status"] != "succeeded" || pi["payment_method"] != card {
		t.Errorf("intent paid with a card: %v %v", pi["status"], pi["payment_method"])
	}
	mustOK(t, post("/v1/invoiceitems", "customer="+cus+"&amount=1400&currency=usd"))
	inv := idOfResp(mustOK(t, post("/v1/invoices", "customer="+cus+"&pending_invoice_items_behavior=include")))
	paid := mustOK(t, post("/v1/invoices/"+inv+"/pay", "")).body
	if paid["status"] != "paid" {
		t.Fatalf("invoice paid with the default source: %v", paid["status"])
	}
	if ich := getObj(t, base, "/v1/charges/"+paid["charge"].(string)); ich["payment_method"] != card || num(ich["amount"]) != 1400 {
		t.Errorf("invoice's charge: %v %v", ich["payment_method"], ich["amount"])
	}

	other := idOfResp(mustOK(t, post("/v1/customers", "name=o")))
	for _, r := range []apiResp{post("/v1/charges", "amount=1000&currency=usd&customer="+other+"&source="+card),
		post("/v1/payment_intents", "amount=1000&currency=usd&confirm=true&customer="+other+"&payment_method="+card)} {
		if r.status != 400 || errField(r, "code") != "missing" || !strings.Contains(errField(r, "message"), "does not have a linked source") {
			t.Errorf("another customer's card: %d %s", r.status, r.raw)
		}
	}

	disp := idOfResp(mustOK(t, post("/v1/customers/"+other+"/sources", "source=tok_createDispute")))
	dch := idOfResp(mustOK(t, post("/v1/charges", "amount=2000&currency=usd&customer="+other+"&source="+disp)))
	if d := disputeOf(t, base, dch); d == nil || num(d["amount"]) != 2000 {
		t.Errorf("charge of tok_createDispute's card: dispute %v", d)
	}
	// A deleted card pays no more.
	mustOK(t, do(t, "DELETE", base+"/v1/customers/"+other+"/sources/"+disp, key, ""))
	if r := post("/v1/charges", "amount=1000&currency=usd&customer="+other+"&source="+disp); r.status != 400 {
		t.Errorf("charge of a deleted card: %d %s", r.status, r.raw)
	}
}

// A new card passed as source on a customer update retries the latest open
// invoice of its past_due subscriptions at once (spec, POST
// /v1/customers/{customer}), without counting as an automatic attempt;
// changing default_source does not.
func TestSourceRetriesPastDue(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	mustOK(t, k.post("/v1/customers/"+k.cus+"/sources", url.Values{"source": {"tok_visa"}}))
	sub := idOfResp(mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {k.price(1000)}})))
	if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "active" {
		t.Fatalf("subscription paid with the default source: %v", st)
	}
	failing := idOfResp(mustOK(t, k.post("/v1/customers/"+k.cus+"/sources", url.Values{"source": {"tok_chargeCustomerFail"}})))
	mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"default_source": {failing}}))
	k.advance(monthStart(1))
	if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "past_due" {
		t.Fatalf("renewal charged to tok_chargeCustomerFail's card: %v", st)
	}
	inv := k.cycleInvoices(sub)[0]["id"].(string)
	next := num(k.get("/v1/invoices/" + inv)["next_payment_attempt"])

	good := idOfResp(mustOK(t, k.post("/v1/customers/"+k.cus+"/sources", url.Values{"source": {"tok_mastercard"}})))
	mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"default_source": {good}}))
	k.checkDunned(inv, 1, next, true)

	mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"default_source": {failing}}))
	mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"source": {"tok_visa"}}))
	got := k.get("/v1/invoices/" + inv)
	if got["status"] != "paid" || num(got["attempt_count"]) != 1 {
		t.Fatalf("invoice after a new source: status %v attempt_count %v", got["status"], got["attempt_count"])
	}
	if ch := k.get("/v1/charges/" + got["charge"].(string)); ch["payment_method"] != k.get("/v1/customers/" + k.cus)["default_source"] {
		t.Errorf("retry charged %v, not the new source", ch["payment_method"])
	}
	if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "active" {
		t.Errorf("subscription after the retry paid: %v", st)
	}
}

// A subscription's default_source comes before its customer's default
// payment methods for its invoices ("the first available payment method in
// this list": subscription.default_payment_method, subscription.
// default_source, ...).
func TestSubscriptionDefaultSource(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	mustOK(t, k.post("/v1/customers/"+k.cus+"/sources", url.Values{"source": {"tok_visa"}}))
	fail := idOfResp(mustOK(t, k.post("/v1/customers/"+k.cus+"/sources", url.Values{"source": {"tok_chargeCustomerFail"}})))
	price := k.price(1000)
	for src, want := range map[string]string{"": "active", fail: "incomplete"} {
		q := url.Values{"customer": {k.cus}, "items[0][price]": {price}}
		if src != "" {
			q.Set("default_source", src)
		}
		if st := mustOK(t, k.post("/v1/subscriptions", q)).body["status"]; st != want {
			t.Errorf("subscription with default_source %q: %v, want %s", src, st, want)
		}
	}
}

// A customer request refused for its source (an unknown token) or its
// default_source (no card of the customer's) changes nothing: no coupon
// redeemed, no customer balance transaction, no event.
func TestRefusedSourceChangesNothing(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path, body string) apiResp { t.Helper(); return do(t, "POST", base+path, key, body) }
	coupon := idOfResp(mustOK(t, post("/v1/coupons", "percent_off=10&duration=forever")))
	cus := idOfResp(mustOK(t, post("/v1/customers", "name=a")))
	for _, tc := range []struct{ name, path, body, param string }{
		{"create with a coupon", "/v1/customers", "email=refused%40example.com&coupon=" + coupon + "&source=tok_nope", "source"},
		{"update with a coupon", "/v1/customers/" + cus, "coupon=" + coupon + "&source=tok_nope", "source"},
		{"update with a balance", "/v1/customers/" + cus, "balance=500&source=tok_nope", "source"},
		{"update with a balance and default_source", "/v1/customers/" + cus, "balance=500&default_source=card_nope", "default_source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events := len(e.Objects("events"))
			r := post(tc.path, tc.body)
			if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != tc.param {
				t.Fatalf("%s: %d %s", tc.body, r.status, r.raw)
			}
			if n := num(getObj(t, base, "/v1/coupons/"+coupon)["times_redeemed"]); n != 0 {
				t.Errorf("coupon redeemed %d times by a refused request", n)
			}
			if l := getObj(t, base, "/v1/customers/"+cus+"/balance_transactions")["data"].([]any); len(l) != 0 {
				t.Errorf("balance transactions of a refused update: %v", l)
			}
			if n := len(e.Objects("events")) - events; n != 0 {
				t.Errorf("%d events from a refused request", n)
			}
		})
	}
	if cu := getObj(t, base, "/v1/customers/"+cus); num(cu["balance"]) != 0 || cu["discount"] != nil {
		t.Errorf("customer after refused updates: balance %v discount %v", cu["balance"], cu["discount"])
	}
}

// A new source on the customer retries "the latest open invoice for the
// subscription" (spec, POST /v1/customers/{customer}) of a past_due one,
// which is not its latest invoice when that was voided: the renewal is
// paid with the new card and the subscription is active again.
func TestNewSourceRetriesLatestOpenInvoice(t *testing.T) {
	k, sub, renewal := pastDueOlderOpen(t)
	cu := mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"source": {"tok_visa"}})).body
	inv := k.get("/v1/invoices/" + renewal)
	if inv["status"] != "paid" {
		t.Fatalf("renewal after a new source: status %v attempt_count %v", inv["status"], inv["attempt_count"])
	}
	if ch := k.get("/v1/charges/" + inv["charge"].(string)); ch["payment_method"] != cu["default_source"] {
		t.Errorf("retry charged %v, not the new source %v", ch["payment_method"], cu["default_source"])
	}
	if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "active" {
		t.Errorf("subscription after its renewal was paid: %v", st)
	}
}

// A subscription's default_source "must belong to the customer associated
// with the subscription" (spec, POST /v1/subscriptions): an unknown card,
// another customer's or a non-card id is refused with nothing made or
// changed; the customer's own card is taken.
func TestSubscriptionDefaultSourceChecked(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path string, v url.Values) apiResp { t.Helper(); return do(t, "POST", base+path, key, v.Encode()) }
	cu := mustOK(t, post("/v1/customers", url.Values{"source": {"tok_visa"}})).body
	cus, own := cu["id"].(string), cardID(t, cu, "default_source")
	other := cardID(t, mustOK(t, post("/v1/customers", url.Values{"source": {"tok_amex"}})).body, "default_source")
	price := idOfResp(mustOK(t, post("/v1/prices", url.Values{"unit_amount": {"1000"}, "currency": {"usd"},
		"recurring[interval]": {"month"}, "product_data[name]": {"p"}})))
	sub := idOfResp(mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}})))
	subs := len(e.Objects("subscriptions"))
	for _, bad := range []string{"card_nope", other, "pm_card_visa", "tok_visa"} {
		r := post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "default_source": {bad}})
		if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != "default_source" {
			t.Errorf("create with default_source=%s: %d %v", bad, r.status, r.body["error"])
		}
		r = post("/v1/subscriptions/"+sub, url.Values{"default_source": {bad}})
		if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != "default_source" {
			t.Errorf("update with default_source=%s: %d %v", bad, r.status, r.body["error"])
		}
	}
	if n := len(e.Objects("subscriptions")); n != subs {
		t.Errorf("%d subscriptions made by refused creates", n-subs)
	}
	if ds := getObj(t, base, "/v1/subscriptions/"+sub)["default_source"]; ds != nil {
		t.Errorf("default_source after refused updates: %v", ds)
	}
	if r := mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "default_source": {own}})); r.body["default_source"] != own || r.body["status"] != "active" {
		t.Errorf("create with the customer's card: default_source %v status %v", r.body["default_source"], r.body["status"])
	}
	if r := mustOK(t, post("/v1/subscriptions/"+sub, url.Values{"default_source": {own}})); r.body["default_source"] != own {
		t.Errorf("update with the customer's card: default_source %v", r.body["default_source"])
	}
}

// pagedIDs pages path (a list, with its own query) limit at a time to the
// end, returning every id newest first.
func pagedIDs(t *testing.T, base, path string, limit int) []string {
	t.Helper()
	var ids []string
	after := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if after != "" {
			q.Set("starting_after", after)
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		page := getObj(t, base, path+sep+q.Encode())
		for _, x := range page["data"].([]any) {
			ids = append(ids, x.(map[string]any)["id"].(string))
		}
		if page["has_more"] != true {
			return ids
		}
		after = ids[len(ids)-1]
	}
}

// A card saved as a source is also a payment method, as Stripe's
// "Compatibility with legacy card objects" says (docs.stripe.com/payments/
// payment-methods/transitioning#compatibility: "You can retrieve all saved
// compatible payment instruments through the Payment Methods API", a card_
// id answered with object payment_method, "a different view of the same
// underlying object"), and Stripe's customer list shows it under its card_
// id (davidmerfield/blot#1889): retrieved by either retrieve endpoint, in
// the customer's list (both list endpoints, type card or none, not another
// type) among its payment methods, newest first, cursors taking either,
// following the card's updates and gone with it; Objects agrees.
func TestCardSourcesArePaymentMethods(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path, body string) apiResp { t.Helper(); return mustOK(t, do(t, "POST", base+path, key, body)) }

	cus := idOfResp(post("/v1/customers", "email=legacy%40example.com&source=tok_visa"))
	visa := cardID(t, getObj(t, base, "/v1/customers/"+cus), "default_source")
	master := idOfResp(post("/v1/customers/"+cus+"/sources", "source=tok_mastercard"))
	pm := idOfResp(post("/v1/payment_methods", "type=card&card[token]=tok_amex"))
	post("/v1/payment_methods/"+pm+"/attach", "customer="+cus)
	other := idOfResp(post("/v1/customers", "source=tok_discover"))
	otherCard := cardID(t, getObj(t, base, "/v1/customers/"+other), "default_source")

	want := []string{pm, master, visa}
	for _, path := range []string{
		"/v1/customers/" + cus + "/payment_methods",
		"/v1/customers/" + cus + "/payment_methods?type=card",
		"/v1/payment_methods?customer=" + cus,
		"/v1/payment_methods?customer=" + cus + "&type=card",
	} {
		for _, limit := range []int{1, 2, 10} {
			if got := pagedIDs(t, base, path, limit); !slices.Equal(got, want) {
				t.Errorf("%s, %d a page: %v, want %v", path, limit, got, want)
			}
		}
	}
	if got := pagedIDs(t, base, "/v1/customers/"+cus+"/payment_methods?type=sepa_debit", 10); len(got) != 0 {
		t.Errorf("type=sepa_debit lists %v", got)
	}
	// ending_before a card pages back toward the newer ones.
	back := getObj(t, base, "/v1/customers/"+cus+"/payment_methods?ending_before="+visa)
	if n := len(back["data"].([]any)); n != 2 {
		t.Errorf("ending_before the oldest card: %d, want 2: %v", n, back)
	}

	view := getObj(t, base, "/v1/payment_methods/"+visa)
	card, _ := view["card"].(map[string]any)
	checks, _ := card["checks"].(map[string]any)
	if view["id"] != visa || view["object"] != "payment_method" || view["type"] != "card" || view["customer"] != cus ||
		view["livemode"] != false || card["brand"] != "visa" || card["display_brand"] != "visa" || card["last4"] != "4242" ||
		card["funding"] != "credit" || card["fingerprint"] != "r40d4vOgg3VecDJF" || checks["cvc_check"] != "pass" {
		t.Errorf("payment method view of %s: %v", visa, view)
	}
	if c, ok := view["created"].(float64); !ok || c <= 0 {
		t.Errorf("view's created: %v", view["created"])
	}
	if v := getObj(t, base, "/v1/customers/"+cus+"/payment_methods/"+visa); !sameJSON(v, view) {
		t.Errorf("the customer's retrieve differs:\n%v\n%v", v, view)
	}
	if r := do(t, "GET", base+"/v1/customers/"+other+"/payment_methods/"+visa, key, ""); r.status != 404 {
		t.Errorf("another customer's card through its payment methods: %d %s", r.status, r.raw)
	}
	if ex := getObj(t, base, "/v1/payment_methods/"+visa+"?expand[]=customer"); ex["customer"].(map[string]any)["id"] != cus {
		t.Errorf("expand[]=customer: %v", ex["customer"])
	}

	// The card's changes show in the view; Objects holds what GET says.
	post("/v1/customers/"+cus+"/sources/"+visa, "name=Jenny+Rosen&address_zip=94107&exp_month=3&metadata[k]=v")
	view = getObj(t, base, "/v1/payment_methods/"+visa)
	bd := view["billing_details"].(map[string]any)
	if bd["name"] != "Jenny Rosen" || bd["address"].(map[string]any)["postal_code"] != "94107" ||
		view["card"].(map[string]any)["exp_month"] != float64(3) || view["metadata"].(map[string]any)["k"] != "v" {
		t.Errorf("view after the card's update: %v", view)
	}
	objs := e.Objects("payment_methods")
	var stored map[string]any
	if err := json.Unmarshal(objs[visa], &stored); err != nil || !sameJSON(stored, view) {
		t.Errorf("Objects(payment_methods)[%s] = %s, GET %v", visa, objs[visa], view)
	}
	if _, ok := objs[otherCard]; !ok {
		t.Errorf("Objects(payment_methods) lacks another customer's card %s", otherCard)
	}

	// (Changing the card through the Payment Methods API:
	// TestCardPMUpdate and the tests after it.)

	mustOK(t, do(t, "DELETE", base+"/v1/customers/"+cus+"/sources/"+master, key, ""))
	if r := do(t, "GET", base+"/v1/payment_methods/"+master, key, ""); r.status != 404 {
		t.Errorf("deleted card's view: %d %s", r.status, r.raw)
	}
	if got := pagedIDs(t, base, "/v1/customers/"+cus+"/payment_methods", 10); !slices.Equal(got, []string{pm, visa}) {
		t.Errorf("after deleting %s: %v", master, got)
	}
	if _, ok := e.Objects("payment_methods")[master]; ok {
		t.Errorf("Objects(payment_methods) still has the deleted card")
	}
	// A deleted customer's cards go with it.
	mustOK(t, do(t, "DELETE", base+"/v1/customers/"+other, key, ""))
	if _, ok := e.Objects("payment_methods")[otherCard]; ok {
		t.Errorf("Objects(payment_methods) still has a deleted customer's card")
	}
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// A saved card is a payment method of its customer (cardpm.go), so it
// can be the customer's invoice_settings.default_payment_method ("ID of a
// payment method that's attached to the customer"), which then pays its
// invoices; another customer's card is refused as another customer's
// payment method is, an unknown card as an unknown payment method.
func TestCardAsInvoiceDefaultPaymentMethod(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path, body string) string {
		t.Helper()
		return idOfResp(mustOK(t, do(t, "POST", base+path, key, body)))
	}
	cus := post("/v1/customers", "source=tok_visa")
	visa := cardID(t, getObj(t, base, "/v1/customers/"+cus), "default_source")
	master := post("/v1/customers/"+cus+"/sources", "source=tok_mastercard")
	other := post("/v1/customers", "source=tok_amex")
	otherCard := cardID(t, getObj(t, base, "/v1/customers/"+other), "default_source")

	const param = "invoice_settings[default_payment_method]"
	for _, tc := range []struct{ card, code string }{
		{otherCard, "resource_missing"},
		{"card_nope", "resource_missing"},
	} {
		r := do(t, "POST", base+"/v1/customers/"+cus, key, param+"="+tc.card)
		if r.status != 400 || errField(r, "param") != param || errField(r, "code") != tc.code {
			t.Errorf("default payment method %s: %d %s", tc.card, r.status, r.raw)
		}
	}

	// The second card, not the default source, becomes the invoices'
	// default, and pays them.
	r := mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, key, param+"="+master))
	if is, _ := r.body["invoice_settings"].(map[string]any); is["default_payment_method"] != master {
		t.Fatalf("invoice_settings after setting %s: %v", master, r.body["invoice_settings"])
	}
	prod := post("/v1/products", "name=p")
	price := post("/v1/prices", "product="+prod+"&unit_amount=500&currency=usd&recurring[interval]=month")
	sub := mustOK(t, do(t, "POST", base+"/v1/subscriptions", key, "customer="+cus+"&items[0][price]="+price+"&expand[]=latest_invoice.payment_intent"))
	inv, _ := sub.body["latest_invoice"].(map[string]any)
	pi, _ := inv["payment_intent"].(map[string]any)
	if inv["status"] != "paid" || pi["payment_method"] != master {
		t.Errorf("first invoice: status %v, paid with %v, want %s", inv["status"], pi["payment_method"], master)
	}
	if pi["payment_method"] == visa {
		t.Errorf("invoice paid with the default source %s, not invoice_settings' %s", visa, master)
	}
}

// lastEvents lists "type id" of the n newest events, oldest first.
func lastEvents(t *testing.T, base string, n int) []string {
	t.Helper()
	var out []string
	for _, ev := range oldestFirst(getObj(t, base, "/v1/events?limit=100")["data"].([]any)) {
		out = append(out, ev["type"].(string)+" "+ev["data"].(map[string]any)["object"].(map[string]any)["id"].(string))
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// An update of a saved card through the Payment Methods API is made on
// the card (Stripe's compatibility view "is a different view of the same
// underlying object"): billing_details' name and address, card's expiry
// and metadata show through the Sources API as the card's name,
// address_*, exp_month, exp_year and metadata, announced by the card's
// customer.source.updated; "" unsets; what a card can't hold (an email)
// and an invalid month are refused with the card unchanged.
func TestCardPMUpdate(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "source=tok_visa")))
	visa := cardID(t, getObj(t, base, "/v1/customers/"+cus), "default_source")

	r := mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+visa, key,
		"billing_details[name]=Jenny+Rosen&billing_details[address][city]=Paris&billing_details[address][postal_code]=75001"+
			"&card[exp_month]=7&card[exp_year]=2031&metadata[k]=v"))
	if r.body["id"] != visa || r.body["object"] != "payment_method" || r.body["customer"] != cus {
		t.Fatalf("update's answer: %v", r.body)
	}
	if v := getObj(t, base, "/v1/payment_methods/"+visa); !sameJSON(v, r.body) {
		t.Errorf("update's answer differs from the retrieve:\n%v\n%v", r.body, v)
	}
	card := getObj(t, base, "/v1/customers/"+cus+"/sources/"+visa)
	md, _ := card["metadata"].(map[string]any)
	if card["name"] != "Jenny Rosen" || card["address_city"] != "Paris" || card["address_zip"] != "75001" ||
		card["exp_month"] != float64(7) || card["exp_year"] != float64(2031) || md["k"] != "v" || card["last4"] != "4242" {
		t.Errorf("card after the update through the Payment Methods API: %v", card)
	}
	if got, want := lastEvents(t, base, 1), []string{"customer.source.updated " + visa}; !slices.Equal(got, want) {
		t.Errorf("events of the update: %v, want %v", got, want)
	}
	ev := getObj(t, base, "/v1/events?limit=1")["data"].([]any)[0].(map[string]any)
	if prev, _ := ev["data"].(map[string]any)["previous_attributes"].(map[string]any); prev == nil || prev["exp_month"] == nil || prev["name"] != nil {
		t.Errorf("previous_attributes: %v (want the old exp_month, name null)", prev)
	}

	// "" unsets; metadata keys merge.
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+visa, key, "billing_details[name]=&billing_details[address]=&metadata[j]=w"))
	card = getObj(t, base, "/v1/customers/"+cus+"/sources/"+visa)
	md, _ = card["metadata"].(map[string]any)
	if card["name"] != nil || card["address_city"] != nil || card["address_zip"] != nil || md["k"] != "v" || md["j"] != "w" {
		t.Errorf("card after unsetting name and address: %v", card)
	}

	before := getObj(t, base, "/v1/customers/"+cus+"/sources/"+visa)
	for _, tc := range []struct {
		body   string
		status int
		param  string
	}{
		{"billing_details[email]=a%40b.co", 400, "billing_details[email]"},
		{"card[exp_month]=13&metadata[k]=changed", 402, "exp_month"},
	} {
		r := do(t, "POST", base+"/v1/payment_methods/"+visa, key, tc.body)
		if r.status != tc.status || errField(r, "param") != tc.param {
			t.Errorf("%s: %d %s, want %d on %s", tc.body, r.status, r.raw, tc.status, tc.param)
		}
	}
	if after := getObj(t, base, "/v1/customers/"+cus+"/sources/"+visa); !sameJSON(after, before) {
		t.Errorf("refused updates changed the card:\n%v\n%v", before, after)
	}
}

// Detaching a saved card through the Payment Methods API deletes it, as
// Stripe does (dj-stripe/dj-stripe#967, #1013): the answer is the payment
// method with customer null, then both APIs answer 404; the default
// source goes to the newest card left; the events are the card's
// customer.source.deleted, payment_method.detached of its id, then
// customer.updated; a second detach is 404.
func TestCardPMDetach(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "source=tok_visa")))
	visa := cardID(t, getObj(t, base, "/v1/customers/"+cus), "default_source")
	master := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers/"+cus+"/sources", key, "source=tok_mastercard")))

	view := getObj(t, base, "/v1/payment_methods/"+visa)
	r := mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+visa+"/detach", key, ""))
	if r.body["id"] != visa || r.body["object"] != "payment_method" || r.body["customer"] != nil {
		t.Fatalf("detach's answer: %v", r.body)
	}
	view["customer"] = nil
	if !sameJSON(r.body, view) {
		t.Errorf("detach's answer is not the view with customer null:\n%v\n%v", r.body, view)
	}
	for _, p := range []string{"/v1/payment_methods/" + visa, "/v1/customers/" + cus + "/sources/" + visa} {
		if g := do(t, "GET", base+p, key, ""); g.status != 404 {
			t.Errorf("GET %s after the detach: %d %s", p, g.status, g.raw)
		}
	}
	if ds := getObj(t, base, "/v1/customers/"+cus)["default_source"]; ds != master {
		t.Errorf("default_source after detaching the default: %v, want %s", ds, master)
	}
	if got := pagedIDs(t, base, "/v1/customers/"+cus+"/payment_methods", 10); !slices.Equal(got, []string{master}) {
		t.Errorf("customer's payment methods after the detach: %v", got)
	}
	for _, table := range []string{"cards", "payment_methods"} {
		if _, ok := e.Objects(table)[visa]; ok {
			t.Errorf("Objects(%s) still holds the detached card", table)
		}
	}
	want := []string{"customer.source.deleted " + visa, "payment_method.detached " + visa, "customer.updated " + cus}
	if got := lastEvents(t, base, 3); !slices.Equal(got, want) {
		t.Errorf("events of the detach:\n got %v\nwant %v", got, want)
	}
	if g := do(t, "POST", base+"/v1/payment_methods/"+visa+"/detach", key, ""); g.status != 404 || errField(g, "code") != "resource_missing" {
		t.Errorf("second detach: %d %s", g.status, g.raw)
	}

	// The last card: default_source null.
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+master+"/detach", key, ""))
	if ds := getObj(t, base, "/v1/customers/"+cus)["default_source"]; ds != nil {
		t.Errorf("default_source after detaching every card: %v", ds)
	}
}

// Attaching a saved card to its own customer changes nothing (the view,
// no event); to another customer it is refused as for any payment method
// attached elsewhere, the card staying its customer's.
func TestCardPMAttach(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "source=tok_visa")))
	visa := cardID(t, getObj(t, base, "/v1/customers/"+cus), "default_source")
	other := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "email=o%40example.com")))
	events := lastEvents(t, base, 100)

	r := mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+visa+"/attach", key, "customer="+cus))
	if v := getObj(t, base, "/v1/payment_methods/"+visa); !sameJSON(v, r.body) || r.body["customer"] != cus {
		t.Errorf("attach to its own customer: %v, retrieve %v", r.body, v)
	}
	if g := do(t, "POST", base+"/v1/payment_methods/"+visa+"/attach", key, "customer="+other); g.status != 400 || errField(g, "type") != "invalid_request_error" {
		t.Errorf("attach to another customer: %d %s", g.status, g.raw)
	}
	if g := do(t, "POST", base+"/v1/payment_methods/"+visa+"/attach", key, "customer=cus_nope"); g.status != 400 || errField(g, "code") != "resource_missing" {
		t.Errorf("attach to an unknown customer: %d %s", g.status, g.raw)
	}
	if c := getObj(t, base, "/v1/customers/"+cus+"/sources/"+visa); c["customer"] != cus {
		t.Errorf("card's customer after the attaches: %v", c["customer"])
	}
	if got := lastEvents(t, base, 100); !slices.Equal(got, events) {
		t.Errorf("attaches sent events: %v", got[len(events):])
	}
}

// TestCardPMDetachReplay: a saved card's detach through the Payment
// Methods API replayed with its Idempotency-Key answers the first answer
// (Idempotent-Replayed), not the 404 of a second detach, and sends no
// event again.
func TestCardPMDetachReplay(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "source=tok_visa")))
	visa := cardID(t, getObj(t, base, "/v1/customers/"+cus), "default_source")

	first := mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+visa+"/detach", key, "", "Idempotency-Key", "detach-1"))
	events := lastEvents(t, base, 100)
	again := do(t, "POST", base+"/v1/payment_methods/"+visa+"/detach", key, "", "Idempotency-Key", "detach-1")
	if again.status != 200 || again.raw != first.raw || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replayed detach: %d %q %s, want the first answer %s", again.status, again.header.Get("Idempotent-Replayed"), again.raw, first.raw)
	}
	if got := lastEvents(t, base, 100); !slices.Equal(got, events) {
		t.Errorf("events after the replay:\n got %v\nwant %v", got, events)
	}
}

// TestCardPMDetachRacesCharge: detaching saved cards through the
// Payment Methods API while they are charged and the customer's payment
// methods listed is race-free (go test -race), and each charge either
// used its card before the detach or was refused as Stripe refuses a
// deleted source; the cards end deleted.
func TestCardPMDetachRacesCharge(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "")))
	var cards []string
	for range 4 {
		cards = append(cards, idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers/"+cus+"/sources", key, "source=tok_visa"))))
	}
	var wg sync.WaitGroup
	charges := make([]apiResp, len(cards))
	for i, card := range cards {
		wg.Add(3)
		go func() {
			defer wg.Done()
			if r := do(t, "POST", base+"/v1/payment_methods/"+card+"/detach", key, ""); r.status != 200 {
				t.Errorf("detach %s: %d %s", card, r.status, r.raw)
			}
		}()
		go func() {
			defer wg.Done()
			charges[i] = do(t, "POST", base+"/v1/charges", key, url.Values{"amount": {"500"}, "currency": {"usd"}, "customer": {cus}, "source": {card}}.Encode())
		}()
		go func() {
			defer wg.Done()
			if r := do(t, "GET", base+"/v1/customers/"+cus+"/payment_methods", key, ""); r.status != 200 {
				t.Errorf("list: %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	for i, r := range charges {
		switch {
		case r.status == 200:
			if src, _ := r.body["source"].(map[string]any); src["id"] != cards[i] {
				t.Errorf("charge of %s: source %v", cards[i], r.body["source"])
			}
		case r.status != 400 || errField(r, "code") != "resource_missing":
			t.Errorf("charge of %s racing its detach: %d %s", cards[i], r.status, r.raw)
		}
	}
	if got := pagedIDs(t, base, "/v1/customers/"+cus+"/payment_methods", 10); len(got) != 0 {
		t.Errorf("payment methods after detaching every card: %v", got)
	}
	if ds := getObj(t, base, "/v1/customers/"+cus)["default_source"]; ds != nil {
		t.Errorf("default_source after detaching every card: %v", ds)
	}
}

// Detaching the payment method that is a customer's
// invoice_settings.default_payment_method clears it (customer.updated,
// the old one in previous_attributes); a subscription's
// default_payment_method keeps pointing at it. Deleting a saved card that
// is the customer's invoice default clears it alike.
func TestDetachClearsCustomerDefault(t *testing.T) {
	base, cus, _, price, post := defaultPMSetup(t)
	pm := attachCard(t, base, cus, "pm_card_visa")
	mustOK(t, post("/v1/customers/"+cus, url.Values{"invoice_settings[default_payment_method]": {pm}}))
	sub := idOfResp(mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "default_payment_method": {pm}})))
	mustOK(t, post("/v1/payment_methods/"+pm+"/detach", nil))
	if got := at(getObj(t, base, "/v1/customers/"+cus), "invoice_settings.default_payment_method"); got != nil {
		t.Errorf("customer's default after its detach: %v", got)
	}
	updated := func(id string) bool {
		for _, ev := range getObj(t, base, "/v1/events?type=customer.updated")["data"].([]any) {
			if at(ev, "data.object.id") == cus && at(ev, "data.previous_attributes.invoice_settings.default_payment_method") == id &&
				at(ev, "data.object.invoice_settings.default_payment_method") == nil {
				return true
			}
		}
		return false
	}
	if !updated(pm) {
		t.Errorf("no customer.updated clearing invoice_settings.default_payment_method %s", pm)
	}
	if got := getObj(t, base, "/v1/subscriptions/"+sub)["default_payment_method"]; got != pm {
		t.Errorf("subscription's default_payment_method after the detach: %v, want %s kept", got, pm)
	}

	cu := mustOK(t, post("/v1/customers/"+cus+"/sources", url.Values{"source": {"tok_visa"}})).body
	card := cu["id"].(string)
	mustOK(t, post("/v1/customers/"+cus, url.Values{"invoice_settings[default_payment_method]": {card}}))
	mustOK(t, do(t, "DELETE", base+"/v1/customers/"+cus+"/sources/"+card, "sk_test_x", ""))
	if got := at(getObj(t, base, "/v1/customers/"+cus), "invoice_settings.default_payment_method"); got != nil {
		t.Errorf("customer's default after its card was deleted: %v", got)
	}
	if !updated(card) {
		t.Errorf("no customer.updated clearing invoice_settings.default_payment_method %s", card)
	}
}
