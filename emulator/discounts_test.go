package emulator_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// eventTypes lists the types of the events of object id, oldest first.
func eventTypes(t *testing.T, base, id string) []string {
	t.Helper()
	r := mustOK(t, do(t, "GET", base+"/v1/events?limit=100", "sk_test_x", ""))
	var out []string
	data, _ := r.body["data"].([]any)
	for i := len(data) - 1; i >= 0; i-- {
		ev := data[i].(map[string]any)
		obj := ev["data"].(map[string]any)["object"].(map[string]any)
		if obj["id"] == id || obj["customer"] == id && obj["object"] == "discount" {
			out = append(out, ev["type"].(string))
		}
	}
	return out
}

func num(v any) int64 { f, _ := v.(float64); return int64(f) }

// A coupon applied to a customer: customer.discount and its events, one
// redemption of the coupon (no coupon event: Stripe sends none), and
// every invoice of the customer discounted, split over its lines.
func TestCustomerDiscount(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=QUARTER&percent_off=25&duration=forever"))
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	r := mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "coupon=QUARTER"))
	d, _ := r.body["discount"].(map[string]any)
	if d == nil || d["object"] != "discount" || d["customer"] != cus || d["subscription"] != nil || d["end"] != nil ||
		d["coupon"].(map[string]any)["id"] != "QUARTER" || num(d["coupon"].(map[string]any)["times_redeemed"]) != 1 {
		t.Fatalf("customer discount: %s", r.raw)
	}
	if got := eventTypes(t, base, cus); len(got) != 3 || got[0] != "customer.created" || got[1] != "customer.discount.created" || got[2] != "customer.updated" {
		t.Errorf("events: %v", got)
	}
	cp := mustOK(t, do(t, "GET", base+"/v1/coupons/QUARTER", "sk_test_x", ""))
	if num(cp.body["times_redeemed"]) != 1 || len(eventTypes(t, base, "QUARTER")) != 1 {
		t.Errorf("coupon after redemption: %s, events %v", cp.raw, eventTypes(t, base, "QUARTER"))
	}
	if got := mustOK(t, do(t, "GET", base+"/v1/customers/"+cus+"/discount", "sk_test_x", "")); got.body["id"] != d["id"] {
		t.Errorf("GET discount: %s", got.raw)
	}

	for _, amt := range []string{"1000", "333"} {
		mustOK(t, do(t, "POST", base+"/v1/invoiceitems", "sk_test_x", "customer="+cus+"&amount="+amt+"&currency=usd"))
	}
	inv := mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus+"&pending_invoice_items_behavior=include"))
	// 25% of 1,333 = 333.25 → 333.
	if num(inv.body["subtotal"]) != 1333 || num(inv.body["total"]) != 1000 || num(inv.body["amount_due"]) != 1000 {
		t.Fatalf("discounted invoice: subtotal %v total %v amount_due %v", inv.body["subtotal"], inv.body["total"], inv.body["amount_due"])
	}
	tda, _ := inv.body["total_discount_amounts"].([]any)
	ds, _ := inv.body["discounts"].([]any)
	if len(tda) != 1 || num(tda[0].(map[string]any)["amount"]) != 333 || len(ds) != 1 || ds[0] != d["id"] {
		t.Fatalf("invoice discount fields: %v %v", tda, ds)
	}
	lines := mustOK(t, do(t, "GET", base+"/v1/invoices/"+idOfResp(inv)+"/lines", "sk_test_x", ""))
	var split int64
	for _, l := range lines.body["data"].([]any) {
		da, _ := l.(map[string]any)["discount_amounts"].([]any)
		if len(da) != 1 {
			t.Fatalf("line discount_amounts: %v", l)
		}
		split += num(da[0].(map[string]any)["amount"])
	}
	if split != 333 {
		t.Errorf("line discounts sum to %d, want 333", split)
	}
	// forever: still there after the invoice is finalized.
	mustOK(t, do(t, "POST", base+"/v1/invoices/"+idOfResp(inv)+"/finalize", "sk_test_x", ""))
	if r := mustOK(t, do(t, "GET", base+"/v1/customers/"+cus, "sk_test_x", "")); r.body["discount"] == nil {
		t.Errorf("a forever discount ended: %s", r.raw)
	}

	gone := mustOK(t, do(t, "DELETE", base+"/v1/customers/"+cus+"/discount", "sk_test_x", ""))
	if gone.body["deleted"] != true || gone.body["id"] != d["id"] {
		t.Errorf("DELETE discount: %s", gone.raw)
	}
	if r := do(t, "DELETE", base+"/v1/customers/"+cus+"/discount", "sk_test_x", ""); r.status != 404 || errField(r, "code") != "resource_missing" {
		t.Errorf("DELETE of no discount: %d %s", r.status, r.raw)
	}
	if got := eventTypes(t, base, cus); got[len(got)-2] != "customer.discount.deleted" || got[len(got)-1] != "customer.updated" {
		t.Errorf("events after DELETE: %v", got)
	}
}

