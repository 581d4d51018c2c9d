package emulator_test

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// invoiceBalance is an invoice's balance fields as a test expects them.
type invoiceBalance struct {
	total, starting, ending, due int64
}

// checkBalance compares inv's balance fields with want (ending_balance
// must be set: inv is finalized).
func checkBalance(t *testing.T, what string, inv map[string]any, want invoiceBalance) {
	t.Helper()
	if inv["ending_balance"] == nil {
		t.Errorf("%s %v: ending_balance null after finalization", what, inv["id"])
	}
	got := invoiceBalance{num(inv["total"]), num(inv["starting_balance"]), num(inv["ending_balance"]), num(inv["amount_due"])}
	if got != want {
		t.Errorf("%s %v: total/starting/ending/amount_due %v, want %v", what, inv["id"], got, want)
	}
	if rem := num(inv["amount_due"]) - num(inv["amount_paid"]); num(inv["amount_remaining"]) != rem {
		t.Errorf("%s %v: amount_remaining %v, want %d", what, inv["id"], inv["amount_remaining"], rem)
	}
}

// balanceTxns lists customer cus's balance transactions, oldest first.
func balanceTxns(t *testing.T, get func(string) map[string]any, cus string) []map[string]any {
	t.Helper()
	data := get("/v1/customers/" + cus + "/balance_transactions?limit=100")["data"].([]any)
	out := make([]map[string]any, 0, len(data))
	for i := len(data) - 1; i >= 0; i-- {
		out = append(out, data[i].(map[string]any))
	}
	return out
}

// checkLedger checks that customer cus's transactions are a ledger ending
// at its balance, the last ones of types and amounts want ("type amount
// invoice-or-empty").
func checkLedger(t *testing.T, get func(string) map[string]any, cus string, want ...string) {
	t.Helper()
	txns := balanceTxns(t, get, cus)
	var b int64
	var got []string
	for _, x := range txns {
		b += num(x["amount"])
		if num(x["ending_balance"]) != b || x["customer"] != cus || x["object"] != "customer_balance_transaction" {
			t.Errorf("transaction %v: ending_balance %v after a ledger sum of %d (customer %v)", x["id"], x["ending_balance"], b, x["customer"])
		}
		inv, _ := x["invoice"].(string)
		got = append(got, fmt.Sprintf("%v %d %s", x["type"], num(x["amount"]), inv))
	}
	if bal := num(get("/v1/customers/" + cus)["balance"]); bal != b {
		t.Errorf("customer balance %d, its transactions sum to %d", bal, b)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("balance transactions\n got  %q\n want %q", got, want)
	}
}

