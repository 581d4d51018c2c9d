// Package workload is "other people using the Stripe account": random
// creates, updates and deletes straight through the Stripe API (not
// through pgstripe), which sync must then follow through the events. Its
// operations reach every table's objects (catalog, billing, payments,
// setup intents, checkout sessions, payouts, saved cards, disputes), each
// aimed at an object in a state where Stripe takes the call, so a failure
// says something. The events tests, the chaos run and the lag bench
// (--workload) share it; at the end, the tables are compared with the
// account, so failed operations are counted, not fatal.
package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgstripe/pgstripe/stripeapi"
)

// Ops are all the operations, some repeated to weigh them: the core
// objects (customers, catalog, subscriptions, invoice items, payments)
// twice as often as the rarer ones, as in an account where most changes
// are customers subscribing and paying.
var Ops = slices.Concat(coreOps, coreOps, rareOps)

var coreOps = []string{
	"createCustomer", "updateCustomer", "updateCustomer", "burstCustomer", "deleteCustomer", "createClockCustomer",
	"createProduct", "updateProduct", "burstProduct", "deleteProduct",
	"createPrice", "updatePrice", "archivePrice",
	"createCoupon", "deleteCoupon", "discountCustomer", "discountSubscription",
	"createSubscription", "updateSubscription", "cancelSubscription",
	"createInvoiceItem", "createInlineInvoiceItem", "deleteInvoiceItem",
	"createTaxID", "deleteTaxID",
	"createPaymentMethod", "detachPaymentMethod", "createPayment", "refund", "dispute",
	"addSubscriptionItem", "finalizeInvoice",
}

// rareOps (more.go) reach the other tables.
var rareOps = []string{
	"createPlan", "updatePlan", "deletePlan", "updateCoupon",
	"createPromotionCode", "updatePromotionCode", "createTaxRate", "updateTaxRate",
	"payInvoice", "voidInvoice", "uncollectibleInvoice", "deleteDraftInvoice",
	"createCreditNote", "updateCreditNote", "voidCreditNote",
	"createSchedule", "updateSchedule", "releaseSchedule", "cancelSchedule",
	"createSetupIntent", "confirmSetupIntent", "cancelSetupIntent",
	"createCheckoutSession", "expireCheckoutSession",
	"createPayout", "updatePayout", "cancelPayout",
	"addCard", "updateCard", "deleteCard",
	"updateSubscriptionItem", "deleteSubscriptionItem",
	"authorizePayment", "capturePayment", "cancelPayment", "updateRefund", "updatePaymentMethod",
	"updateDispute", "closeDispute",
}

// Workload issues the operations and remembers the live objects they made,
// so later operations have something to update or delete. Safe for
// concurrent use.
type Workload struct {
	c   *stripeapi.Client
	mu  sync.Mutex
	rng *rand.Rand
	ids map[string][]string // live ids by kind

	okN     map[string]int
	failN   map[string]int
	failMsg map[string]string // op → its last error
}

// New returns a workload on c; seed makes the choices repeatable.
func New(c *stripeapi.Client, seed uint64) *Workload {
	return &Workload{c: c, rng: rand.New(rand.NewPCG(seed, seed)), ids: map[string][]string{},
		okN: map[string]int{}, failN: map[string]int{}, failMsg: map[string]string{}}
}

// Do runs one named operation and counts its outcome. It returns the
// operation's error; an operation with nothing to act on (no customer yet,
// say) returns nil and counts nothing.
func (w *Workload) Do(ctx context.Context, op string) error {
	err := w.op(ctx, op)
	if errors.Is(err, errSkip) || ctx.Err() != nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failN[op]++
		w.failMsg[op] = err.Error()
		return err
	}
	w.okN[op]++
	return nil
}

