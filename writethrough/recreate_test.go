package writethrough

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCouponAgainAfterDelete: a coupon's discount can't be updated,
// so a user deletes it and creates it again with its id; the two
// statements run within a second. The new coupon must be stored (and
// returned), not blocked by the old one's tombstone.
func TestCouponAgainAfterDelete(t *testing.T) {
	e := setup(t)
	w := &walker{e: e, t: t, c: e.client(e.proxied(), pgx.QueryExecModeCacheStatement)}
	w.one(`INSERT INTO stripe.coupons (id, percent_off, duration) VALUES ('SUMMER', 10, 'once') RETURNING id`)
	// The old coupon exists for a while: created in an earlier second.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	w.exec("DELETE 1", `DELETE FROM stripe.coupons WHERE id = 'SUMMER'`)
	w.one(`INSERT INTO stripe.coupons (id, percent_off, duration) VALUES ('SUMMER', 20, 'once') RETURNING id`)
	w.local("coupons", "SUMMER", "percent_off", "20")
}

// TestSchedulePhasesUpdate: an UPDATE that edits a schedule's
// phases in place (jsonb_set) sends the stored phases back; each carries
// its currency, which Stripe's update doesn't take ("Received unknown
// parameter: phases[0][currency]").
func TestSchedulePhasesUpdate(t *testing.T) {
	e := setup(t)
	w := &walker{e: e, t: t, c: e.client(e.proxied(), pgx.QueryExecModeCacheStatement)}
	cus := w.one(`INSERT INTO stripe.customers (email) VALUES ('review@b.co') RETURNING id`)
	prod := w.one(`INSERT INTO stripe.products (name) VALUES ('Review') RETURNING id`)
	price := w.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	ss := w.one(`INSERT INTO stripe.subscription_schedules (customer, phases, _params) VALUES ($1, $2, '{"start_date":"now"}') RETURNING id`,
		cus, `[{"items":[{"price":"`+price+`"}], "iterations": 2}]`)
	w.local("subscription_schedules", ss, "phases->0->>'currency'", "usd")
	w.exec("UPDATE 1", `UPDATE stripe.subscription_schedules SET phases = jsonb_set(phases, '{0,metadata}', '{"a":"b"}') WHERE id = $1`, ss)
	w.local("subscription_schedules", ss, "phases->0->'metadata'->>'a'", "b")
	// Changing the currency itself is refused before any call.
	w.refused("42703", `UPDATE stripe.subscription_schedules SET phases = jsonb_set(phases, '{0,currency}', '"eur"') WHERE id = $1`, ss)
}
