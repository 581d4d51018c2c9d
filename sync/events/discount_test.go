package events_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/events"
)

// A coupon applied to a customer, or by promotion code to a subscription,
// and then removed: Stripe sends customer.discount.* (an object sync does
// not store) and no event for the coupon's or promotion code's
// times_redeemed; the customer, subscription, coupon, promotion code and
// the customer's upcoming invoice must all follow.
func TestDiscountEvents(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	cus := v.post(t, "/v1/customers", url.Values{"name": {"c"}})
	prod := v.post(t, "/v1/products", url.Values{"name": {"p"}})
	price := v.post(t, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"1000"}, "recurring[interval]": {"month"}})
	sub := v.post(t, "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "trial_period_days": {"30"}})
	v.post(t, "/v1/coupons", url.Values{"id": {"TEN"}, "percent_off": {"10"}, "duration": {"forever"}})
	v.post(t, "/v1/coupons", url.Values{"id": {"HALF"}, "percent_off": {"50"}, "duration": {"forever"}})
	promo := v.post(t, "/v1/promotion_codes", url.Values{"coupon": {"HALF"}})
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	v.converge(t, 10*time.Second)

	v.waitUpcomingTotal(t, cus, 1000)

	v.post(t, "/v1/customers/"+cus, url.Values{"coupon": {"TEN"}})
	v.converge(t, 10*time.Second)
	v.waitUpcomingTotal(t, cus, 900)

	v.post(t, "/v1/subscriptions/"+sub, url.Values{"promotion_code": {promo}})
	v.converge(t, 10*time.Second)
	v.waitUpcomingTotal(t, cus, 500) // the subscription's discount before the customer's
	var redeemed int64
	v.pool.QueryRow(ctx, `SELECT times_redeemed FROM stripe.promotion_codes WHERE id = $1`, promo).Scan(&redeemed)
	if redeemed != 1 {
		t.Errorf("promotion code times_redeemed %d, want 1", redeemed)
	}

	if _, err := v.mut.Delete(ctx, "/v1/customers/"+cus+"/discount", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := v.mut.Delete(ctx, "/v1/subscriptions/"+sub+"/discount", nil); err != nil {
		t.Fatal(err)
	}
	v.converge(t, 10*time.Second)
	v.waitUpcomingTotal(t, cus, 1000)
	var discount *string
	v.pool.QueryRow(ctx, `SELECT discount::text FROM stripe.customers WHERE id = $1`, cus).Scan(&discount)
	if discount != nil {
		t.Errorf("customer discount after DELETE: %s", *discount)
	}
}

// The redemption that uses a coupon up deactivates all its promotion codes
// ("only active if the coupon is also valid"), with no promotion code
// event: the coupon's re-fetch lists them.
func TestUsedUpCouponDeactivatesItsPromotionCodes(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	v.post(t, "/v1/coupons", url.Values{"id": {"ONCE"}, "percent_off": {"10"}, "max_redemptions": {"1"}})
	used := v.post(t, "/v1/promotion_codes", url.Values{"coupon": {"ONCE"}})
	other := v.post(t, "/v1/promotion_codes", url.Values{"coupon": {"ONCE"}})
	cus := v.post(t, "/v1/customers", url.Values{"name": {"c"}})
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	v.converge(t, 10*time.Second)
	v.post(t, "/v1/customers/"+cus, url.Values{"promotion_code": {used}})
	v.converge(t, 10*time.Second)
	var active bool
	if err := v.pool.QueryRow(ctx, `SELECT active FROM stripe.promotion_codes WHERE id = $1`, other).Scan(&active); err != nil || active {
		t.Errorf("the other promotion code of a used-up coupon: active %v, %v", active, err)
	}
}

// waitUpcomingTotal waits until customer cus's stored upcoming invoice totals
// want, then checks it against Stripe's.
func (v *env) waitUpcomingTotal(t *testing.T, cus string, want int64) {
	t.Helper()
	var got int64
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if v.pool.QueryRow(context.Background(), `SELECT total FROM stripe.upcoming_invoices WHERE customer = $1`, cus).Scan(&got) == nil && got == want {
			break
		}
	}
	if got != want {
		t.Fatalf("upcoming invoice total %d, want %d", got, want)
	}
	v.checkUpcoming(t)
}

// TestDowngradeCreditBalance: a downgrade on a test clock billed at
// once (always_invoice) credits the customer's balance with its negative
// total, and the next renewal uses the credit. Stripe sends
// customer.updated for the balance and the invoices' own events; after
// each step every stripe.* table equals the emulator (converge), so do
// the customer's upcoming invoice and the stored balance fields named
// here, which are checked against their expected values too.
func TestDowngradeCreditBalance(t *testing.T) {
	v, call := opsEnv(t)
	ctx := context.Background()
	k, cus, sub, item := v.clockSubscription(t, call, 1000, url.Values{"items[0][quantity]": {"3"}})
	advance := v.clockAdvancer(t, k)
	balance := func(want int64) {
		t.Helper()
		var got int64
		if err := v.pool.QueryRow(ctx, `SELECT balance FROM stripe.customers WHERE id = $1`, cus).Scan(&got); err != nil || got != want {
			t.Errorf("stripe.customers.balance %d (err %v), want %d", got, err, want)
		}
	}
	invoice := func(reason string, want [3]int64) {
		t.Helper()
		var got [3]int64
		if err := v.pool.QueryRow(ctx, `SELECT starting_balance, ending_balance, amount_due FROM stripe.invoices
			WHERE subscription = $1 AND billing_reason = $2`, sub, reason).Scan(&got[0], &got[1], &got[2]); err != nil || got != want {
			t.Errorf("%s invoice: starting_balance, ending_balance, amount_due %v (err %v), want %v", reason, got, err, want)
		}
	}
	upcoming := func(starting, due int64) {
		t.Helper()
		var got [2]int64
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if v.pool.QueryRow(ctx, `SELECT starting_balance, amount_due FROM stripe.upcoming_invoices WHERE customer = $1`, cus).Scan(&got[0], &got[1]) == nil &&
				got == [2]int64{starting, due} {
				break
			}
		}
		if got != [2]int64{starting, due} {
			t.Errorf("upcoming invoice: starting_balance, amount_due %v, want [%d %d]", got, starting, due)
		}
		v.checkUpcoming(t)
	}

	advance(frozen + day)
	call("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"1"}, "proration_behavior": {"always_invoice"}})
	v.converge(t, 10*time.Second)
	// 30 of January's 31 days left: -3000×30/31 and 1000×30/31.
	const credit = -2903 + 968
	invoice("subscription_update", [3]int64{0, credit, 0})
	balance(credit)
	upcoming(credit, 0)

	advance(month(1) + day)
	invoice("subscription_cycle", [3]int64{credit, credit + 1000, 0})
	balance(credit + 1000)
	upcoming(credit+1000, 2000+credit)
}
