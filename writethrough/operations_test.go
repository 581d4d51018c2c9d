package writethrough

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/schema"
)

// stripeRefused runs a statement that reaches Stripe and that Stripe
// refuses: its SQLSTATE, and the local row left as it was.
func (w *walker) stripeRefused(code, table, id, col, keep, sql string, args ...any) {
	w.t.Helper()
	_, err := w.c.Exec(w.e.ctx, sql, args...)
	if sqlstate(err) != code {
		w.t.Fatalf("%s: want %s, got %v", sql, code, err)
	}
	w.local(table, id, col, keep)
}

// hinted asserts a refusal before any call whose hint names what to do.
func (w *walker) hinted(code, hint, sql string, args ...any) {
	w.t.Helper()
	before := w.e.calls()
	_, err := w.c.Exec(w.e.ctx, sql, args...)
	if sqlstate(err) != code {
		w.t.Fatalf("%s: want %s, got %v", sql, code, err)
	}
	if w.e.calls() != before {
		w.t.Fatalf("%s: Stripe was called", sql)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !strings.Contains(pe.Hint, hint) {
		w.t.Fatalf("%s: %v: want a hint that mentions %q", sql, err, hint)
	}
}

// pull brings an object Stripe made as a side effect into its table, as
// sync would.
func (w *walker) pull(table, id string) {
	w.t.Helper()
	tb, _ := schema.Lookup(table)
	w.e.ic.fetchAndApply(w.e.ctx, tb, []string{id})
	if got := w.e.local(`SELECT count(*)::text FROM stripe.`+table+` WHERE id = $1`, id); got != "1" {
		w.t.Fatalf("stripe.%s %s not pulled", table, id)
	}
}

// TestTableOperations walks, through the proxy, the writes Stripe
// has on the tables that the first walk (TestEveryTableOperation) leaves
// out: charges, disputes, payouts and subscription schedules, which
// pgstripe refused as read-only although Stripe updates, cancels or closes
// them, checkout sessions' expiry and refunds' cancel, and the refusals
// Stripe answers itself.
func TestTableOperations(t *testing.T) {
	e := setup(t)
	w := &walker{e: e, t: t, c: e.client(e.proxied(), pgx.QueryExecModeCacheStatement)}

	cus := w.one(`INSERT INTO stripe.customers (email) VALUES ('review@b.co') RETURNING id`)
	prod := w.one(`INSERT INTO stripe.products (name) VALUES ('Review') RETURNING id`)
	price := w.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)

	// charges: create (Stripe's legacy API; the token goes in _params),
	// update; DELETE points to refunds.
	ch := w.one(`INSERT INTO stripe.charges (amount, currency, _params) VALUES (1500, 'usd', '{"source":"tok_visa"}') RETURNING id`)
	w.local("charges", ch, "amount", "1500")
	w.exec("UPDATE 1", `UPDATE stripe.charges SET description = $1, metadata = '{"order":"7"}' WHERE id = $2`, "order 7", ch)
	w.local("charges", ch, "description", "order 7")
	w.remote("charges", ch, "description", "order 7")
	w.hinted("0A000", "stripe.refunds", `DELETE FROM stripe.charges WHERE id = $1`, ch)

	// refunds: Stripe cancels only a refund awaiting customer action; a
	// card refund is done at once, so Stripe refuses (55000) and the row
	// stays as it is.
	re := w.one(`INSERT INTO stripe.refunds (charge, amount) VALUES ($1, 100) RETURNING id`, ch)
	w.stripeRefused("55000", "refunds", re, "status", "succeeded", `UPDATE stripe.refunds SET status = 'canceled' WHERE id = $1`, re)
	w.hinted("0A000", "status = 'canceled'", `DELETE FROM stripe.refunds WHERE id = $1`, re)

	// disputes: opened by the bank (a test card), updated with evidence,
	// closed (lost); no INSERT or DELETE.
	dch := w.one(`INSERT INTO stripe.charges (amount, currency, _params) VALUES (2500, 'usd', '{"source":"tok_createDispute"}') RETURNING id`)
	dp := ""
	for id, raw := range e.emu.Objects("disputes") {
		if strings.Contains(string(raw), dch) {
			dp = id
		}
	}
	if dp == "" {
		t.Fatalf("no dispute for charge %s", dch)
	}
	w.pull("disputes", dp)
	w.hinted("0A000", "UPDATE", `INSERT INTO stripe.disputes (charge) VALUES ($1)`, dch)
	w.hinted("0A000", "status = 'lost'", `DELETE FROM stripe.disputes WHERE id = $1`, dp)
	// submit=false stages the evidence: the dispute still needs a
	// response, and closing it then is what Stripe documents.
	w.exec("UPDATE 1", `UPDATE stripe.disputes SET evidence = '{"product_description":"a hat"}', metadata = '{"case":"1"}', _params = '{"submit":false}' WHERE id = $1`, dp)
	w.local("disputes", dp, "evidence->>'product_description'", "a hat")
	w.local("disputes", dp, "status", "needs_response")
	w.exec("UPDATE 1", `UPDATE stripe.disputes SET status = 'lost' WHERE id = $1`, dp)
	w.local("disputes", dp, "status", "lost")
	w.remote("disputes", dp, "status", "lost")

	// payouts: create, update, cancel while pending; the row stays, as
	// the payout does in Stripe.
	po := w.one(`INSERT INTO stripe.payouts (amount, currency) VALUES (500, 'usd') RETURNING id`)
	w.local("payouts", po, "status", "pending")
	w.exec("UPDATE 1", `UPDATE stripe.payouts SET metadata = '{"batch":"9"}', status = 'canceled' WHERE id = $1`, po)
	w.local("payouts", po, "metadata->>'batch'", "9")
	w.local("payouts", po, "status", "canceled")
	w.remote("payouts", po, "status", "canceled")
	w.hinted("0A000", "status = 'canceled'", `DELETE FROM stripe.payouts WHERE id = $1`, po)

	// subscription schedules: create, update, release and cancel.
	phases := `[{"items":[{"price":"` + price + `"}]}]`
	ss := w.one(`INSERT INTO stripe.subscription_schedules (customer, phases, _params) VALUES ($1, $2, '{"start_date":"now"}') RETURNING id`, cus, phases)
	w.exec("UPDATE 1", `UPDATE stripe.subscription_schedules SET metadata = '{"k":"v"}' WHERE id = $1`, ss)
	w.local("subscription_schedules", ss, "metadata->>'k'", "v")
	w.hinted("0A000", "status = 'released'", `DELETE FROM stripe.subscription_schedules WHERE id = $1`, ss)
	w.exec("UPDATE 1", `UPDATE stripe.subscription_schedules SET status = 'released' WHERE id = $1`, ss)
	w.local("subscription_schedules", ss, "status", "released")
	w.remote("subscription_schedules", ss, "status", "released")
	ss2 := w.one(`INSERT INTO stripe.subscription_schedules (customer, phases, _params) VALUES ($1, $2, '{"start_date":"now"}') RETURNING id`, cus, phases)
	w.exec("UPDATE 1", `UPDATE stripe.subscription_schedules SET status = 'canceled' WHERE id = $1`, ss2)
	w.local("subscription_schedules", ss2, "status", "canceled")

	// checkout sessions: expire; no other update, no DELETE.
	cs := w.one(`INSERT INTO stripe.checkout_sessions (mode, success_url, line_items) VALUES ('subscription', 'https://x.test/ok', $1) RETURNING id`,
		`[{"price":"`+price+`","quantity":1}]`)
	w.hinted("0A000", "status = 'expired'", `UPDATE stripe.checkout_sessions SET success_url = 'https://x.test/new' WHERE id = $1`, cs)
	w.hinted("0A000", "status = 'expired'", `DELETE FROM stripe.checkout_sessions WHERE id = $1`, cs)
	w.exec("UPDATE 1", `UPDATE stripe.checkout_sessions SET status = 'expired' WHERE id = $1`, cs)
	w.local("checkout_sessions", cs, "status", "expired")
	w.remote("checkout_sessions", cs, "status", "expired")

	// invoices: Stripe deletes drafts only; a finalized one is refused
	// with Stripe's message and stays.
	inv := w.one(`INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id`, cus)
	w.one(`INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES ($1, $2, 300, 'usd') RETURNING id`, cus, inv)
	w.exec("UPDATE 1", `UPDATE stripe.invoices SET status = 'open' WHERE id = $1`, inv)
	w.stripeRefused("55000", "invoices", inv, "status", "open", `DELETE FROM stripe.invoices WHERE id = $1`, inv)

	// Tables Stripe has no write for: a hint that says what to do.
	w.hinted("0A000", "stripe.invoiceitems", `INSERT INTO stripe.invoice_line_items (invoice, amount) VALUES ($1, 100)`, inv)
	w.hinted("0A000", "stripe.subscriptions", `DELETE FROM stripe.upcoming_invoices WHERE customer = $1`, cus)
	w.hinted("0A000", "no endpoint", `UPDATE stripe.balance_transactions SET description = 'x'`)
}