// A downgrade whose prorations credit more than they debit: the invoice
// that bills them (always_invoice at once, create_prorations with the
// renewal) is due 0 and its negative total goes to the customer's balance
// (starting_balance 0, ending_balance the total, an applied_to_invoice
// transaction, customer.updated); the upcoming invoice shows the credit
// and the next renewals use it up (docs.stripe.com/billing/customer/balance:
// "Prorations from downgrading a subscription can indirectly create
// credits to reduce the amount due on the next invoice"; "The invoice
// balance automatically applies toward the next invoice finalized").
func TestDowngradeCreditsBalance(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	// January 2020, 30 of 31 days left: -3000×30/31 and 1000×30/31.
	const credit = -2903 + 968
	for _, behavior := range []string{"always_invoice", "create_prorations"} {
		t.Run(behavior, func(t *testing.T) {
			k := newFrozenClock(t, base)
			s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {k.price(1000)},
				"items[0][quantity]": {"3"}, "default_payment_method": {k.card("pm_card_visa")}}))
			sub := idOfResp(s)
			item := s.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
			k.advance(clockFrozenAt + daySeconds)
			evs := k.events(func() {
				mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"1"},
					"proration_behavior": {behavior}}))
			})
			up := k.get("/v1/invoices/upcoming?customer=" + k.cus)
			var renewals []invoiceBalance
			var want []string
			if behavior == "always_invoice" {
				inv := k.get("/v1/invoices/" + k.get("/v1/subscriptions/" + sub)["latest_invoice"].(string))
				checkBalance(t, "subscription_update invoice", inv, invoiceBalance{credit, 0, credit, 0})
				if inv["status"] != "paid" || num(inv["amount_paid"]) != 0 || inv["payment_intent"] != nil {
					t.Errorf("credit invoice: status %v, amount_paid %v, payment_intent %v", inv["status"], inv["amount_paid"], inv["payment_intent"])
				}
				want = append(want, "applied_to_invoice "+fmt.Sprint(credit)+" "+idOf(inv))
				checkLedger(t, k.get, k.cus, want...)
				updated := false
				for _, ev := range evs {
					d := ev["data"].(map[string]any)
					if ev["type"] == "customer.updated" && num(d["object"].(map[string]any)["balance"]) == credit {
						prev, _ := d["previous_attributes"].(map[string]any)
						updated = prev != nil && prev["balance"] != nil && num(prev["balance"]) == 0
					}
				}
				if !updated {
					t.Error("no customer.updated with the credited balance (previous balance 0)")
				}
				// The renewal of 1000 takes 1000 of the credit, the next
				// one the rest.
				renewals = []invoiceBalance{{1000, credit, credit + 1000, 0}, {1000, credit + 1000, 0, 2000 + credit}}
				if want := (invoiceBalance{1000, credit, 0, 0}); num(up["total"]) != want.total || num(up["starting_balance"]) != want.starting ||
					num(up["amount_due"]) != want.due || up["ending_balance"] != nil {
					t.Errorf("upcoming invoice: total %v starting_balance %v amount_due %v ending_balance %v, want %v and null",
						up["total"], up["starting_balance"], up["amount_due"], up["ending_balance"], want)
				}
			} else {
				checkLedger(t, k.get, k.cus)
				// The renewal bills the prorations with the new period.
				renewals = []invoiceBalance{{1000 + credit, 0, 1000 + credit, 0}, {1000, 1000 + credit, 0, 2000 + credit}}
				if num(up["total"]) != 1000+credit || num(up["starting_balance"]) != 0 || num(up["amount_due"]) != 0 {
					t.Errorf("upcoming invoice: total %v starting_balance %v amount_due %v, want %d 0 0", up["total"], up["starting_balance"], up["amount_due"], 1000+credit)
				}
			}
			k.advance(monthStart(1) + daySeconds)
			k.advance(monthStart(2) + daySeconds)
			cycles := k.cycleInvoices(sub)
			if len(cycles) != 2 {
				t.Fatalf("%d renewal invoices, want 2", len(cycles))
			}
			for i, inv := range cycles {
				checkBalance(t, fmt.Sprintf("renewal %d", i+1), inv, renewals[i])
				if inv["status"] != "paid" || num(inv["amount_paid"]) != renewals[i].due {
					t.Errorf("renewal %d: status %v amount_paid %v, want paid %d", i+1, inv["status"], inv["amount_paid"], renewals[i].due)
				}
				want = append(want, fmt.Sprintf("applied_to_invoice %d %s", renewals[i].ending-renewals[i].starting, idOf(inv)))
			}
			checkLedger(t, k.get, k.cus, want...)
		})
	}
}

func idOf(m map[string]any) string { s, _ := m["id"].(string); return s }