// Run does about perSecond random operations from ops a second until ctx
// is done.
func (w *Workload) Run(ctx context.Context, ops []string, perSecond float64) {
	t := time.NewTicker(time.Duration(float64(time.Second) / perSecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.Do(ctx, ops[w.rand(len(ops))])
	}
}

// Seed makes the customers, products and prices the other operations need.
func (w *Workload) Seed(ctx context.Context) error {
	for range 3 {
		for _, op := range []string{"createCustomer", "createProduct", "createPrice", "createPrice"} {
			if err := w.Do(ctx, op); err != nil {
				return fmt.Errorf("workload %s: %w", op, err)
			}
		}
	}
	return nil
}

// Totals returns how many operations succeeded and failed.
func (w *Workload) Totals() (ok, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.okN {
		ok += n
	}
	for _, n := range w.failN {
		failed += n
	}
	return ok, failed
}

// OK returns how many operations whose name starts with prefix succeeded.
func (w *Workload) OK(prefix string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for op, c := range w.okN {
		if strings.HasPrefix(op, prefix) {
			n += c
		}
	}
	return n
}

// Failures describes the failed operations ("" when none), each with its
// last error.
func (w *Workload) Failures() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for op, n := range w.failN {
		parts = append(parts, fmt.Sprintf("%s failed %d× (%s)", op, n, w.failMsg[op]))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// Summary is the successes by operation, then the failures.
func (w *Workload) Summary() string {
	w.mu.Lock()
	s := fmt.Sprintf("ok %v", w.okN)
	w.mu.Unlock()
	if f := w.Failures(); f != "" {
		s += "; " + f
	}
	return s
}

func (w *Workload) rand(n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rng.IntN(n)
}

// Pick returns one of the live objects of a kind (customers, products,
// prices, subscriptions, …) the workload made, or "" when there is none.
func (w *Workload) Pick(kind string) string { return w.pick(kind) }

// Delete deletes an object of a kind through the API and forgets it.
func (w *Workload) Delete(ctx context.Context, kind, id string) error { return w.delete(ctx, kind, id) }

func (w *Workload) pick(kind string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.ids[kind]
	if len(ids) == 0 {
		return ""
	}
	return ids[w.rng.IntN(len(ids))]
}

// kind returns the live ids of a kind.
func (w *Workload) kind(kind string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ids[kind])
}

func (w *Workload) add(kind, id string) {
	w.mu.Lock()
	w.ids[kind] = append(w.ids[kind], id)
	w.mu.Unlock()
}

func (w *Workload) remove(kind, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.ids[kind]
	for i, x := range ids {
		if x == id {
			w.ids[kind] = append(ids[:i:i], ids[i+1:]...)
			return
		}
	}
}

func (w *Workload) post(ctx context.Context, path string, q url.Values) (string, error) {
	resp, err := w.c.Post(stripeapi.WithPriority(ctx, stripeapi.Interactive), path, q, "")
	if err != nil {
		return "", err
	}
	return stripeapi.ObjectID(resp.Body)
}

func (w *Workload) delete(ctx context.Context, table, id string) error {
	_, err := w.c.Delete(stripeapi.WithPriority(ctx, stripeapi.Interactive), "/v1/"+table+"/"+id, nil)
	if err == nil {
		w.remove(table, id)
	}
	return err
}

var errSkip = errors.New("nothing to do")

func (w *Workload) op(ctx context.Context, op string) error {
	n := w.rand(1_000_000)
	meta := url.Values{fmt.Sprintf("metadata[k%d]", n%5): {fmt.Sprint(n)}}
	switch op {
	case "createCustomer":
		id, err := w.post(ctx, "/v1/customers", url.Values{"name": {fmt.Sprintf("Customer %d", n)}, "email": {fmt.Sprintf("c%d@example.com", n)}})
		if err == nil {
			w.add("customers", id)
		}
		return err
	case "createClockCustomer":
		// A customer on a test clock, at the clock's frozen time: Stripe's
		// plain customer and subscription lists leave such objects out.
		// Up to three customers a clock, as Stripe's docs use them.
		clock := w.pick("test_clocks")
		if clock == "" || len(w.kind("clock:"+clock)) >= 3 {
			frozen := time.Now().Add(-time.Duration(1+n%30) * 24 * time.Hour).Unix()
			id, err := w.post(ctx, "/v1/test_helpers/test_clocks", url.Values{"frozen_time": {fmt.Sprint(frozen)}, "name": {fmt.Sprintf("Clock %d", n)}})
			if err != nil {
				return err
			}
			w.add("test_clocks", id)
			clock = id
		}
		id, err := w.post(ctx, "/v1/customers", url.Values{"email": {fmt.Sprintf("clock%d@example.com", n)}, "test_clock": {clock}})
		if err == nil {
			w.add("customers", id)
			w.add("clock:"+clock, id)
		}
		return err
	case "updateCustomer", "burstCustomer", "updateProduct", "burstProduct":
		table := "customers"
		if strings.HasSuffix(op, "Product") {
			table = "products"
		}
		id := w.pick(table)
		if id == "" {
			return errSkip
		}
		times := 1
		if strings.HasPrefix(op, "burst") {
			times = 3 // same second: the states can only be ordered by a fetch
		}
		for i := range times {
			q := url.Values{fmt.Sprintf("metadata[b%d]", i): {fmt.Sprint(n + i)}}
			if _, err := w.post(ctx, "/v1/"+table+"/"+id, q); err != nil {
				return err
			}
		}
		return nil
	case "deleteCustomer":
		id := w.pick("customers")
		if id == "" || w.rand(3) > 0 { // keep most customers around
			return errSkip
		}
		err := w.delete(ctx, "customers", id)
		if err == nil {
			w.disown(id)
		}
		return err
	case "createProduct":
		id, err := w.post(ctx, "/v1/products", url.Values{"name": {fmt.Sprintf("Product %d", n)}})
		if err == nil {
			w.add("products_free", id)
			w.add("products", id)
		}
		return err
	case "deleteProduct":
		id := w.pick("products_free") // only products without prices can be deleted
		if id == "" {
			return errSkip
		}
		err := w.delete(ctx, "products", id)
		if err == nil {
			w.remove("products_free", id)
		}
		return err
	case "createPrice":
		prod := w.pick("products")
		if prod == "" {
			return errSkip
		}
		q := url.Values{"product": {prod}, "unit_amount": {fmt.Sprint(100 + n%900)}, "currency": {"usd"}}
		recurring := n%2 == 0
		if recurring {
			q.Set("recurring[interval]", "month")
		}
		id, err := w.post(ctx, "/v1/prices", q)
		if err == nil {
			w.add("prices", id)
			w.remove("products_free", prod)
			if recurring {
				w.add("prices_recurring", id)
			} else {
				w.add("prices_once", id)
			}
		}
		return err
	case "archivePrice":
		// Archived prices stay in Stripe (old subscriptions use them) but
		// leave its default price list; new subscriptions can't use them.
		id := w.pick("prices")
		if id == "" || w.rand(3) > 0 {
			return errSkip
		}
		_, err := w.post(ctx, "/v1/prices/"+id, url.Values{"active": {"false"}})
		if err == nil {
			for _, pool := range []string{"prices", "prices_once", "prices_recurring"} {
				w.remove(pool, id)
			}
		}
		return err
	case "updatePrice":
		id := w.pick("prices")
		if id == "" {
			return errSkip
		}
		_, err := w.post(ctx, "/v1/prices/"+id, meta)
		return err
	case "createCoupon":
		duration := "once" // ends with the first invoice it discounts
		if n%3 == 0 {
			duration = "forever"
		}
		id, err := w.post(ctx, "/v1/coupons", url.Values{"percent_off": {fmt.Sprint(5 + n%50)}, "duration": {duration}})
		if err == nil {
			w.add("coupons", id)
		}
		return err
	case "deleteCoupon":
		id := w.pick("coupons")
		if id == "" {
			return errSkip
		}
		return w.delete(ctx, "coupons", id)
	case "discountCustomer", "discountSubscription":
		// Apply a coupon (directly or by a new promotion code), or remove
		// the discount: events of an object sync doesn't store
		// (customer.discount.*) that change customers, subscriptions,
		// coupons and upcoming invoices.
		path, cp := "/v1/customers/"+w.pick("customers"), w.pick("coupons")
		if op == "discountSubscription" {
			path = "/v1/subscriptions/" + w.pick("subscriptions")
		}
		if strings.HasSuffix(path, "/") || cp == "" {
			return errSkip
		}
		switch n % 5 {
		case 0:
			_, err := w.c.Delete(stripeapi.WithPriority(ctx, stripeapi.Interactive), path+"/discount", nil)
			if stripeapi.IsNotFound(err) && strings.Contains(err.Error(), "discount") {
				return errSkip
			}
			return err
		case 1:
			promo, err := w.post(ctx, "/v1/promotion_codes", url.Values{"coupon": {cp}})
			if err != nil {
				return err
			}
			_, err = w.post(ctx, path, url.Values{"promotion_code": {promo}})
			return err
		default:
			_, err := w.post(ctx, path, url.Values{"coupon": {cp}})
			return err
		}
	case "createSubscription":
		cus, price := w.pick("customers"), w.pick("prices_recurring")
		if cus == "" || price == "" {
			return errSkip
		}
		q := url.Values{"customer": {cus}, "items[0][price]": {price}, "collection_method": {"send_invoice"}, "days_until_due": {"30"}}
		if n%2 == 0 {
			q.Set("trial_period_days", "30") // trialing: an upcoming invoice exists
		}
		if txr := w.pick("tax_rates"); txr != "" && n%3 == 0 {
			q.Set("default_tax_rates[0]", txr)
		}
		id, err := w.post(ctx, "/v1/subscriptions", q)
		if err == nil {
			w.own(cus, "subscriptions", id)
		}
		return err
	case "updateSubscription":
		id := w.pick("subscriptions")
		if id == "" {
			return errSkip
		}
		_, err := w.post(ctx, "/v1/subscriptions/"+id, meta)
		return err
	case "cancelSubscription":
		id := w.pick("subscriptions")
		if id == "" {
			return errSkip
		}
		_, err := w.c.Delete(stripeapi.WithPriority(ctx, stripeapi.Interactive), "/v1/subscriptions/"+id, nil)
		if err == nil {
			w.remove("subscriptions", id)
			w.forget("subscription_items", id)
		}
		return err
	case "createInvoiceItem":
		// With an existing price: given an amount, the emulator makes a
		// product and price without events (see the report).
		cus, price := w.pick("customers"), w.pick("prices_once")
		if cus == "" || price == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/invoiceitems", url.Values{"customer": {cus}, "price": {price}})
		if err == nil {
			w.add("invoiceitems", id)
		}
		return err
	case "createInlineInvoiceItem":
		// A price made inline (price_data): Stripe lists it nowhere and
		// the emulator sends no price event for it, so sync has it from
		// the invoice item alone.
		cus, prod := w.pick("customers"), w.pick("products")
		if cus == "" || prod == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/invoiceitems", url.Values{"customer": {cus}, "price_data[currency]": {"usd"},
			"price_data[product]": {prod}, "price_data[unit_amount]": {fmt.Sprint(100 + n%900)}})
		if err == nil {
			w.add("invoiceitems", id)
			w.remove("products_free", prod)
		}
		return err
	case "deleteInvoiceItem":
		id := w.pick("invoiceitems")
		if id == "" {
			return errSkip
		}
		err := w.delete(ctx, "invoiceitems", id)
		if err != nil && strings.Contains(err.Error(), "finalized invoice") {
			// Billed meanwhile (an invoice took the pending item): it
			// stays, as the invoice's line.
			w.remove("invoiceitems", id)
			return errSkip
		}
		return err
	case "createTaxID":
		cus := w.pick("customers")
		if cus == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {fmt.Sprintf("DE%09d", n)}})
		if err == nil {
			w.add("tax_ids", cus+"/"+id)
		}
		return err
	case "deleteTaxID":
		k := w.pick("tax_ids")
		if k == "" {
			return errSkip
		}
		cus, id, _ := strings.Cut(k, "/")
		_, err := w.c.Delete(stripeapi.WithPriority(ctx, stripeapi.Interactive), "/v1/customers/"+cus+"/tax_ids/"+id, nil)
		if err == nil || stripeapi.IsNotFound(err) {
			w.remove("tax_ids", k)
		}
		return err
	case "createPaymentMethod":
		cus := w.pick("customers")
		if cus == "" {
			return errSkip
		}
		// Create and attach run to the end even when the workload is being
		// stopped: a payment method left unattached is in the account but
		// on no list and in no event.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		id, err := w.post(ctx, "/v1/payment_methods", url.Values{"type": {"card"}, "card[token]": {"tok_visa"}})
		if err != nil {
			return err
		}
		// A payment method left unattached (its customer deleted
		// meanwhile by another worker) has no event and no list that
		// shows it: no consumer of Stripe could know it, so attach it to
		// another customer rather than leave it for the comparison.
		for try := 0; ; try++ {
			_, err = w.post(ctx, "/v1/payment_methods/"+id+"/attach", url.Values{"customer": {cus}})
			var se *stripeapi.Error
			if err == nil || try == 10 || !errors.As(err, &se) || se.Param != "customer" {
				break
			}
			if cus = w.pick("customers"); cus == "" {
				break
			}
		}
		if err != nil {
			return err
		}
		w.add("payment_methods", cus+"/"+id)
		return nil
	case "detachPaymentMethod":
		k := w.pick("payment_methods")
		if k == "" {
			return errSkip
		}
		_, id, _ := strings.Cut(k, "/")
		w.remove("payment_methods", k)
		_, err := w.post(ctx, "/v1/payment_methods/"+id+"/detach", nil)
		return err
	case "createPayment":
		k := w.pick("payment_methods")
		if k == "" {
			return errSkip
		}
		cus, pm, _ := strings.Cut(k, "/")
		id, err := w.post(ctx, "/v1/payment_intents", url.Values{"amount": {fmt.Sprint(500 + n%1000)}, "currency": {"usd"},
			"customer": {cus}, "payment_method": {pm}, "confirm": {"true"}, "payment_method_types[]": {"card"}})
		if err == nil {
			w.add("payment_intents", id)
		}
		return err
	case "refund":
		pi := w.pick("payment_intents")
		if pi == "" {
			return errSkip
		}
		w.remove("payment_intents", pi)
		id, err := w.post(ctx, "/v1/refunds", url.Values{"payment_intent": {pi}, "amount": {"100"}})
		if err == nil {
			w.add("refunds", id)
		}
		return err
	case "dispute":
		cus := w.pick("customers")
		if cus == "" {
			return errSkip
		}
		ch, err := w.post(ctx, "/v1/charges", url.Values{"amount": {"2000"}, "currency": {"usd"}, "source": {"tok_createDispute"}})
		if err != nil {
			return err
		}
		// The dispute Stripe opened on it, for the updates and closes.
		resp, err := w.c.Get(stripeapi.WithPriority(ctx, stripeapi.Interactive), "/v1/disputes", url.Values{"charge": {ch}})
		if err != nil {
			return err
		}
		var l struct{ Data []struct{ ID string } }
		if err := json.Unmarshal(resp.Body, &l); err != nil {
			return err
		}
		for _, d := range l.Data {
			w.add("disputes", d.ID)
		}
		return nil
	case "addSubscriptionItem":
		sub, price := w.pick("subscriptions"), w.pick("prices_recurring")
		if sub == "" || price == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/subscription_items", url.Values{"subscription": {sub}, "price": {price}})
		if err == nil {
			w.add("subscription_items", sub+"/"+id)
		}
		return err
	case "finalizeInvoice":
		// A draft invoice with the customer's pending items, finalized
		// one time in two.
		cus := w.pick("customers")
		if cus == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/invoices", url.Values{"customer": {cus}, "collection_method": {"send_invoice"}, "days_until_due": {"7"}, "pending_invoice_items_behavior": {"include"}})
		if err != nil {
			return err
		}
		if price := w.pick("prices_once"); price != "" && n%3 > 0 {
			// And an item of its own, as a one-off invoice has.
			ii, err := w.post(ctx, "/v1/invoiceitems", url.Values{"customer": {cus}, "invoice": {id}, "price": {price}})
			if err != nil {
				return err
			}
			if n%2 == 1 {
				w.add("invoiceitems", ii)
			}
		}
		if n%2 == 1 {
			w.add("invoices_draft", id)
			return nil
		}
		var inv struct {
			Status string
			Total  int
		}
		if _, err := w.postObj(ctx, "/v1/invoices/"+id+"/finalize", nil, &inv); err != nil {
			return err
		}
		if inv.Status == "open" {
			w.add("invoices_open", id)
		}
		if inv.Total > 0 {
			w.add("invoices_creditable", id)
		}
		return nil
	}
	if ok, err := w.moreOp(ctx, op, n, meta); ok {
		return err
	}
	return fmt.Errorf("unknown op %s", op)
}