// A once coupon by promotion code on a new subscription: the first
// invoice is discounted, then the discount ends; the subscription's
// discount comes before the customer's; a used-up coupon can't be
// redeemed again.
func TestSubscriptionDiscountOnce(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=OFF300&amount_off=300&currency=usd&duration=once&max_redemptions=1"))
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=HALF&percent_off=50&duration=forever"))
	promo := idOfResp(mustOK(t, do(t, "POST", base+"/v1/promotion_codes", "sk_test_x", "coupon=OFF300&code=WELCOME")))
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a&coupon=HALF")))
	prod := idOfResp(mustOK(t, do(t, "POST", base+"/v1/products", "sk_test_x", "name=p")))
	price := idOfResp(mustOK(t, do(t, "POST", base+"/v1/prices", "sk_test_x", "product="+prod+"&currency=usd&unit_amount=1000&recurring[interval]=month")))

	both := do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&coupon=HALF&promotion_code="+promo)
	if both.status != 400 {
		t.Fatalf("coupon and promotion_code: %d %s", both.status, both.raw)
	}
	// Refused for want of a payment method: nothing redeemed.
	if r := do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&promotion_code="+promo+"&payment_behavior=error_if_incomplete"); r.status != 402 {
		t.Fatalf("error_if_incomplete with 700 to pay and no payment method: %d %s", r.status, r.raw)
	}
	sub := mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&promotion_code="+promo+"&default_payment_method="+attachCard(t, base, cus, "pm_card_visa")+"&expand[]=latest_invoice"))
	inv := sub.body["latest_invoice"].(map[string]any)
	if num(inv["subtotal"]) != 1000 || num(inv["total"]) != 700 {
		t.Fatalf("first invoice with the subscription's 300 off (not the customer's 50%%): subtotal %v total %v", inv["subtotal"], inv["total"])
	}
	if d := inv["discount"].(map[string]any); d["subscription"] != idOfResp(sub) || d["promotion_code"] != promo {
		t.Errorf("invoice discount: %v", d)
	}
	if sub.body["discount"] != nil {
		t.Errorf("a once discount outlived the first invoice: %v", sub.body["discount"])
	}
	var discountEvents []string
	for _, typ := range eventTypes(t, base, cus) {
		if strings.HasPrefix(typ, "customer.discount.") {
			discountEvents = append(discountEvents, typ)
		}
	}
	if want := []string{"customer.discount.created", "customer.discount.created", "customer.discount.deleted"}; !slices.Equal(discountEvents, want) {
		t.Errorf("discount events: %v, want %v (the customer's, the subscription's made and ended)", discountEvents, want)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/promotion_codes/"+promo, "sk_test_x", "")); num(r.body["times_redeemed"]) != 1 {
		t.Errorf("promotion code: %s", r.raw)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/coupons/OFF300", "sk_test_x", "")); r.body["valid"] != false {
		t.Errorf("used-up coupon still valid: %s", r.raw)
	}
	if r := do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "coupon=OFF300"); r.status != 400 || errField(r, "param") != "coupon" {
		t.Errorf("redeeming a used-up coupon: %d %s", r.status, r.raw)
	}
	// A refused update redeems nothing.
	if r := do(t, "POST", base+"/v1/subscriptions/"+idOfResp(sub), "sk_test_x", "coupon=HALF&items[0][price]=price_nope"); r.status != 400 {
		t.Fatalf("update with an unknown price: %d %s", r.status, r.raw)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/coupons/HALF", "sk_test_x", "")); num(r.body["times_redeemed"]) != 1 {
		t.Errorf("a refused update redeemed the coupon: %s", r.raw)
	}
	// A full discount leaves nothing to pay: error_if_incomplete creates it.
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=FREE&percent_off=100&duration=forever"))
	if r := do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&coupon=FREE&payment_behavior=error_if_incomplete"); r.status != 200 || r.body["status"] != "active" {
		t.Fatalf("error_if_incomplete with a 100%% coupon: %d %s", r.status, r.raw)
	}
	// Next period: the customer's 50% applies again.
	up := mustOK(t, do(t, "GET", base+"/v1/invoices/upcoming?customer="+cus+"&subscription="+idOfResp(sub), "sk_test_x", ""))
	if num(up.body["total"]) != 500 || up.body["discount"].(map[string]any)["subscription"] != nil {
		t.Errorf("upcoming invoice: total %v discount %v", up.body["total"], up.body["discount"])
	}
}