// POST /v1/customers with balance= records an initial transaction, an
// update an adjustment of the difference; the balance transaction
// endpoints add adjustments (setting a currency the customer has none
// of), retrieve and update only description and metadata, and refuse
// another currency and another customer's transaction. A draft invoice
// shows the balance as it is now and finalizing applies it.
func TestCustomerBalanceEndpoints(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp { return do(t, "POST", base+path, "sk_test_x", v.Encode()) }
	get := func(path string) map[string]any { return mustOK(t, do(t, "GET", base+path, "sk_test_x", "")).body }
	cus := idOfResp(mustOK(t, post("/v1/customers", url.Values{"balance": {"-500"}})))
	other := idOfResp(mustOK(t, post("/v1/customers", url.Values{"name": {"o"}})))
	checkLedger(t, get, cus, "initial -500 ")
	checkLedger(t, get, other)

	mustOK(t, post("/v1/customers/"+cus, url.Values{"balance": {"200"}}))
	checkLedger(t, get, cus, "initial -500 ", "adjustment 700 ")

	x := mustOK(t, post("/v1/customers/"+cus+"/balance_transactions", url.Values{"amount": {"-300"}, "currency": {"usd"}, "description": {"goodwill"}})).body
	if x["type"] != "adjustment" || num(x["ending_balance"]) != -100 || x["description"] != "goodwill" || x["currency"] != "usd" {
		t.Errorf("created transaction: %v", x)
	}
	if cu := get("/v1/customers/" + cus); num(cu["balance"]) != -100 || cu["currency"] != "usd" {
		t.Errorf("customer after the transaction: balance %v currency %v, want -100 usd", cu["balance"], cu["currency"])
	}
	path := "/v1/customers/" + cus + "/balance_transactions/" + idOf(x)
	u := mustOK(t, post(path, url.Values{"description": {"renamed"}, "metadata[k]": {"v"}})).body
	if u["description"] != "renamed" || u["metadata"].(map[string]any)["k"] != "v" || num(u["amount"]) != -300 {
		t.Errorf("updated transaction: %v", u)
	}
	if r := post(path, url.Values{"amount": {"5"}}); r.status != 400 {
		t.Errorf("amount of a transaction updated: %d %s", r.status, r.raw)
	}
	if g := get(path); g["description"] != "renamed" {
		t.Errorf("retrieved transaction: %v", g)
	}
	for _, p := range []string{"/v1/customers/" + other + "/balance_transactions/" + idOf(x), "/v1/customers/cus_missing/balance_transactions"} {
		if r := do(t, "GET", base+p, "sk_test_x", ""); r.status != 404 {
			t.Errorf("GET %s: %d %s", p, r.status, r.raw)
		}
	}
	if r := post("/v1/customers/"+cus+"/balance_transactions", url.Values{"amount": {"-1"}, "currency": {"eur"}}); r.status != 400 || errField(r, "param") != "currency" {
		t.Errorf("a transaction in another currency: %d %s", r.status, r.raw)
	}
	checkLedger(t, get, cus, "initial -500 ", "adjustment 700 ", "adjustment -300 ")

	// A draft follows the balance; finalizing applies it.
	mustOK(t, post("/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"1000"}, "currency": {"usd"}}))
	inv := idOfResp(mustOK(t, post("/v1/invoices", url.Values{"customer": {cus}, "pending_invoice_items_behavior": {"include"}})))
	if d := get("/v1/invoices/" + inv); num(d["starting_balance"]) != -100 || num(d["amount_due"]) != 900 || d["ending_balance"] != nil {
		t.Errorf("draft: starting_balance %v amount_due %v ending_balance %v, want -100 900 null", d["starting_balance"], d["amount_due"], d["ending_balance"])
	}
	mustOK(t, post("/v1/customers/"+cus+"/balance_transactions", url.Values{"amount": {"-2000"}, "currency": {"usd"}}))
	if d := get("/v1/invoices/" + inv); num(d["starting_balance"]) != -2100 || num(d["amount_due"]) != 0 {
		t.Errorf("draft after a credit: starting_balance %v amount_due %v, want -2100 0", d["starting_balance"], d["amount_due"])
	}
	f := mustOK(t, post("/v1/invoices/"+inv+"/finalize", nil)).body
	checkBalance(t, "finalized", f, invoiceBalance{1000, -2100, -1100, 0})
	if f["status"] != "paid" {
		t.Errorf("an invoice the balance covers: %v", f["status"])
	}
	checkLedger(t, get, cus, "initial -500 ", "adjustment 700 ", "adjustment -300 ", "adjustment -2000 ", "applied_to_invoice 1000 "+inv)
}

// Voiding an invoice gives back the balance it applied, credit or debit
// (changelog 2019-12-03, "Customer balances applied to all invoices are
// now debited or credited back to the customer when voided"), with an
// unapplied_from_invoice transaction.
func TestVoidReturnsBalance(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp { return do(t, "POST", base+path, "sk_test_x", v.Encode()) }
	get := func(path string) map[string]any { return mustOK(t, do(t, "GET", base+path, "sk_test_x", "")).body }
	for _, tc := range []struct {
		balance int64
		want    invoiceBalance
	}{
		{-300, invoiceBalance{1000, -300, 0, 700}},
		{-1500, invoiceBalance{1000, -1500, -500, 0}}, // paid by the credit: can't be voided
		{500, invoiceBalance{1000, 500, 0, 1500}},
	} {
		t.Run(fmt.Sprint(tc.balance), func(t *testing.T) {
			cus := idOfResp(mustOK(t, post("/v1/customers", url.Values{"balance": {fmt.Sprint(tc.balance)}})))
			mustOK(t, post("/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"1000"}, "currency": {"usd"}}))
			inv := idOfResp(mustOK(t, post("/v1/invoices", url.Values{"customer": {cus}, "pending_invoice_items_behavior": {"include"},
				"collection_method": {"send_invoice"}, "days_until_due": {"10"}})))
			f := mustOK(t, post("/v1/invoices/"+inv+"/finalize", nil)).body
			checkBalance(t, "finalized", f, tc.want)
			applied := tc.want.ending - tc.want.starting
			initial := fmt.Sprintf("initial %d ", tc.balance)
			checkLedger(t, get, cus, initial, fmt.Sprintf("applied_to_invoice %d %s", applied, inv))
			r := post("/v1/invoices/"+inv+"/void", nil)
			if tc.want.due == 0 {
				if r.status != 400 {
					t.Fatalf("void of a paid invoice: %d %s", r.status, r.raw)
				}
				checkLedger(t, get, cus, initial, fmt.Sprintf("applied_to_invoice %d %s", applied, inv))
				return
			}
			mustOK(t, r)
			checkLedger(t, get, cus, initial, fmt.Sprintf("applied_to_invoice %d %s", applied, inv), fmt.Sprintf("unapplied_from_invoice %d %s", -applied, inv))
			if b := num(get("/v1/customers/" + cus)["balance"]); b != tc.balance {
				t.Errorf("balance after the void %d, want %d", b, tc.balance)
			}
		})
	}
}

// A new subscription's first invoice takes the customer's pending invoice
// items of no subscription ("These one-off items are added to the next
// invoice created for this customer. To make sure this is added to a
// specific subscription, use the optional subscription parameter",
// docs.stripe.com/billing/invoices/subscription), not those of another
// subscription, which its next invoice takes.
func TestFirstInvoiceTakesPendingItems(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	first := k.Subscribe(k.cus, k.price(1000), nil)
	loose := idOfResp(mustOK(t, k.post("/v1/invoiceitems", url.Values{"customer": {k.cus}, "amount": {"250"}, "currency": {"usd"}})))
	tied := idOfResp(mustOK(t, k.post("/v1/invoiceitems", url.Values{"customer": {k.cus}, "amount": {"400"}, "currency": {"usd"}, "subscription": {first}})))
	if s := k.get("/v1/invoiceitems/" + tied)["subscription"]; s != first {
		t.Errorf("invoice item created with subscription=%s: subscription %v", first, s)
	}
	s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {k.price(700)},
		"default_payment_method": {k.card("pm_card_visa")}, "expand[0]": {"latest_invoice"}}))
	inv := s.body["latest_invoice"].(map[string]any)
	if num(inv["total"]) != 950 || num(inv["amount_paid"]) != 950 || inv["status"] != "paid" {
		t.Errorf("first invoice: total %v amount_paid %v status %v, want 950 paid", inv["total"], inv["amount_paid"], inv["status"])
	}
	var items []string
	for _, l := range k.get("/v1/invoices/" + idOf(inv) + "/lines")["data"].([]any) {
		if ii, _ := l.(map[string]any)["invoice_item"].(string); ii != "" {
			items = append(items, ii)
		}
	}
	if fmt.Sprint(items) != fmt.Sprint([]string{loose}) {
		t.Errorf("first invoice's invoice item lines %v, want [%s]", items, loose)
	}
	if got := k.get("/v1/invoiceitems/" + loose)["invoice"]; got != idOf(inv) {
		t.Errorf("the pending item's invoice %v, want %s", got, idOf(inv))
	}
	if got := k.get("/v1/invoiceitems/" + tied)["invoice"]; got != nil {
		t.Errorf("another subscription's item went on invoice %v", got)
	}
	if up := k.get("/v1/invoices/upcoming?subscription=" + first); num(up["total"]) != 1400 {
		t.Errorf("upcoming invoice of the first subscription: total %v, want 1000 + its item 400", up["total"])
	}
	k.advance(monthStart(1) + daySeconds)
	if got := k.get("/v1/invoiceitems/" + tied)["invoice"]; got == nil {
		t.Error("the first subscription's renewal left its item pending")
	}
}

// payment_behavior=error_if_incomplete asks what the first invoice will
// be due: its pending items count, and so does the customer's balance.
func TestFirstPaymentCountsItemsAndBalance(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	free := k.price(0)
	ii := idOfResp(mustOK(t, k.post("/v1/invoiceitems", url.Values{"customer": {k.cus}, "amount": {"500"}, "currency": {"usd"}})))
	r := k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {free}, "payment_behavior": {"error_if_incomplete"}})
	if r.status != 402 {
		t.Errorf("a free price with a pending item of 500 and no payment method: %d %s", r.status, r.raw)
	}
	if got := k.get("/v1/invoiceitems/" + ii)["invoice"]; got != nil {
		t.Errorf("the refused subscription billed the pending item on %v", got)
	}
	if n := len(k.get("/v1/subscriptions?status=all&customer=" + k.cus)["data"].([]any)); n != 0 {
		t.Errorf("%d subscriptions after a refused create", n)
	}

	c := newFrozenClock(t, base)
	mustOK(t, c.post("/v1/customers/"+c.cus+"/balance_transactions", url.Values{"amount": {"-2000"}, "currency": {"usd"}}))
	s := mustOK(t, c.post("/v1/subscriptions", url.Values{"customer": {c.cus}, "items[0][price]": {c.price(1000)},
		"payment_behavior": {"error_if_incomplete"}, "expand[0]": {"latest_invoice"}}))
	inv := s.body["latest_invoice"].(map[string]any)
	if s.body["status"] != "active" || inv["status"] != "paid" {
		t.Errorf("a first invoice the credit covers: subscription %v, invoice %v", s.body["status"], inv["status"])
	}
	checkBalance(t, "first invoice", inv, invoiceBalance{1000, -2000, -1000, 0})
}

