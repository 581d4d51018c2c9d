package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/pgstripe/pgstripe/stripeapi"
)

// The rarer objects: each op below picks its target from a pool of ids in
// a state where Stripe accepts the call (an open invoice to pay, a pending
// payout to cancel, a setup intent not yet confirmed, …) and moves the id
// between pools as the state changes, so that most calls succeed as they
// would for an application that knows its own objects.

// postObj is post that also decodes the object Stripe returned into out.
func (w *Workload) postObj(ctx context.Context, path string, q url.Values, out any) (string, error) {
	resp, err := w.c.Post(stripeapi.WithPriority(ctx, stripeapi.Interactive), path, q, "")
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return stripeapi.ObjectID(resp.Body)
}

// forget removes the pool entries "prefix/…" of a kind: the objects of a
// customer or subscription that is gone.
func (w *Workload) forget(kind, prefix string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.ids[kind][:0:0]
	for _, k := range w.ids[kind] {
		if !strings.HasPrefix(k, prefix+"/") {
			ids = append(ids, k)
		}
	}
	w.ids[kind] = ids
}

// own pools key under kind as an object of customer cus, which disown
// forgets with the customer.
func (w *Workload) own(cus, kind, key string) {
	w.add(kind, key)
	w.add("of:"+cus, kind+"|"+key)
}

// disown forgets the objects of a deleted customer that Stripe no longer
// takes calls on: its subscriptions (canceled with it) and their items,
// schedules, tax ids, payment methods and cards.
func (w *Workload) disown(cus string) {
	for _, k := range w.kind("of:" + cus) {
		kind, key, _ := strings.Cut(k, "|")
		w.remove(kind, key)
		if kind == "subscriptions" {
			w.forget("subscription_items", key)
		}
	}
	w.mu.Lock()
	delete(w.ids, "of:"+cus)
	w.mu.Unlock()
	for _, pool := range []string{"tax_ids", "payment_methods", "cards"} {
		w.forget(pool, cus)
	}
}

// gone drops a pooled key whose object Stripe no longer accepts calls on
// (deleted with its customer, say) and reports whether err says so.
func (w *Workload) gone(kind, key string, err error) bool {
	if stripeapi.IsNotFound(err) {
		w.remove(kind, key)
		return true
	}
	return false
}

