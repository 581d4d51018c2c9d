package writethrough

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/verify"
)

// TestCheckoutLineItems: a checkout session created through the
// proxy lands with its line items, all of them (Stripe sends a session's
// line_items only when expanded, and then only the first 10), and its
// expiry, whose answer Stripe gives without them, keeps them.
func TestCheckoutLineItems(t *testing.T) {
	e := setup(t)
	prod := e.ok(`INSERT INTO stripe.products (name) VALUES ('Items') RETURNING id`).rows[0][0]
	price := e.ok(`INSERT INTO stripe.prices (product, currency, unit_amount) VALUES ($1, 'usd', 700) RETURNING id`, prod).rows[0][0]
	var items []string
	for i := range 12 {
		items = append(items, fmt.Sprintf(`{"price":%q,"quantity":%d}`, price, i+1))
	}
	cs := e.ok(`INSERT INTO stripe.checkout_sessions (mode, success_url, line_items) VALUES ('payment', 'https://x.test/ok', $1) RETURNING id`,
		"["+strings.Join(items, ",")+"]").rows[0][0]
	check := func(when string) {
		t.Helper()
		if n := e.local(`SELECT jsonb_array_length(line_items->'data')::text || ' ' || (line_items->>'has_more') FROM stripe.checkout_sessions WHERE id = $1`, cs); n != "12 false" {
			t.Fatalf("%s: line_items holds %q elements, has_more; want 12 false", when, n)
		}
		d, err := verify.CompareTables(e.ctx, e.pool, e.emu, []string{"checkout_sessions"})
		if err != nil {
			t.Fatal(err)
		}
		if d.Total() != 0 {
			t.Fatalf("%s: checkout_sessions differ from the emulator: %s", when, strings.Join(d.Details, "\n"))
		}
	}
	check("after INSERT")
	e.ok(`UPDATE stripe.checkout_sessions SET status = 'expired' WHERE id = $1`, cs)
	if s := e.local(`SELECT status FROM stripe.checkout_sessions WHERE id = $1`, cs); s != "expired" {
		t.Fatalf("status %s after expiry", s)
	}
	check("after expiry")
}
