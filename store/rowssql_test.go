package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

// TestRowsSQLAgreesWithUpsert: RowsSQL gives, for every fixture
// object of every writable table, the row Upsert stores (all but
// _synced_at, which is the clock), so a RETURNING answered from it has the
// values a RETURNING over the stored row would.
func TestRowsSQLAgreesWithUpsert(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	fx := fixtures(t)
	asOf := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tb := range schema.Tables() {
		raw, ok := fx[tb.Object]
		if !ok || tb.Virtual {
			continue
		}
		upsert(t, conn, tb.Name, store.Object{Raw: raw, AsOf: asOf})
		// Child tables also hold the rows their parents' fixtures embed.
		var stored string
		if err := conn.QueryRow(ctx, `SELECT (to_jsonb(t) - '_synced_at' - '_params')::text FROM `+tb.QualifiedName()+` t WHERE t.id = $1::jsonb ->> 'id'`, string(raw)).Scan(&stored); err != nil {
			t.Fatalf("%s: %v", tb.Name, err)
		}
		arr, _ := json.Marshal([]json.RawMessage{raw})
		var mapped string
		var text string
		if err := conn.QueryRow(ctx, store.RowsSQL(tb), string(arr), []time.Time{asOf}).Scan(&text); err != nil {
			t.Fatalf("%s: RowsSQL: %v", tb.Name, err)
		}
		if err := conn.QueryRow(ctx, `SELECT (($1::jsonb -> 0) - '_synced_at' - 'ord')::text`, text).Scan(&mapped); err != nil {
			t.Fatal(err)
		}
		if mapped != stored {
			t.Errorf("%s:\nRowsSQL %s\nstored  %s", tb.Name, mapped, stored)
		}
	}
}