// TestClockLedgerInOrder: a customer on a test clock keeps one
// ledger on the clock's time. A credit added through the balance
// transaction endpoint, the renewal the credit partly covers (dunned
// for the rest: every retry charges only the amount due after the
// credit), the void of that invoice after the dunning ended, and an
// adjustment by a customer update list in the order they happened, each
// ending_balance the sum of the amounts before it. Before, the endpoint's
// and the update's transactions and the void's were dated on the
// emulator's clock (years after the clock's), so the list, newest first,
// put them ahead of the renewal's applied_to_invoice.
func TestClockLedgerInOrder(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub := k.failingSub("pm_card_chargeCustomerFail")
	x := mustOK(t, k.post("/v1/customers/"+k.cus+"/balance_transactions", url.Values{"amount": {"-300"}, "currency": {"usd"}})).body
	if num(x["created"]) != clockFrozenAt {
		t.Errorf("balance transaction of a clock's customer created at %v, want the clock's time %d", num(x["created"]), clockFrozenAt)
	}
	renewal := monthStart(1)
	k.advance(renewal)
	inv := k.cycleInvoices(sub)[0]
	checkBalance(t, "renewal", inv, invoiceBalance{1000, -300, 0, 700})
	k.advance(renewal + 14*daySeconds)
	failed := 0
	for _, ch := range k.get("/v1/charges?limit=100&customer=" + k.cus)["data"].([]any) {
		if c := ch.(map[string]any); c["invoice"] == idOf(inv) {
			if c["status"] != "failed" || num(c["amount"]) != 700 {
				t.Errorf("charge of the renewal: %v %v, want failed 700", c["status"], c["amount"])
			}
			failed++
		}
	}
	if so := k.get("/v1/subscriptions/" + sub); failed != 9 || so["status"] != "canceled" {
		t.Fatalf("%d failed charges, subscription %v; want 9 and canceled", failed, so["status"])
	}
	mustOK(t, k.post("/v1/invoices/"+idOf(inv)+"/void", nil))
	mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"balance": {"-100"}}))
	checkLedger(t, k.get, k.cus, "adjustment -300 ", "applied_to_invoice 300 "+idOf(inv),
		"unapplied_from_invoice -300 "+idOf(inv), "adjustment 200 ")
}

