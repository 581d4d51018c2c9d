package events_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/events"
)

// hidingEvents keeps events of type typ out of /v1/events while hide is
// set, as Stripe's eventually consistent list may for a while.
func hidingEvents(typ string, hide *atomic.Bool) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/events" || !hide.Load() {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			var page map[string]any
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes())
				return
			}
			data, _ := page["data"].([]any)
			kept := []any{}
			for _, d := range data {
				if m, _ := d.(map[string]any); m["type"] != typ {
					kept = append(kept, d)
				}
			}
			page["data"] = kept
			b, _ := json.Marshal(page)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(b)
		})
	}
}

// TestLateDraftInvoiceEventFollowsCustomer: a draft invoice's
// invoice.created can become visible after its customer's later
// customer.updated (the events list is eventually consistent). The
// customer's update found no local draft to re-fetch; the late event then
// stored the draft with the customer's old email, and nothing re-fetched it.
func TestLateDraftInvoiceEventFollowsCustomer(t *testing.T) {
	var hide atomic.Bool
	v := setupWrapped(t, emulator.Options{}, hidingEvents("invoice.created", &hide))
	ctx := context.Background()
	cus := v.post(t, "/v1/customers", url.Values{"email": {"old@x.co"}})
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	v.converge(t, 10*time.Second)

	hide.Store(true)
	v.post(t, "/v1/invoices", url.Values{"customer": {cus}})
	// The invoice.created and the update land in different seconds, as a
	// late event's would.
	time.Sleep(1100 * time.Millisecond)
	v.post(t, "/v1/customers/"+cus, url.Values{"email": {"new@x.co"}})
	waitFor(t, "the customer's update", func() bool {
		var email string
		v.pool.QueryRow(ctx, `SELECT email FROM stripe.customers WHERE id = $1`, cus).Scan(&email)
		return email == "new@x.co"
	})
	time.Sleep(300 * time.Millisecond) // a few more polls and drains
	hide.Store(false)
	waitFor(t, "the late invoice.created", func() bool {
		var n int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.invoices WHERE customer = $1`, cus).Scan(&n)
		return n == 1
	})
	v.converge(t, 5*time.Second)
	var email string
	v.pool.QueryRow(ctx, `SELECT customer_email FROM stripe.invoices WHERE customer = $1`, cus).Scan(&email)
	if !strings.EqualFold(email, "new@x.co") {
		t.Fatalf("draft invoice customer_email %q, want new@x.co", email)
	}
}

// counting counts the requests of the sync (key sk_test_events) whose path
// is path.
func counting(path string, n *atomic.Int64) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == path && strings.HasSuffix(r.Header.Get("Authorization"), "sk_test_events") {
				n.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	}
}

// TestValidCouponRefetchListsNoPromotionCodes: every redemption of a
// coupon (customer.discount.created) re-fetches it, and the re-fetch listed
// all of the coupon's promotion codes, a page per 100: a campaign coupon
// with thousands of codes cost dozens of requests per redemption. The
// codes change with the coupon only when it stops being valid.
func TestValidCouponRefetchListsNoPromotionCodes(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	var lists atomic.Int64
	v := setupWrapped(t, emulator.Options{}, counting("/v1/promotion_codes", &lists))
	ctx := context.Background()
	v.post(t, "/v1/coupons", url.Values{"id": {"CAMPAIGN"}, "percent_off": {"10"}, "duration": {"forever"}, "max_redemptions": {"3"}})
	var codes []string
	for range 150 {
		codes = append(codes, v.post(t, "/v1/promotion_codes", url.Values{"coupon": {"CAMPAIGN"}}))
	}
	var customers []string
	for range 3 {
		customers = append(customers, v.post(t, "/v1/customers", url.Values{"name": {"c"}}))
	}
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	v.converge(t, 10*time.Second)

	before := lists.Load()
	v.post(t, "/v1/customers/"+customers[0], url.Values{"coupon": {"CAMPAIGN"}})
	v.post(t, "/v1/customers/"+customers[1], url.Values{"promotion_code": {codes[0]}})
	v.converge(t, 10*time.Second)
	time.Sleep(1500 * time.Millisecond) // the coupon's re-fetches are due a second after their events
	v.converge(t, 10*time.Second)
	if n := lists.Load() - before; n != 0 {
		t.Errorf("%d promotion code list requests for redemptions of a coupon still valid, want 0", n)
	}

	// The last redemption uses the coupon up: its codes go inactive.
	v.post(t, "/v1/customers/"+customers[2], url.Values{"coupon": {"CAMPAIGN"}})
	v.converge(t, 10*time.Second)
	var active int
	v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.promotion_codes WHERE active`).Scan(&active)
	if active != 0 {
		t.Fatalf("%d promotion codes of a used-up coupon still active", active)
	}
}