// A repeating coupon ends duration_in_months after it was applied; a
// coupon limited to a product discounts only that product's lines; an
// unknown coupon or promotion code is resource_missing.
func TestDiscountRules(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	p1 := idOfResp(mustOK(t, do(t, "POST", base+"/v1/products", "sk_test_x", "name=p1")))
	p2 := idOfResp(mustOK(t, do(t, "POST", base+"/v1/products", "sk_test_x", "name=p2")))
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=P1ONLY&percent_off=10&duration=repeating&duration_in_months=3&applies_to[products][0]="+p1))
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	plain := mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus))
	if tda, _ := plain.body["total_discount_amounts"].([]any); plain.body["discount"] != nil || len(tda) != 0 {
		t.Errorf("invoice without a discount: discount %v, total_discount_amounts %v", plain.body["discount"], tda)
	}
	r := mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "coupon=P1ONLY"))
	d := r.body["discount"].(map[string]any)
	if want := time.Unix(num(d["start"]), 0).UTC().AddDate(0, 3, 0).Unix(); num(d["end"]) != want {
		t.Errorf("repeating discount end %v, want %d", d["end"], want)
	}
	for _, p := range []string{p1, p2} {
		price := idOfResp(mustOK(t, do(t, "POST", base+"/v1/prices", "sk_test_x", "product="+p+"&currency=usd&unit_amount=1000")))
		mustOK(t, do(t, "POST", base+"/v1/invoiceitems", "sk_test_x", "customer="+cus+"&price="+price))
	}
	inv := mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus+"&pending_invoice_items_behavior=include"))
	if num(inv.body["subtotal"]) != 2000 || num(inv.body["total"]) != 1900 {
		t.Errorf("10%% of p1's line only: subtotal %v total %v", inv.body["subtotal"], inv.body["total"])
	}
	for _, body := range []string{"coupon=NOPE", "promotion_code=promo_nope"} {
		r := do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", body)
		if r.status != 400 || errField(r, "code") != "resource_missing" {
			t.Errorf("%s: %d %s", body, r.status, r.raw)
		}
	}
}

// DELETE …/discount answers a deleted_discount, which (spec 2023-10-16)
// has no end, unlike the discount it removed.
func TestDeletedDiscountHasNoEnd(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=REP&percent_off=10&duration=repeating&duration_in_months=2"))
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "coupon=REP")))
	gone := mustOK(t, do(t, "DELETE", base+"/v1/customers/"+cus+"/discount", "sk_test_x", ""))
	if _, has := gone.body["end"]; has || gone.body["deleted"] != true || gone.body["object"] != "discount" {
		t.Errorf("deleted discount: %s", gone.raw)
	}
}

// "A promotion code is only active if the coupon is also valid" (spec), and
// a promotion code used max_redemptions times becomes inactive; either way
// a redemption through it is refused on promotion_code, with Stripe's
// message for a used-up code.
func TestPromotionCodeFollowsCoupon(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=ONCE1&percent_off=10&duration=forever&max_redemptions=1"))
	a := idOfResp(mustOK(t, do(t, "POST", base+"/v1/promotion_codes", "sk_test_x", "coupon=ONCE1&code=AAA")))
	b := idOfResp(mustOK(t, do(t, "POST", base+"/v1/promotion_codes", "sk_test_x", "coupon=ONCE1&code=BBB")))
	c1 := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	c2 := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=b")))
	mustOK(t, do(t, "POST", base+"/v1/customers/"+c1, "sk_test_x", "promotion_code="+a))
	pa := mustOK(t, do(t, "GET", base+"/v1/promotion_codes/"+a, "sk_test_x", ""))
	cp, _ := pa.body["coupon"].(map[string]any)
	if pa.body["active"] != false || num(pa.body["times_redeemed"]) != 1 || num(cp["times_redeemed"]) != 1 || cp["valid"] != false {
		t.Errorf("promotion code after its coupon was used up: %s", pa.raw)
	}
	if pb := mustOK(t, do(t, "GET", base+"/v1/promotion_codes/"+b, "sk_test_x", "")); pb.body["active"] != false {
		t.Errorf("another promotion code of the used-up coupon: %s", pb.raw)
	}
	if r := do(t, "POST", base+"/v1/customers/"+c2, "sk_test_x", "promotion_code="+b); r.status != 400 || errField(r, "param") != "promotion_code" {
		t.Errorf("redeeming a promotion code of a used-up coupon: %d %s", r.status, r.raw)
	}

	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=MANY&percent_off=10&duration=forever"))
	one := idOfResp(mustOK(t, do(t, "POST", base+"/v1/promotion_codes", "sk_test_x", "coupon=MANY&max_redemptions=1")))
	mustOK(t, do(t, "POST", base+"/v1/customers/"+c1, "sk_test_x", "promotion_code="+one))
	if r := mustOK(t, do(t, "GET", base+"/v1/promotion_codes/"+one, "sk_test_x", "")); r.body["active"] != false {
		t.Errorf("promotion code at its max_redemptions: %s", r.raw)
	}
	r := do(t, "POST", base+"/v1/customers/"+c2, "sk_test_x", "promotion_code="+one)
	if r.status != 400 || errField(r, "param") != "promotion_code" || !strings.Contains(errField(r, "message"), "maximum number of times") {
		t.Errorf("redeeming a used-up promotion code: %d %s", r.status, r.raw)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/coupons/MANY", "sk_test_x", "")); r.body["valid"] != true || num(r.body["times_redeemed"]) != 1 {
		t.Errorf("coupon after its promotion code was used up: %s", r.raw)
	}
}