// TestExpiredSubscriptionIsFinal: an incomplete_expired
// subscription is final, as a canceled one is: DELETE is refused (it
// stays incomplete_expired, no customer.subscription.deleted), and so is
// an update of anything but metadata and cancellation_details ("You
// cannot update a subscription that is `canceled` or
// `incomplete_expired`."). The voided first invoice gave back the credit
// it had applied. Before, DELETE turned it into a canceled subscription
// and an update changed its items.
func TestExpiredSubscriptionIsFinal(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	mustOK(t, k.post("/v1/customers/"+k.cus+"/balance_transactions", url.Values{"amount": {"-300"}, "currency": {"usd"}}))
	s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {k.price(1000)},
		"payment_behavior": {"default_incomplete"}}))
	sub, inv := idOfResp(s), s.body["latest_invoice"].(string)
	if b := num(k.get("/v1/customers/" + k.cus)["balance"]); s.body["status"] != "incomplete" || b != 0 {
		t.Fatalf("new subscription %v, balance %d; want incomplete, 0 (the credit applied)", s.body["status"], b)
	}
	k.advance(clockFrozenAt + 23*3600)
	if so := k.get("/v1/subscriptions/" + sub); so["status"] != "incomplete_expired" {
		t.Fatalf("after 23 hours: %v", so["status"])
	}
	checkLedger(t, k.get, k.cus, "adjustment -300 ", "applied_to_invoice 300 "+inv, "unapplied_from_invoice -300 "+inv)

	evs := k.events(func() {
		if r := k.post("/v1/subscriptions/"+sub, url.Values{"items[0][price]": {k.price(50)}}); r.status != 400 {
			t.Errorf("update of the items of an incomplete_expired subscription: %d", r.status)
		}
		if r := do(t, "DELETE", base+"/v1/subscriptions/"+sub, "sk_test_x", ""); r.status != 400 {
			t.Errorf("DELETE of an incomplete_expired subscription: %d", r.status)
		}
		mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"metadata[k]": {"v"}}))
	})
	so := k.get("/v1/subscriptions/" + sub)
	items := so["items"].(map[string]any)["data"].([]any)
	if so["status"] != "incomplete_expired" || len(items) != 1 || at(so, "metadata.k") != "v" {
		t.Errorf("after the refused changes: status %v, %d items, metadata %v", so["status"], len(items), so["metadata"])
	}
	for _, ev := range evs {
		if ev["type"] == "customer.subscription.deleted" {
			t.Errorf("customer.subscription.deleted for an incomplete_expired subscription")
		}
	}
}