// TestTrialEndNowParams runs the README's example of a value no
// column can hold, `_params = '{"trial_end": "now"}'`, on a trialing
// subscription: Stripe ends the trial at once (emulator trials.go), and
// the row the write-through stores from Stripe's answer shows it ended
// (active, trial_end the new period's start, a new latest invoice,
// charged to the customer's card). Before, the emulator dropped "now"
// and the row stayed trialing.
func TestTrialEndNowParams(t *testing.T) {
	e := setup(t)
	cus := e.one(`INSERT INTO stripe.customers (email) VALUES ('trial@b.co') RETURNING id`)
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Trial') RETURNING id`)
	price := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	pm := e.one(`INSERT INTO stripe.payment_methods (type, card) VALUES ('card', '{"token":"tok_visa"}') RETURNING id`)
	e.ok(`UPDATE stripe.payment_methods SET customer = $1 WHERE id = $2`, cus, pm)
	e.ok(`UPDATE stripe.customers SET invoice_settings = $1 WHERE id = $2`, `{"default_payment_method":"`+pm+`"}`, cus)
	sub := e.one(`INSERT INTO stripe.subscriptions (customer, items, _params) VALUES ($1, $2, '{"trial_period_days": 10}') RETURNING id`,
		cus, `[{"price":"`+price+`"}]`)
	if got := e.local(`SELECT status FROM stripe.subscriptions WHERE id = $1`, sub); got != "trialing" {
		t.Fatalf("new subscription %s: %s, want trialing", sub, got)
	}
	first := e.local(`SELECT latest_invoice FROM stripe.subscriptions WHERE id = $1`, sub)

	e.ok(`UPDATE stripe.subscriptions SET _params = '{"trial_end": "now"}' WHERE id = $1`, sub)
	got := e.local(`SELECT status || ' ' || (trial_end = current_period_start AND billing_cycle_anchor = current_period_start AND current_period_end > current_period_start)::text || ' ' || (latest_invoice <> $2)::text
		FROM stripe.subscriptions WHERE id = $1`, sub, first)
	if got != "active true true" {
		t.Fatalf("stored subscription after trial_end=now: %q, want \"active true true\" (active, the trial ended at the new period's start, a new invoice)", got)
	}
	inv := e.local(`SELECT latest_invoice FROM stripe.subscriptions WHERE id = $1`, sub)
	if o := e.stripeObj("invoices", inv); o == nil || o["billing_reason"] != "subscription_update" || o["status"] != "paid" || o["amount_paid"] != float64(1000) {
		t.Fatalf("invoice %s in Stripe: %v", inv, o)
	}
}
