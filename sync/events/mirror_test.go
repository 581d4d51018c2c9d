package events

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/store"
)

// An invoice item changed on its draft invoice (its own update, or its
// line's) sends invoice.updated only: the item is re-fetched when its line
// shows other values. A line showing its product's name matches an item
// without a description of its own (Stripe fills lines' descriptions in),
// and only drafts' lines are compared beyond amount and quantity.
func TestInvoiceItemsComparedWithTheirLines(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.NewMigratedDB(t)
	at := time.Unix(1700000000, 0)
	item := func(id, desc string) store.Object {
		d := "null"
		if desc != "" {
			d = fmt.Sprintf("%q", desc)
		}
		return store.Object{AsOf: at, Raw: json.RawMessage(fmt.Sprintf(`{"id": %q, "object": "invoiceitem", "amount": 500, "quantity": 1, "invoice": "in_1",
"description": %s, "discountable": true, "period": {"start": 1, "end": 1}, "price": {"id": "price_1", "object": "price", "product": "prod_1"}, "tax_rates": []}`, id, d))}
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := store.Upsert(ctx, tx, "products", []store.Object{{AsOf: at, Raw: json.RawMessage(`{"id": "prod_1", "object": "product", "name": "Widget"}`)}}); err != nil {
			return err
		}
		_, err := store.Upsert(ctx, tx, "invoiceitems", []store.Object{item("ii_named", ""), item("ii_renamed", ""), item("ii_own", "own"), item("ii_final", "")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	line := func(item, desc string) string {
		return fmt.Sprintf(`{"invoice_item": %q, "amount": 500, "quantity": 1, "description": %q, "discountable": true,
"period": {"start": 1, "end": 1}, "price": {"id": "price_1", "object": "price"}, "tax_rates": []}`, item, desc)
	}
	invoice := func(status string, lines ...string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"id": "in_1", "status": %q, "lines": {"data": [%s]}}`, status, strings.Join(lines, ", ")))
	}
	links := append(invoiceLinks("in_1", invoice("draft", line("ii_named", "Widget"), line("ii_renamed", "renamed"), line("ii_own", "own")), nil, at),
		invoiceLinks("in_1", invoice("paid", line("ii_final", "other")), nil, at)...)
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return queueInvoiceItems(ctx, tx, links, nil) }); err != nil {
		t.Fatal(err)
	}
	rows, _ := pool.Query(ctx, `SELECT id FROM stripe_sync.events_refetch WHERE object = 'invoiceitems' ORDER BY id`)
	queued, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(queued, []string{"ii_renamed"}) {
		t.Errorf("re-fetch queued for %v, want only ii_renamed", queued)
	}
}
