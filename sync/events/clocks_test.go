package events_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
	"github.com/pgstripe/pgstripe/workload"
)

// Customers on a test clock, and their subscriptions, are left out of
// Stripe's plain lists. A re-backfill (cursor past retention) removes
// every row it did not write; the clock's objects, whether the first
// backfill or events brought them, must survive it.
func TestRebackfillKeepsTestClockObjects(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	w := workload.New(v.mut, 41)
	for range 3 {
		w.Do(ctx, "createCustomer")
	}
	onClock := v.clockCustomers(t)
	backfilled := onClock()
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4}); err != nil {
		t.Fatal(err)
	}
	stop := v.loop(t, events.Config{})
	viaEvents := onClock() // after the backfill: its events bring it
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	v.e.SetClockOffset(31 * 24 * time.Hour)
	w.Do(ctx, "createCustomer")
	stop = v.loop(t, events.Config{Backfill: func(ctx context.Context, since time.Time) error {
		return backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4, RestartCompletedBefore: since})
	}})
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'rebackfill_complete'`).Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no re-backfill")
		}
		time.Sleep(100 * time.Millisecond)
	}
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, cus := range []string{backfilled, viaEvents} {
		var subs int
		if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.subscriptions WHERE customer = $1`, cus).Scan(&subs); err != nil || subs != 1 {
			t.Errorf("customer %s on the clock: %d subscriptions after the re-backfill (err %v), want 1", cus, subs, err)
		}
	}
}

// clockCustomers makes a test clock frozen in 2020 and returns a function
// that makes a customer on it, with a subscription, and returns its id.
func (v *env) clockCustomers(t *testing.T) func() string {
	t.Helper()
	k := emulatortest.NewClock(func(path string, q url.Values) string { t.Helper(); return v.post(t, path, q) })
	price := k.Price(700, "month")
	return func() string {
		cus := k.Customer()
		v.post(t, "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "payment_behavior": {"default_incomplete"}})
		return cus
	}
}

// TestClockRenewals: advancing a test clock renews its
// subscriptions (paid, declined, send_invoice), ends a trial and a
// cancel_at_period_end, with the events Stripe sends for them; after each
// advance every stripe.* table equals the emulator, and the renewal
// invoices, their lines, payment intents and charges are there.
func TestClockRenewals(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, call := opsEnv(t)
	k := emulatortest.NewClock(call)
	price := k.Price(700, "month")
	renewing := k.Subscribe(k.Customer(), price, url.Values{"items[0][quantity]": {"2"}})
	trial := k.Subscribe(k.Customer(), price, url.Values{"trial_period_days": {"10"}})
	ending := k.Subscribe(k.Customer(), price, nil)
	call("/v1/subscriptions/"+ending, url.Values{"cancel_at_period_end": {"true"}})
	decliningCus := k.Customer()
	declining := k.Subscribe(decliningCus, price, nil)
	call("/v1/subscriptions/"+declining, url.Values{"default_payment_method": {k.Card(decliningCus, "pm_card_chargeCustomerFail")}})
	sent := call("/v1/subscriptions", url.Values{"customer": {k.Customer()}, "items[0][price]": {price},
		"collection_method": {"send_invoice"}, "days_until_due": {"5"}})
	v.converge(t, 10*time.Second)

	advance := v.clockAdvancer(t, k)
	// The trial ends (day 10), the first renewals (month 1) and the
	// cancellation at the period end.
	advance(month(1) + day)
	// Second renewals; the trial's first paid period renews too (day 10
	// of month 1).
	advance(month(2) + day)

	ctx := context.Background()
	want := map[string]struct {
		status string
		cycles int
	}{
		renewing: {"active", 2}, trial: {"active", 2}, ending: {"canceled", 0},
		declining: {"canceled", 1}, // its renewal's retries ended two weeks in (dunning)
		sent:      {"past_due", 2}, // its first invoice unpaid past its due date
	}
	for id, w := range want {
		var status string
		var cycles int
		if err := v.pool.QueryRow(ctx, `SELECT s.status, (SELECT count(*) FROM stripe.invoices i
			WHERE i.subscription = s.id AND i.billing_reason = 'subscription_cycle') FROM stripe.subscriptions s WHERE s.id = $1`, id).Scan(&status, &cycles); err != nil {
			t.Fatalf("subscription %s: %v", id, err)
		}
		if status != w.status || cycles != w.cycles {
			t.Errorf("subscription %s: %s with %d renewal invoices stored, want %s with %d", id, status, cycles, w.status, w.cycles)
		}
	}
	var paid int64
	if err := v.pool.QueryRow(ctx, `SELECT coalesce(sum(amount_paid), 0) FROM stripe.invoices WHERE subscription = $1 AND billing_reason = 'subscription_cycle'`,
		renewing).Scan(&paid); err != nil || paid != 2*1400 {
		t.Errorf("renewals of %s paid %d (err %v), want %d", renewing, paid, err, 2*1400)
	}
}

// TestClockProrations: a quantity change mid-period on a test clock
// makes two pending proration invoice items (invoiceitem.created); they
// reach stripe.invoiceitems and the customer's upcoming invoice, and the
// renewal at the period's end bills them, which the events bring to
// stripe.invoiceitems (no longer pending) and stripe.invoices. After each
// step every stripe.* table equals the emulator, and so does the stored
// upcoming invoice.
func TestClockProrations(t *testing.T) {
	v, call := opsEnv(t)
	ctx := context.Background()
	k, cus, sub, item := v.clockSubscription(t, call, 700, nil)
	advance := v.clockAdvancer(t, k)
	v.waitUpcomingTotal(t, cus, 700)

	// 21 of January's 31 days left: -700×21/31 and 3×700×21/31, rounded.
	advance(frozen + 10*day)
	call("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"}})
	v.converge(t, 10*time.Second)
	const credit, debit = -474, 1423
	var n, sum int64
	if err := v.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(amount), 0) FROM stripe.invoiceitems
		WHERE subscription = $1 AND subscription_item = $2 AND proration AND invoice IS NULL`, sub, item).Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 2 || sum != credit+debit {
		t.Errorf("%d pending prorations of %d stored, want 2 of %d", n, sum, credit+debit)
	}
	v.waitUpcomingTotal(t, cus, 3*700+credit+debit)

	advance(month(1) + day)
	var inv string
	var paid int64
	if err := v.pool.QueryRow(ctx, `SELECT id, amount_paid FROM stripe.invoices WHERE subscription = $1 AND billing_reason = 'subscription_cycle'`,
		sub).Scan(&inv, &paid); err != nil {
		t.Fatal(err)
	}
	if paid != 3*700+credit+debit {
		t.Errorf("renewal paid %d, want %d", paid, 3*700+credit+debit)
	}
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.invoiceitems WHERE subscription = $1 AND proration AND invoice = $2`,
		sub, inv).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d prorations stored on the renewal invoice (err %v), want 2", n, err)
	}
	v.waitUpcomingTotal(t, cus, 3*700)
}

