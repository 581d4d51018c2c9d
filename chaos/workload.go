package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pgstripe/pgstripe/stripeapi"
)

// workload is "other people using the Stripe account": random creates,
// updates and deletes straight through the Stripe API (not through
// pgstripe), which sync must follow through the events.
type workload struct {
	c *stripeapi.Client

	mu   sync.Mutex
	rng  *rand.Rand
	ids  map[string][]string
	ok   map[string]int
	fail map[string]int
	last map[string]string // op -> last error text
}

func newWorkload(c *stripeapi.Client, seed uint64) *workload {
	return &workload{c: c, rng: rand.New(rand.NewPCG(seed, seed+1)), ids: map[string][]string{},
		ok: map[string]int{}, fail: map[string]int{}, last: map[string]string{}}
}

var workloadOps = []string{
	"createCustomer", "updateCustomer", "updateCustomer", "burstCustomer", "deleteCustomer",
	"createProduct", "updateProduct", "deleteProduct",
	"createPrice", "updatePrice",
	"createCoupon", "deleteCoupon",
	"createSubscription", "updateSubscription", "cancelSubscription",
	"createInvoiceItem", "deleteInvoiceItem",
	"createTaxID", "deleteTaxID",
}

// run does about perSecond operations a second until ctx is done.
func (w *workload) run(ctx context.Context, perSecond float64) {
	gap := time.Duration(float64(time.Second) / perSecond)
	t := time.NewTicker(gap)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		op := workloadOps[w.intn(len(workloadOps))]
		err := w.op(ctx, op)
		if errors.Is(err, errSkip) || ctx.Err() != nil {
			continue
		}
		w.mu.Lock()
		if err != nil {
			w.fail[op]++
			w.last[op] = err.Error()
		} else {
			w.ok[op]++
		}
		w.mu.Unlock()
	}
}

// seedBasics makes the products and prices the other operations need.
func (w *workload) seedBasics(ctx context.Context) error {
	for range 3 {
		for _, op := range []string{"createCustomer", "createProduct", "createPrice", "createPrice"} {
			if err := w.op(ctx, op); err != nil && !errors.Is(err, errSkip) {
				return fmt.Errorf("workload %s: %w", op, err)
			}
		}
	}
	return nil
}

func (w *workload) total() (ok, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.ok {
		ok += n
	}
	for _, n := range w.fail {
		failed += n
	}
	return ok, failed
}

func (w *workload) failures() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for op, n := range w.fail {
		parts = append(parts, fmt.Sprintf("%s failed %d× (%s)", op, n, w.last[op]))
	}
	return strings.Join(parts, "; ")
}

func (w *workload) intn(n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rng.IntN(n)
}

func (w *workload) pick(kind string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.ids[kind]
	if len(ids) == 0 {
		return ""
	}
	return ids[w.rng.IntN(len(ids))]
}

func (w *workload) add(kind, id string) {
	w.mu.Lock()
	w.ids[kind] = append(w.ids[kind], id)
	w.mu.Unlock()
}