// An invoice item's discountable "defaults to false for prorations or
// negative invoice items, and true for all other invoice items" (spec), and
// discountable=false keeps a customer's discount off its line.
func TestInvoiceItemDiscountable(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=HALF&percent_off=50&duration=forever"))
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "coupon=HALF")))
	var items []string
	for i, body := range []string{"amount=1000&discountable=false", "amount=1000", "amount=-200"} {
		r := mustOK(t, do(t, "POST", base+"/v1/invoiceitems", "sk_test_x", "customer="+cus+"&currency=usd&"+body))
		if want := i == 1; r.body["discountable"] != want {
			t.Errorf("invoice item %s: discountable %v, want %v", body, r.body["discountable"], want)
		}
		items = append(items, idOfResp(r))
	}
	inv := mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus+"&pending_invoice_items_behavior=include"))
	if num(inv.body["subtotal"]) != 1800 || num(inv.body["total"]) != 1300 {
		t.Errorf("50%% of the one discountable item: subtotal %v total %v", inv.body["subtotal"], inv.body["total"])
	}
	mustOK(t, do(t, "POST", base+"/v1/invoiceitems/"+items[0], "sk_test_x", "discountable=true"))
	inv = mustOK(t, do(t, "GET", base+"/v1/invoices/"+idOfResp(inv), "sk_test_x", ""))
	if num(inv.body["total"]) != 800 {
		t.Errorf("after making the first item discountable: total %v, want 800", inv.body["total"])
	}
}

// An amount_off coupon in another currency takes its currency_options
// amount for the invoice's currency.
func TestCouponCurrencyOptions(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=MULTI&amount_off=500&currency=eur&currency_options[usd][amount_off]=600&duration=forever"))
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "coupon=MULTI")))
	mustOK(t, do(t, "POST", base+"/v1/invoiceitems", "sk_test_x", "customer="+cus+"&currency=usd&amount=1000"))
	inv := mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus+"&pending_invoice_items_behavior=include"))
	if num(inv.body["total"]) != 400 {
		t.Errorf("usd invoice with a eur coupon worth 600 in usd: total %v, want 400", inv.body["total"])
	}
}

// A subscription schedule phase's coupon would discount the subscription
// the schedule makes; the emulator refuses it rather than ignoring it.
func TestSchedulePhaseCouponRefused(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "id=TEN&percent_off=10&duration=forever"))
	cus, price := catalog(t, base, 1000)
	r := do(t, "POST", base+"/v1/subscription_schedules", "sk_test_x", "customer="+cus+"&start_date=now&phases[0][items][0][price]="+price+"&phases[0][coupon]=TEN")
	if r.status != 400 || errField(r, "param") != "phases[0][coupon]" {
		t.Errorf("schedule with a phase coupon: %d %s", r.status, r.raw)
	}
	sched := idOfResp(mustOK(t, do(t, "POST", base+"/v1/subscription_schedules", "sk_test_x", "customer="+cus+"&start_date=now&phases[0][items][0][price]="+price)))
	r = do(t, "POST", base+"/v1/subscription_schedules/"+sched, "sk_test_x", "phases[0][items][0][price]="+price+"&phases[0][coupon]=TEN")
	if r.status != 400 || errField(r, "param") != "phases[0][coupon]" {
		t.Errorf("schedule update with a phase coupon: %d %s", r.status, r.raw)
	}
}
