package server

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/verify"
)

// Writes through the proxy to a saved card's row of stripe.payment_methods
// (a card_ id: Stripe's compatibility view of a card saved as a source)
// reach Stripe and change the card: an UPDATE of metadata, billing
// details and expiry updates it, SET customer = NULL (a detach) deletes
// it. Then sync leaves stripe.payment_methods and
// stripe.customers.default_source exactly as Stripe holds them: the
// updated row as Stripe's Payment Methods API answers it, the detached
// card's row gone (tombstoned), the default source handed to the other
// card.
func TestCardWritesThroughProxy(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	e, base := emulatortest.Start(t, emulator.Options{})
	ctx := context.Background()
	_, cu := stripeDo(t, "POST", base, "/v1/customers", url.Values{"email": {"cards@example.com"}, "source": {"tok_visa"}})
	cus, _ := cu["id"].(string)
	visa, _ := cu["default_source"].(string)
	_, mc := stripeDo(t, "POST", base, "/v1/customers/"+cus+"/sources", url.Values{"source": {"tok_mastercard"}})
	master, _ := mc["id"].(string)
	if !strings.HasPrefix(visa, "card_") || !strings.HasPrefix(master, "card_") {
		t.Fatalf("saved cards: %v, %v", cu, mc)
	}

	proxyAddr, _, logs, err := startServe(t, dbURL, base, "cardwrites")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	admin := pgtest.Connect(t, dbURL)
	waitLive(t, admin, 90*time.Second)
	client := proxyConn(t, dbURL, proxyAddr)

	// An update of the card's metadata, name, address and expiry.
	var name, k string
	var month int
	if err := client.QueryRow(ctx, `UPDATE stripe.payment_methods
		SET metadata = '{"k":"v"}',
		    billing_details = jsonb_set(jsonb_set(billing_details, '{name}', '"Jenny Rosen"'), '{address,city}', '"Paris"'),
		    card = jsonb_set(card, '{exp_month}', '7')
		WHERE id = $1 RETURNING billing_details->>'name', metadata->>'k', (card->>'exp_month')::int`, visa).Scan(&name, &k, &month); err != nil {
		t.Fatalf("UPDATE of a saved card's row through the proxy: %v", err)
	}
	if name != "Jenny Rosen" || k != "v" || month != 7 {
		t.Errorf("RETURNING after the update: name %q, k %q, exp_month %d", name, k, month)
	}
	_, card := stripeDo(t, "GET", base, "/v1/customers/"+cus+"/sources/"+visa, nil)
	if card["name"] != "Jenny Rosen" || card["address_city"] != "Paris" || card["exp_month"] != float64(7) ||
		card["metadata"].(map[string]any)["k"] != "v" {
		t.Errorf("the card in Stripe after the update: %v", card)
	}
	waitInSync(t, ctx, dbURL, e)
	wantPMRow(t, admin, base, visa)

	// A detach of the default card deletes it.
	var after *string
	if err := client.QueryRow(ctx, `UPDATE stripe.payment_methods SET customer = NULL WHERE id = $1 RETURNING customer`, visa).Scan(&after); err != nil {
		t.Fatalf("detach of a saved card through the proxy: %v", err)
	}
	if after != nil {
		t.Errorf("RETURNING customer after the detach: %q", *after)
	}
	if st, _ := stripeDo(t, "GET", base, "/v1/payment_methods/"+visa, nil); st != 404 {
		t.Errorf("the detached card in Stripe: %d, want 404", st)
	}
	waitInSync(t, ctx, dbURL, e)
	var n int
	var tomb bool
	var ds *string
	if err := admin.QueryRow(ctx, `SELECT (SELECT count(*) FROM stripe.payment_methods WHERE id = $1),
		EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE object = 'payment_methods' AND id = $1),
		(SELECT default_source FROM stripe.customers WHERE id = $2)`, visa, cus).Scan(&n, &tomb, &ds); err != nil {
		t.Fatal(err)
	}
	if n != 0 || !tomb {
		t.Errorf("detached card's row: %d rows, tombstone %v", n, tomb)
	}
	if ds == nil || *ds != master {
		t.Errorf("stripe.customers.default_source after the detach: %v, want %s", ds, master)
	}
	wantPMRow(t, admin, base, master)
	if s := logs.String(); strings.Contains(s, "level=ERROR") {
		t.Errorf("errors logged:\n%s", s)
	}
}

// wantPMRow checks that id's row of stripe.payment_methods is what
// Stripe's Payment Methods API answers for it.
func wantPMRow(t *testing.T, conn *pgx.Conn, base, id string) {
	t.Helper()
	var raw string
	if err := conn.QueryRow(context.Background(), `SELECT _raw::text FROM stripe.payment_methods WHERE id = $1`, id).Scan(&raw); err != nil {
		t.Fatalf("row %s: %v", id, err)
	}
	st, body := stripeDo(t, "GET", base, "/v1/payment_methods/"+id, nil)
	want, _ := json.Marshal(body)
	if st != 200 || !verify.SameJSON([]byte(raw), want) {
		t.Errorf("row %s:\n  got  %s\n  want %d %s", id, raw, st, want)
	}
}