func (w *Workload) moreOp(ctx context.Context, op string, n int, meta url.Values) (bool, error) {
	cx := stripeapi.WithPriority(ctx, stripeapi.Interactive)
	switch op {
	case "createPlan":
		prod := w.pick("products")
		if prod == "" {
			return true, errSkip
		}
		id, err := w.post(ctx, "/v1/plans", url.Values{"product": {prod}, "amount": {fmt.Sprint(100 + n%900)}, "currency": {"usd"}, "interval": {"month"}})
		if err == nil {
			w.add("plans", id)
			w.remove("products_free", prod)
		}
		return true, err
	case "updatePlan":
		id := w.pick("plans")
		if id == "" {
			return true, errSkip
		}
		q := meta
		if n%2 == 0 {
			q = url.Values{"nickname": {fmt.Sprintf("Plan %d", n)}}
		}
		_, err := w.post(ctx, "/v1/plans/"+id, q)
		return true, err
	case "deletePlan":
		id := w.pick("plans")
		if id == "" {
			return true, errSkip
		}
		return true, w.delete(ctx, "plans", id)
	case "updateCoupon":
		// Only name, metadata and currency_options can change.
		id := w.pick("coupons")
		if id == "" {
			return true, errSkip
		}
		q := meta
		if n%2 == 0 {
			q = url.Values{"name": {fmt.Sprintf("Coupon %d", n)}}
		}
		_, err := w.post(ctx, "/v1/coupons/"+id, q)
		if w.gone("coupons", id, err) {
			return true, errSkip
		}
		return true, err
	case "createPromotionCode":
		cp := w.pick("coupons")
		if cp == "" {
			return true, errSkip
		}
		id, err := w.post(ctx, "/v1/promotion_codes", url.Values{"coupon": {cp}, "code": {fmt.Sprintf("SAVE%d", n)}})
		if err == nil {
			w.add("promotion_codes", id)
		}
		return true, err
	case "updatePromotionCode":
		// Promotion codes can't be deleted: deactivated instead.
		id := w.pick("promotion_codes")
		if id == "" {
			return true, errSkip
		}
		q := meta
		if n%3 == 0 {
			q = url.Values{"active": {"false"}}
		}
		_, err := w.post(ctx, "/v1/promotion_codes/"+id, q)
		if err == nil && n%3 == 0 {
			w.remove("promotion_codes", id)
		}
		return true, err
	case "createTaxRate":
		id, err := w.post(ctx, "/v1/tax_rates", url.Values{"display_name": {"VAT"}, "percentage": {fmt.Sprint(5 + n%20)},
			"inclusive": {fmt.Sprint(n%2 == 0)}, "country": {"DE"}})
		if err == nil {
			w.add("tax_rates", id)
		}
		return true, err
	case "updateTaxRate":
		// Tax rates can't be deleted: archived (active=false) instead,
		// which keeps them on the objects that use them.
		id := w.pick("tax_rates")
		if id == "" {
			return true, errSkip
		}
		q := meta
		if n%4 == 0 {
			q = url.Values{"active": {"false"}}
		} else if n%4 == 1 {
			q = url.Values{"description": {fmt.Sprintf("Rate %d", n)}}
		}
		_, err := w.post(ctx, "/v1/tax_rates/"+id, q)
		if err == nil && n%4 == 0 {
			w.remove("tax_rates", id)
		}
		return true, err

	case "payInvoice", "voidInvoice", "uncollectibleInvoice":
		id := w.pick("invoices_open")
		if id == "" {
			return true, errSkip
		}
		w.remove("invoices_open", id)
		var path string
		var q url.Values
		switch op {
		case "payInvoice":
			// send_invoice invoices: paid by the customer outside Stripe.
			path, q = "/v1/invoices/"+id+"/pay", url.Values{"paid_out_of_band": {"true"}}
		case "voidInvoice":
			path = "/v1/invoices/" + id + "/void"
		default:
			path = "/v1/invoices/" + id + "/mark_uncollectible"
		}
		if op != "payInvoice" {
			w.remove("invoices_creditable", id) // open or paid ones only
		}
		_, err := w.post(ctx, path, q)
		return true, err
	case "deleteDraftInvoice":
		id := w.pick("invoices_draft")
		if id == "" {
			return true, errSkip
		}
		w.remove("invoices_draft", id)
		_, err := w.c.Delete(cx, "/v1/invoices/"+id, nil)
		return true, err
	case "createCreditNote":
		id := w.pick("invoices_creditable")
		if id == "" {
			return true, errSkip
		}
		// What is left to credit, as an application would look it up:
		// the credit notes of an invoice never exceed its total.
		resp, err := w.c.Get(cx, "/v1/invoices/"+id, nil)
		if err != nil {
			return true, err
		}
		var inv struct {
			Status string
			Total  int
			Pre    int `json:"pre_payment_credit_notes_amount"`
			Post   int `json:"post_payment_credit_notes_amount"`
		}
		if err := json.Unmarshal(resp.Body, &inv); err != nil {
			return true, err
		}
		left := inv.Total - inv.Pre - inv.Post
		if (inv.Status != "open" && inv.Status != "paid") || left <= 0 {
			w.remove("invoices_creditable", id)
			return true, errSkip
		}
		amount := fmt.Sprint(1 + n%left)
		q := url.Values{"invoice": {id}, "amount": {amount}, "reason": {"order_change"}}
		if inv.Status == "paid" {
			// After payment the credit must go somewhere: outside Stripe.
			q.Set("out_of_band_amount", amount)
		}
		cn, err := w.post(ctx, "/v1/credit_notes", q)
		if err == nil {
			w.add("credit_notes", cn)
		}
		return true, err
	case "updateCreditNote":
		id := w.pick("credit_notes")
		if id == "" {
			return true, errSkip
		}
		q := meta
		if n%2 == 0 {
			q = url.Values{"memo": {fmt.Sprintf("Memo %d", n)}}
		}
		_, err := w.post(ctx, "/v1/credit_notes/"+id, q)
		return true, err
	case "voidCreditNote":
		id := w.pick("credit_notes")
		if id == "" {
			return true, errSkip
		}
		w.remove("credit_notes", id)
		_, err := w.post(ctx, "/v1/credit_notes/"+id+"/void", nil)
		return true, err

	case "createSchedule":
		cus, price := w.pick("customers"), w.pick("prices_recurring")
		if cus == "" || price == "" {
			return true, errSkip
		}
		q := url.Values{"customer": {cus}, "start_date": {"now"}, "phases[0][items][0][price]": {price},
			"phases[0][iterations]": {fmt.Sprint(1 + n%3)}, "phases[0][collection_method]": {"send_invoice"},
			"phases[0][invoice_settings][days_until_due]": {"30"}, "end_behavior": {"release"}}
		if n%2 == 0 {
			q.Set("end_behavior", "cancel")
		}
		var s schedule
		id, err := w.postObj(ctx, "/v1/subscription_schedules", q, &s)
		if err == nil && len(s.Phases) > 0 {
			w.own(cus, "schedules", fmt.Sprintf("%s/%d/%s/%s", id, s.Phases[0].StartDate, s.Subscription, cus))
		}
		return true, err
	case "updateSchedule":
		k := w.pick("schedules")
		price := w.pick("prices_recurring")
		if k == "" || price == "" {
			return true, errSkip
		}
		id, rest, _ := strings.Cut(k, "/")
		start, _, _ := strings.Cut(rest, "/")
		q := meta
		if n%3 > 0 {
			// The current phase again, with another price or quantity:
			// Stripe applies it to the subscription at once.
			q = url.Values{"phases[0][start_date]": {start}, "phases[0][items][0][price]": {price},
				"phases[0][items][0][quantity]": {fmt.Sprint(1 + n%3)}, "phases[0][iterations]": {"2"},
				"phases[0][collection_method]": {"send_invoice"}, "phases[0][invoice_settings][days_until_due]": {"30"}}
		}
		_, err := w.post(ctx, "/v1/subscription_schedules/"+id, q)
		return true, err
	case "releaseSchedule", "cancelSchedule":
		k := w.pick("schedules")
		if k == "" {
			return true, errSkip
		}
		w.remove("schedules", k)
		parts := strings.SplitN(k, "/", 4)
		act := "release"
		if op == "cancelSchedule" {
			act = "cancel"
		}
		_, err := w.post(ctx, "/v1/subscription_schedules/"+parts[0]+"/"+act, nil)
		if err == nil && act == "release" && len(parts) == 4 && parts[2] != "" {
			w.own(parts[3], "subscriptions", parts[2]) // on its own now, as any other
		}
		return true, err

	case "createSetupIntent":
		// Saving a customer's card for later: with one of its payment
		// methods and confirmed, or left waiting for one (to be canceled).
		k := w.pick("payment_methods")
		if k == "" {
			return true, errSkip
		}
		cus, pm, _ := strings.Cut(k, "/")
		q := url.Values{"customer": {cus}, "usage": {"off_session"}, "payment_method_types[]": {"card"}}
		confirm := n%3 > 0
		if confirm {
			q.Set("payment_method", pm)
			q.Set("confirm", "true")
		}
		id, err := w.post(ctx, "/v1/setup_intents", q)
		if err == nil && !confirm {
			w.own(cus, "setup_intents", cus+"/"+id)
		}
		if err != nil && w.gone("payment_methods", k, err) {
			return true, errSkip
		}
		return true, err
	case "confirmSetupIntent":
		// A waiting setup intent gets one of its customer's payment
		// methods. (Not a metadata update: Stripe has no
		// setup_intent.updated, so no consumer of events could see one.)
		k := w.pick("setup_intents")
		if k == "" {
			return true, errSkip
		}
		cus, id, _ := strings.Cut(k, "/")
		var pm string
		for _, p := range w.kind("payment_methods") {
			if c, m, _ := strings.Cut(p, "/"); c == cus {
				pm = m
			}
		}
		if pm == "" {
			return true, errSkip
		}
		w.remove("setup_intents", k)
		_, err := w.post(ctx, "/v1/setup_intents/"+id+"/confirm", url.Values{"payment_method": {pm}})
		return true, err
	case "cancelSetupIntent":
		k := w.pick("setup_intents")
		if k == "" {
			return true, errSkip
		}
		w.remove("setup_intents", k)
		_, id, _ := strings.Cut(k, "/")
		_, err := w.post(ctx, "/v1/setup_intents/"+id+"/cancel", url.Values{"cancellation_reason": {"abandoned"}})
		return true, err

	case "createCheckoutSession":
		q := url.Values{"success_url": {"https://example.com/ok"}, "cancel_url": {"https://example.com/back"}}
		price, mode := w.pick("prices_once"), "payment"
		if n%3 == 0 {
			price, mode = w.pick("prices_recurring"), "subscription"
		}
		if price == "" {
			return true, errSkip
		}
		q.Set("mode", mode)
		q.Set("line_items[0][price]", price)
		q.Set("line_items[0][quantity]", fmt.Sprint(1+n%3))
		if cus := w.pick("customers"); cus != "" && n%2 == 0 {
			q.Set("customer", cus)
		}
		id, err := w.post(ctx, "/v1/checkout/sessions", q)
		if err == nil {
			w.add("checkout_sessions", id)
		}
		return true, err
	case "expireCheckoutSession":
		id := w.pick("checkout_sessions")
		if id == "" {
			return true, errSkip
		}
		w.remove("checkout_sessions", id)
		_, err := w.post(ctx, "/v1/checkout/sessions/"+id+"/expire", nil)
		return true, err

	case "createPayout":
		id, err := w.post(ctx, "/v1/payouts", url.Values{"amount": {fmt.Sprint(100 + n%500)}, "currency": {"usd"}})
		if err == nil {
			w.add("payouts", id)
		}
		return true, err
	case "updatePayout":
		id := w.pick("payouts")
		if id == "" {
			return true, errSkip
		}
		_, err := w.post(ctx, "/v1/payouts/"+id, meta)
		return true, err
	case "cancelPayout":
		id := w.pick("payouts")
		if id == "" {
			return true, errSkip
		}
		w.remove("payouts", id)
		_, err := w.post(ctx, "/v1/payouts/"+id+"/cancel", nil)
		return true, err

	case "addCard":
		// A card saved the legacy way, as a source of the customer.
		cus := w.pick("customers")
		if cus == "" {
			return true, errSkip
		}
		tok := []string{"tok_visa", "tok_mastercard", "tok_amex"}[n%3]
		id, err := w.post(ctx, "/v1/customers/"+cus+"/sources", url.Values{"source": {tok}})
		if err == nil {
			w.add("cards", cus+"/"+id)
		}
		return true, err
	case "updateCard", "deleteCard":
		k := w.pick("cards")
		if k == "" {
			return true, errSkip
		}
		cus, id, _ := strings.Cut(k, "/")
		path := "/v1/customers/" + cus + "/sources/" + id
		var err error
		if op == "updateCard" {
			q := meta
			if n%2 == 0 {
				q = url.Values{"name": {fmt.Sprintf("Holder %d", n)}, "exp_year": {fmt.Sprint(2030 + n%5)}}
			}
			_, err = w.post(ctx, path, q)
		} else {
			_, err = w.c.Delete(cx, path, nil)
			if err == nil {
				w.remove("cards", k)
			}
		}
		if w.gone("cards", k, err) {
			return true, errSkip
		}
		return true, err

	case "updateSubscriptionItem", "deleteSubscriptionItem":
		// Items the workload added beside a subscription's first one, so
		// deleting one never leaves a subscription without items.
		k := w.pick("subscription_items")
		if k == "" {
			return true, errSkip
		}
		_, id, _ := strings.Cut(k, "/")
		if op == "updateSubscriptionItem" {
			_, err := w.post(ctx, "/v1/subscription_items/"+id, url.Values{"quantity": {fmt.Sprint(1 + n%4)}})
			return true, err
		}
		w.remove("subscription_items", k)
		_, err := w.c.Delete(cx, "/v1/subscription_items/"+id, nil)
		return true, err

	case "authorizePayment":
		// Authorized now, captured or released later.
		k := w.pick("payment_methods")
		if k == "" {
			return true, errSkip
		}
		cus, pm, _ := strings.Cut(k, "/")
		id, err := w.post(ctx, "/v1/payment_intents", url.Values{"amount": {fmt.Sprint(500 + n%1000)}, "currency": {"usd"},
			"customer": {cus}, "payment_method": {pm}, "confirm": {"true"}, "capture_method": {"manual"}, "payment_method_types[]": {"card"}})
		if err == nil {
			w.add("payment_intents_authorized", id)
		}
		if err != nil && w.gone("payment_methods", k, err) {
			return true, errSkip
		}
		return true, err
	case "capturePayment":
		id := w.pick("payment_intents_authorized")
		if id == "" {
			return true, errSkip
		}
		w.remove("payment_intents_authorized", id)
		q := url.Values{}
		if n%2 == 0 {
			q.Set("amount_to_capture", "400") // the rest is released
		}
		_, err := w.post(ctx, "/v1/payment_intents/"+id+"/capture", q)
		if err == nil {
			w.add("payment_intents", id)
		}
		return true, err
	case "cancelPayment":
		id := w.pick("payment_intents_authorized")
		if id == "" {
			return true, errSkip
		}
		w.remove("payment_intents_authorized", id)
		_, err := w.post(ctx, "/v1/payment_intents/"+id+"/cancel", url.Values{"cancellation_reason": {"requested_by_customer"}})
		return true, err

	case "updateRefund":
		id := w.pick("refunds")
		if id == "" {
			return true, errSkip
		}
		_, err := w.post(ctx, "/v1/refunds/"+id, meta)
		return true, err
	case "updatePaymentMethod":
		k := w.pick("payment_methods")
		if k == "" {
			return true, errSkip
		}
		_, pm, _ := strings.Cut(k, "/")
		q := meta
		if n%2 == 0 {
			q = url.Values{"billing_details[name]": {fmt.Sprintf("Holder %d", n)}}
		}
		_, err := w.post(ctx, "/v1/payment_methods/"+pm, q)
		return true, err

	case "updateDispute", "closeDispute":
		id := w.pick("disputes")
		if id == "" {
			return true, errSkip
		}
		if op == "closeDispute" {
			w.remove("disputes", id)
			_, err := w.post(ctx, "/v1/disputes/"+id+"/close", nil)
			return true, err
		}
		q := url.Values{"evidence[customer_name]": {fmt.Sprintf("Customer %d", n)}}
		if n%3 == 0 {
			// Stripe's test evidence: submitted, the dispute is won.
			q = url.Values{"evidence[uncategorized_text]": {"winning_evidence"}, "submit": {"true"}}
			w.remove("disputes", id)
		}
		_, err := w.post(ctx, "/v1/disputes/"+id, q)
		return true, err
	}
	return false, nil
}

// schedule is what the workload keeps of a subscription schedule.
type schedule struct {
	Subscription string `json:"subscription"`
	Phases       []struct {
		StartDate int64 `json:"start_date"`
	} `json:"phases"`
}