// TestClockDunning: a renewal whose card fails is retried on the
// schedule as the test clock advances; one subscription's customer
// replaces the card and a retry pays (active again), the other's retries
// run out two weeks in and it is canceled (reason payment_failed), its
// invoice left open with collection stopped. After each advance every
// stripe.* table equals the emulator (_raw of every row), and the rows
// hold the end of the dunning: statuses, attempt_count,
// next_payment_attempt, auto_advance and the failed charges.
func TestClockDunning(t *testing.T) {
	v, call := opsEnv(t)
	ctx := context.Background()
	const gap = 14 * day / 8 // between two retries (emulator doc.go)
	renewal := month(1)
	k := emulatortest.NewClock(call)
	price := k.Price(700, "month")
	failing := func() (sub, cus string) {
		cus = k.Customer()
		sub = k.Subscribe(cus, price, nil)
		call("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.Card(cus, "pm_card_chargeCustomerFail")}})
		return sub, cus
	}
	lapsing, _ := failing()
	recovering, recoveringCus := failing()
	advance := v.clockAdvancer(t, k)
	advance(renewal)
	call("/v1/subscriptions/"+recovering, url.Values{"default_payment_method": {k.Card(recoveringCus, "pm_card_visa")}})
	advance(renewal + 3*gap)
	advance(renewal + 14*day)

	for _, w := range []struct {
		sub, status, reason, invStatus string
		attempts                       int64
		failedCharges                  int
	}{
		{sub: lapsing, status: "canceled", reason: "payment_failed", invStatus: "open", attempts: 9, failedCharges: 9},
		{sub: recovering, status: "active", invStatus: "paid", attempts: 2, failedCharges: 1},
	} {
		var status, invStatus string
		var reason *string
		var attempts int64
		var next *time.Time
		var autoAdvance bool
		var failed int
		if err := v.pool.QueryRow(ctx, `SELECT s.status, s.cancellation_details->>'reason', i.status, i.attempt_count, i.next_payment_attempt, i.auto_advance,
			(SELECT count(*) FROM stripe.charges c WHERE c.invoice = i.id AND c.status = 'failed')
			FROM stripe.subscriptions s JOIN stripe.invoices i ON i.subscription = s.id AND i.billing_reason = 'subscription_cycle'
			WHERE s.id = $1`, w.sub).Scan(&status, &reason, &invStatus, &attempts, &next, &autoAdvance, &failed); err != nil {
			t.Fatalf("subscription %s: %v", w.sub, err)
		}
		if status != w.status || (w.reason != "" && (reason == nil || *reason != w.reason)) || invStatus != w.invStatus ||
			attempts != w.attempts || next != nil || failed != w.failedCharges {
			t.Errorf("subscription %s stored: %s (reason %v), renewal invoice %s, %d attempts, next %v, %d failed charges; want %s (%s), %s, %d, none, %d",
				w.sub, status, reason, invStatus, attempts, next, failed, w.status, w.reason, w.invStatus, w.attempts, w.failedCharges)
		}
		if w.status == "canceled" && autoAdvance {
			t.Errorf("subscription %s: its open invoice is still collected automatically (auto_advance)", w.sub)
		}
	}
}

// TestClockIntervalUpgrade: a monthly subscription on a test clock
// moved to a yearly price mid-period resets its billing cycle (emulator
// prorations.go): the subscription's new anchor and period, the credit
// for January's unused time and the subscription_update invoice that
// bills the year at once reach the stripe.* tables through the events,
// and after the change and after a bounded advance past the old
// period's end (no renewal: the new period runs a year) every stripe.*
// table equals the emulator, and so does the stored upcoming invoice.
func TestClockIntervalUpgrade(t *testing.T) {
	v, call := opsEnv(t)
	ctx := context.Background()
	at := int64(frozen + 10*day)
	yearEnd := time.Unix(at, 0).UTC().AddDate(1, 0, 0)
	k, cus, sub, item := v.clockSubscription(t, call, 700, nil)
	yearly := k.Price(7000, "year")
	advance := v.clockAdvancer(t, k)
	advance(at)

	call("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][price]": {yearly}})
	v.converge(t, 10*time.Second)
	// 21 of January's 31 days unused: -700×21/31, rounded.
	const credit = -474
	var anchor, start, end time.Time
	var status, inv string
	if err := v.pool.QueryRow(ctx, `SELECT billing_cycle_anchor, current_period_start, current_period_end, status, latest_invoice
		FROM stripe.subscriptions WHERE id = $1`, sub).Scan(&anchor, &start, &end, &status, &inv); err != nil {
		t.Fatal(err)
	}
	if anchor.Unix() != at || start.Unix() != at || !end.Equal(yearEnd) || status != "active" {
		t.Errorf("stored subscription: anchor %v, period %v to %v, %s; want the cycle reset at %v until %v, active",
			anchor.UTC(), start.UTC(), end.UTC(), status, time.Unix(at, 0).UTC(), yearEnd)
	}
	var reason, invStatus string
	var paid, credits int64
	if err := v.pool.QueryRow(ctx, `SELECT i.billing_reason, i.status, i.amount_paid,
		(SELECT coalesce(sum(ii.amount), 0) FROM stripe.invoiceitems ii WHERE ii.invoice = i.id AND ii.proration AND ii.subscription = $2)
		FROM stripe.invoices i WHERE i.id = $1`, inv, sub).Scan(&reason, &invStatus, &paid, &credits); err != nil {
		t.Fatal(err)
	}
	if reason != "subscription_update" || invStatus != "paid" || paid != 7000+credit || credits != credit {
		t.Errorf("stored latest invoice: %s %s, paid %d with prorations %d; want subscription_update paid %d with %d", reason, invStatus, paid, credits, 7000+credit, credit)
	}
	v.waitUpcomingTotal(t, cus, 7000)

	// Past January's end: the old cycle would have renewed, the new one
	// does not.
	advance(month(1) + day)
	var cycles int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.invoices WHERE subscription = $1 AND billing_reason = 'subscription_cycle'`, sub).Scan(&cycles); err != nil || cycles != 0 {
		t.Errorf("%d renewal invoices stored (err %v), want none before %v", cycles, err, yearEnd)
	}
	v.waitUpcomingTotal(t, cus, 7000)
}

// The start of the clocks of emulatortest.NewClock, a day, and the
// period boundaries of a monthly subscription created at the start.
const (
	frozen = emulatortest.ClockStart
	day    = emulatortest.Day
)

var month = emulatortest.MonthStart

// clockSubscription makes a test clock (through call, opsEnv's) with a
// customer subscribed to a monthly price of amount, charged to a card
// that pays, with extra's params besides; once every stripe.* table
// equals the emulator it returns them and the subscription's item, as
// stored.
func (v *env) clockSubscription(t *testing.T, call func(string, url.Values) string, amount int, extra url.Values) (k *emulatortest.Clock, cus, sub, item string) {
	t.Helper()
	k = emulatortest.NewClock(call)
	price := k.Price(amount, "month")
	cus = k.Customer()
	sub = k.Subscribe(cus, price, extra)
	v.converge(t, 10*time.Second)
	return k, cus, sub, v.onlyItem(t, sub)
}

// clockAdvancer returns a function that advances clock k to a time and
// waits until every stripe.* table equals the emulator.
func (v *env) clockAdvancer(t *testing.T, k *emulatortest.Clock) func(int64) {
	return func(ts int64) {
		t.Helper()
		k.Advance(ts)
		v.converge(t, 10*time.Second)
	}
}

// onlyItem is the id of subscription sub's item, as stored; none fails.
func (v *env) onlyItem(t *testing.T, sub string) string {
	t.Helper()
	var item string
	if err := v.pool.QueryRow(context.Background(), `SELECT id FROM stripe.subscription_items WHERE subscription = $1`, sub).Scan(&item); err != nil {
		t.Fatal(err)
	}
	return item
}

// TestClockPendingUpdate: an update with
// payment_behavior=pending_if_incomplete whose invoice declines reaches
// stripe.subscriptions.pending_update through the events (the item
// unchanged in stripe.subscription_items); paying the invoice applies it
// (customer.subscription.pending_update_applied: pending_update null, the
// new quantity stored); a second one left unpaid expires as the test
// clock passes its expires_at (invoice voided,
// customer.subscription.pending_update_expired: pending_update null
// again). After each step every stripe.* table equals the emulator.
func TestClockPendingUpdate(t *testing.T) {
	v, call := opsEnv(t)
	k, cus, sub, item := v.clockSubscription(t, call, 700, nil)
	call("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.Card(cus, "pm_card_chargeCustomerFail")}})
	v.converge(t, 10*time.Second)
	advance := v.clockAdvancer(t, k)
	at := int64(frozen + 10*day)
	advance(at)

	pending := func(q int) {
		t.Helper()
		call("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {fmt.Sprint(q)},
			"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}})
		v.converge(t, 10*time.Second)
	}
	state := func() (pendingQty, expires, qty, invStatus string) {
		t.Helper()
		return v.queryText(t, `SELECT pending_update->'subscription_items'->0->>'quantity' FROM stripe.subscriptions WHERE id = $1`, sub),
			v.queryText(t, `SELECT pending_update->>'expires_at' FROM stripe.subscriptions WHERE id = $1`, sub),
			v.queryText(t, `SELECT quantity::text FROM stripe.subscription_items WHERE id = $1`, item),
			v.queryText(t, `SELECT i.status FROM stripe.subscriptions s JOIN stripe.invoices i ON i.id = s.latest_invoice WHERE s.id = $1`, sub)
	}

	pending(3)
	if pq, exp, q, st := state(); pq != "3" || exp != fmt.Sprint(at+23*3600) || q != "1" || st != "open" {
		t.Fatalf("pending update stored: quantity %q expiring %q, item quantity %q, invoice %q; want 3, %d, 1, open", pq, exp, q, st, at+23*3600)
	}
	inv := v.queryText(t, `SELECT latest_invoice FROM stripe.subscriptions WHERE id = $1`, sub)
	call("/v1/invoices/"+inv+"/pay", url.Values{"payment_method": {"pm_card_visa"}})
	v.converge(t, 10*time.Second)
	if pq, exp, q, st := state(); pq != "" || exp != "" || q != "3" || st != "paid" {
		t.Fatalf("after paying: pending quantity %q expiring %q, item quantity %q, invoice %q; want none, 3, paid", pq, exp, q, st)
	}

	pending(5)
	if pq, _, q, st := state(); pq != "5" || q != "3" || st != "open" {
		t.Fatalf("second pending update stored: quantity %q, item %q, invoice %q", pq, q, st)
	}
	advance(at + 23*3600)
	if pq, exp, q, st := state(); pq != "" || exp != "" || q != "3" || st != "void" {
		t.Fatalf("after expiry: pending quantity %q expiring %q, item quantity %q, invoice %q; want none, 3, void", pq, exp, q, st)
	}
}

// TestSendInvoiceOverdue: a send_invoice subscription off test
// clocks whose invoice the emulator's clock passes unpaid turns past_due
// (customer.subscription.updated), and paying that invoice out of band
// makes it active again; each status reaches stripe.subscriptions
// through the events, the invoice's payment stripe.invoices, and after
// each step every stripe.* table equals the emulator.
func TestSendInvoiceOverdue(t *testing.T) {
	v, call := opsEnv(t)
	ctx := context.Background()
	cus := call("/v1/customers", url.Values{"name": {"Net 3"}})
	prod := call("/v1/products", url.Values{"name": {"Seats"}})
	price := call("/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"900"}, "recurring[interval]": {"month"}})
	sub := call("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price},
		"collection_method": {"send_invoice"}, "days_until_due": {"3"}})
	stored := func(want string) string {
		t.Helper()
		v.converge(t, 10*time.Second)
		var status, inv string
		if err := v.pool.QueryRow(ctx, `SELECT status, latest_invoice FROM stripe.subscriptions WHERE id = $1`, sub).Scan(&status, &inv); err != nil {
			t.Fatal(err)
		}
		if status != want {
			t.Fatalf("stripe.subscriptions has %s %s, want %s", sub, status, want)
		}
		return inv
	}
	inv := stored("active")

	v.e.SetClockOffset(3*24*time.Hour + time.Hour)
	if got := stored("past_due"); got != inv {
		t.Fatalf("latest_invoice %s after the due date, want %s", got, inv)
	}

	call("/v1/invoices/"+inv+"/pay", url.Values{"paid_out_of_band": {"true"}})
	stored("active")
	var status string
	if err := v.pool.QueryRow(ctx, `SELECT status FROM stripe.invoices WHERE id = $1`, inv).Scan(&status); err != nil || status != "paid" {
		t.Errorf("stripe.invoices has %s %s (err %v), want paid", inv, status, err)
	}
}

// TestClockDunningLatestPaid: a weekly subscription's first
// renewal is still retried when its second, failed too, is paid by hand
// (active again); the first's last retry at week 3 leaves the
// subscription as it is, as Stripe does when the latest invoice is paid
// (emulator billing.go, retriesExhausted), and the third renewal at that
// moment fails and makes it past_due. stripe.subscriptions and
// stripe.invoices follow: past_due, not canceled; the first invoice open
// with its retries over, the second paid, the third dunned.
func TestClockDunningLatestPaid(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, call := opsEnv(t)
	ctx := context.Background()
	week := func(n int64) int64 { return frozen + n*7*day }
	k := emulatortest.NewClock(call)
	cus := k.Customer()
	sub := k.Subscribe(cus, k.Price(300, "week"), nil)
	call("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.Card(cus, "pm_card_chargeCustomerFail")}})
	advance := v.clockAdvancer(t, k)
	advance(week(2))

	renewals := func() []string {
		t.Helper()
		rows, _ := v.pool.Query(ctx, `SELECT id FROM stripe.invoices WHERE subscription = $1 AND billing_reason = 'subscription_cycle'
			ORDER BY created, id`, sub)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	invs := renewals()
	if len(invs) != 2 {
		t.Fatalf("%d renewal invoices stored after two weeks, want 2", len(invs))
	}
	call("/v1/invoices/"+invs[1]+"/pay", url.Values{"payment_method": {"pm_card_visa"}})
	v.converge(t, 10*time.Second)
	advance(week(3))

	var status string
	var canceledAt *time.Time
	if err := v.pool.QueryRow(ctx, `SELECT status, canceled_at FROM stripe.subscriptions WHERE id = $1`, sub).Scan(&status, &canceledAt); err != nil {
		t.Fatal(err)
	}
	if status != "past_due" || canceledAt != nil {
		t.Errorf("stored subscription at week 3: %s, canceled_at %v; want past_due (its third renewal failed), not canceled", status, canceledAt)
	}
	invs = renewals()
	if len(invs) != 3 {
		t.Fatalf("%d renewal invoices stored at week 3, want 3", len(invs))
	}
	for i, w := range []struct {
		status   string
		attempts int64
		next     bool
	}{{"open", 9, false}, {"paid", 1, false}, {"open", 1, true}} {
		var st string
		var attempts int64
		var next *time.Time
		if err := v.pool.QueryRow(ctx, `SELECT status, attempt_count, next_payment_attempt FROM stripe.invoices WHERE id = $1`,
			invs[i]).Scan(&st, &attempts, &next); err != nil {
			t.Fatal(err)
		}
		if st != w.status || attempts != w.attempts || (next != nil) != w.next {
			t.Errorf("renewal %d (%s) stored: %s, %d attempts, next attempt %v; want %s, %d, next attempt set %v",
				i+1, invs[i], st, attempts, next, w.status, w.attempts, w.next)
		}
	}
}

// TestClockTrialEndedEarly: a trial on a test clock ended two days
// in with trial_end=now (emulator trials.go) reaches the stripe.* tables
// through the events: the subscription active with its trial_end,
// anchor and new period at the request, and the subscription_update
// invoice that billed the new period at once, paid; after the change and
// after an advance past the old trial end (no renewal there) every
// stripe.* table equals the emulator.
func TestClockTrialEndedEarly(t *testing.T) {
	v, call := opsEnv(t)
	ctx := context.Background()
	at := int64(frozen + 2*day)
	periodEnd := time.Unix(at, 0).UTC().AddDate(0, 1, 0)
	k, _, sub, _ := v.clockSubscription(t, call, 700, url.Values{"trial_period_days": {"10"}})
	advance := v.clockAdvancer(t, k)
	advance(at)

	call("/v1/subscriptions/"+sub, url.Values{"trial_end": {"now"}})
	v.converge(t, 10*time.Second)
	var trialEnd, anchor, start, end time.Time
	var status, inv string
	if err := v.pool.QueryRow(ctx, `SELECT trial_end, billing_cycle_anchor, current_period_start, current_period_end, status, latest_invoice
		FROM stripe.subscriptions WHERE id = $1`, sub).Scan(&trialEnd, &anchor, &start, &end, &status, &inv); err != nil {
		t.Fatal(err)
	}
	if status != "active" || trialEnd.Unix() != at || anchor.Unix() != at || start.Unix() != at || !end.Equal(periodEnd) {
		t.Errorf("stored subscription: %s, trial_end %v, anchor %v, period %v to %v; want active, the trial ended at %v, until %v",
			status, trialEnd.UTC(), anchor.UTC(), start.UTC(), end.UTC(), time.Unix(at, 0).UTC(), periodEnd)
	}
	var reason, invStatus string
	var paid int64
	if err := v.pool.QueryRow(ctx, `SELECT billing_reason, status, amount_paid FROM stripe.invoices WHERE id = $1`, inv).Scan(&reason, &invStatus, &paid); err != nil {
		t.Fatal(err)
	}
	if reason != "subscription_update" || invStatus != "paid" || paid != 700 {
		t.Errorf("stored latest invoice %s: %s %s paid %d, want subscription_update paid 700", inv, reason, invStatus, paid)
	}

	// The old trial end (day 10) passes with no renewal.
	advance(frozen + 11*day)
	var cycles int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.invoices WHERE subscription = $1 AND billing_reason = 'subscription_cycle'`, sub).Scan(&cycles); err != nil || cycles != 0 {
		t.Errorf("%d renewal invoices stored (err %v), want none before %v", cycles, err, periodEnd)
	}
}