func (w *workload) remove(kind, id string) {
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

var errSkip = errors.New("nothing to do")

func (w *workload) post(ctx context.Context, path string, q url.Values) (string, error) {
	resp, err := w.c.Post(ctx, path, q, "")
	if err != nil {
		return "", err
	}
	return stripeapi.ObjectID(resp.Body)
}

func (w *workload) del(ctx context.Context, path string) error {
	_, err := w.c.Delete(ctx, path, nil)
	return err
}

func (w *workload) op(ctx context.Context, op string) error {
	n := w.intn(1_000_000)
	meta := url.Values{fmt.Sprintf("metadata[k%d]", n%5): {fmt.Sprint(n)}}
	switch op {
	case "createCustomer":
		id, err := w.post(ctx, "/v1/customers", url.Values{"name": {fmt.Sprintf("Chaos %d", n)}, "email": {fmt.Sprintf("c%d@example.com", n)}})
		if err == nil {
			w.add("customers", id)
		}
		return err
	case "updateCustomer", "updateProduct":
		table := "customers"
		if op == "updateProduct" {
			table = "products"
		}
		id := w.pick(table)
		if id == "" {
			return errSkip
		}
		_, err := w.post(ctx, "/v1/"+table+"/"+id, meta)
		return err
	case "burstCustomer":
		// Several states in the same second: only a fetch can order them.
		id := w.pick("customers")
		if id == "" {
			return errSkip
		}
		for i := range 3 {
			if _, err := w.post(ctx, "/v1/customers/"+id, url.Values{fmt.Sprintf("metadata[b%d]", i): {fmt.Sprint(n + i)}}); err != nil {
				return err
			}
		}
		return nil
	case "deleteCustomer":
		id := w.pick("customers")
		if id == "" || w.intn(3) > 0 { // keep most customers around
			return errSkip
		}
		err := w.del(ctx, "/v1/customers/"+id)
		if err == nil {
			w.remove("customers", id)
		}
		return err
	case "createProduct":
		id, err := w.post(ctx, "/v1/products", url.Values{"name": {fmt.Sprintf("Product %d", n)}})
		if err == nil {
			w.add("products", id)
			w.add("products_free", id)
		}
		return err
	case "deleteProduct":
		id := w.pick("products_free") // only products without prices can be deleted
		if id == "" {
			return errSkip
		}
		err := w.del(ctx, "/v1/products/"+id)
		if err == nil {
			w.remove("products_free", id)
			w.remove("products", id)
		}
		return err
	case "createPrice":
		prod := w.pick("products")
		if prod == "" {
			return errSkip
		}
		w.remove("products_free", prod) // before the call: a delete racing it would fail
		q := url.Values{"product": {prod}, "unit_amount": {fmt.Sprint(100 + n%900)}, "currency": {"usd"}}
		recurring := n%2 == 0
		if recurring {
			q.Set("recurring[interval]", "month")
		}
		id, err := w.post(ctx, "/v1/prices", q)
		if err == nil {
			w.add("prices", id)
			if recurring {
				w.add("prices_recurring", id)
			} else {
				w.add("prices_once", id)
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
		id, err := w.post(ctx, "/v1/coupons", url.Values{"percent_off": {fmt.Sprint(5 + n%50)}, "duration": {"once"}})
		if err == nil {
			w.add("coupons", id)
		}
		return err
	case "deleteCoupon":
		id := w.pick("coupons")
		if id == "" {
			return errSkip
		}
		err := w.del(ctx, "/v1/coupons/"+id)
		if err == nil {
			w.remove("coupons", id)
		}
		return err
	case "createSubscription":
		cus, price := w.pick("customers"), w.pick("prices_recurring")
		if cus == "" || price == "" {
			return errSkip
		}
		q := url.Values{"customer": {cus}, "items[0][price]": {price}, "collection_method": {"send_invoice"}, "days_until_due": {"30"}}
		if n%2 == 0 {
			q.Set("trial_period_days", "30")
		}
		id, err := w.post(ctx, "/v1/subscriptions", q)
		if err == nil {
			w.add("subscriptions", id)
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
		w.remove("subscriptions", id)
		return w.del(ctx, "/v1/subscriptions/"+id)
	case "createInvoiceItem":
		cus, price := w.pick("customers"), w.pick("prices_once")
		if cus == "" || price == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/invoiceitems", url.Values{"customer": {cus}, "price": {price}})
		if err == nil {
			w.add("invoiceitems", id)
		}
		return err
	case "deleteInvoiceItem":
		id := w.pick("invoiceitems")
		if id == "" {
			return errSkip
		}
		w.remove("invoiceitems", id)
		return w.del(ctx, "/v1/invoiceitems/"+id)
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
		w.remove("tax_ids", k)
		cus, id, _ := strings.Cut(k, "/")
		err := w.del(ctx, "/v1/customers/"+cus+"/tax_ids/"+id)
		if stripeapi.IsNotFound(err) { // the customer went first
			return nil
		}
		return err
	}
	return fmt.Errorf("unknown workload op %q", op)
}
