package translate

import (
	"fmt"
	"strings"
	"testing"
)

// benchPrice is a price as Stripe returns it (and sync stores it).
func benchPrice(id string) string {
	return `{"id": "` + id + `", "object": "price", "active": true, "billing_scheme": "per_unit", "created": 1700000000, "currency": "usd", "custom_unit_amount": null, "livemode": false, "lookup_key": null, "metadata": {"plan": "gold", "tier": "2"}, "nickname": "Gold monthly", "product": "prod_1", "recurring": {"aggregate_usage": null, "interval": "month", "interval_count": 1, "trial_period_days": null, "usage_type": "licensed"}, "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null, "type": "recurring", "unit_amount": 1000, "unit_amount_decimal": "1000"}`
}

// benchItems is a subscription's items column with n items, each with
// its price whole, quantity q on the first.
func benchItems(sub string, n, q int) string {
	var els []string
	for i := 0; i < n; i++ {
		qty := 1
		if i == 0 {
			qty = q
		}
		els = append(els, fmt.Sprintf(`{"id": "si_%s_%d", "object": "subscription_item", "billing_thresholds": null, "created": 1700000000, "metadata": {"k": "v"}, "price": %s, "quantity": %d, "subscription": "%s", "tax_rates": []}`, sub, i, benchPrice(fmt.Sprintf("price_%d", i)), qty, sub))
	}
	return `{"object": "list", "data": [` + strings.Join(els, ", ") + `], "has_more": false, "total_count": ` + fmt.Sprint(n) + `, "url": "/v1/subscription_items?subscription=` + sub + `"}`
}

// objectsThenBuild is what writethrough does with Eval's rows:
// Objects, the stored copies it names, BuildStored.
func objectsThenBuild(st *Statement, raw [][][]byte, stored Stored) ([]RowCalls, *Error) {
	rows := NewRows(raw)
	refs := st.Objects(rows)
	got := Stored{}
	for _, r := range refs {
		if b, ok := stored[r]; ok {
			got[r] = b
		}
	}
	return st.BuildStored(rows, got)
}

// BenchmarkObjectsBuildUpdate: 100 subscriptions whose items (5,
// each with its price whole) are read back and written with one
// quantity changed (jsonb_set), as an ORM saving the entity does.
func BenchmarkObjectsBuildUpdate(b *testing.B) {
	st := Classify(`UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,quantity}', '3') WHERE customer = $1`).Stmt
	var rows [][][]byte
	for i := 0; i < MaxRows; i++ {
		sub := fmt.Sprintf("sub_%d", i)
		rows = append(rows, [][]byte{[]byte(sub), []byte("1700000000000000"), []byte(benchItems(sub, 5, 3)), []byte(benchItems(sub, 5, 1))})
	}
	calls, err := objectsThenBuild(st, rows, nil)
	if err != nil || len(calls) != MaxRows || len(calls[0].Calls) != 1 {
		b.Fatalf("%v %v", calls, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		objectsThenBuild(st, rows, nil)
	}
}

// BenchmarkObjectsBuildInsert: 100 subscriptions created with
// items that give their price whole (copied from stripe.prices), which
// Build compares with the stored copies.
func BenchmarkObjectsBuildInsert(b *testing.B) {
	st := Classify(`INSERT INTO stripe.subscriptions (customer, items, metadata) VALUES ($1, $2, $3)`).Stmt
	stored := Stored{}
	var items []string
	for i := 0; i < 5; i++ {
		p := benchPrice(fmt.Sprintf("price_%d", i))
		stored[ObjectRef{Table: "prices", ID: fmt.Sprintf("price_%d", i)}] = []byte(p)
		items = append(items, `{"price": `+p+`, "quantity": 2}`)
	}
	var rows [][][]byte
	for i := 0; i < MaxRows; i++ {
		rows = append(rows, [][]byte{[]byte(`"cus_1"`), []byte(`[` + strings.Join(items, ", ") + `]`), []byte(`{"order": "o` + fmt.Sprint(i) + `"}`)})
	}
	calls, err := objectsThenBuild(st, rows, stored)
	if err != nil || len(calls) != MaxRows || len(calls[0].Calls) != 1 {
		b.Fatalf("%v %v", calls, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		objectsThenBuild(st, rows, stored)
	}
}
