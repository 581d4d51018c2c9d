package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

// A string Postgres's jsonb can't hold (a lone UTF-16 surrogate escape, which
// encoding/json accepts) must not fail the whole batch and the caller's
// transaction: like \u0000, it is one odd value in, say, metadata.
func TestLoneSurrogate(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	raw := json.RawMessage(`{"id": "cus_sur", "object": "customer", "name": "a\ud800b", "description": "\uD800\ud83d\ude00 \\ud800", "metadata": {"k": "\udc00"}}`)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	res, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: raw, AsOf: t0}, {Raw: customer("cus_ok2", ""), AsOf: t0}})
	if err != nil {
		t.Fatalf("upsert: %v", err)
	}
	if len(res.Applied) != 2 {
		t.Fatalf("%+v", res)
	}
	var name, desc, k string
	if err := tx.QueryRow(ctx, `SELECT name, description, metadata->>'k' FROM stripe.customers WHERE id = 'cus_sur'`).Scan(&name, &desc, &k); err != nil {
		t.Fatal(err)
	}
	if name != "a\ufffdb" || desc != "\ufffd\U0001F600 \\ud800" || k != "\ufffd" {
		t.Errorf("name %q description %q metadata.k %q", name, desc, k)
	}
}

// Values beyond float64 precision and long decimals are stored exactly; unix
// times are absolute whatever the session's time zone.
func TestExactNumbers(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SET TIME ZONE 'America/New_York'"); err != nil {
		t.Fatal(err)
	}
	upsert(t, conn, "customers", store.Object{Raw: json.RawMessage(`{"id": "cus_big", "object": "customer", "balance": 9007199254740993, "created": 1700000000}`), AsOf: t0})
	upsert(t, conn, "prices", store.Object{Raw: json.RawMessage(`{"id": "price_d", "object": "price", "unit_amount_decimal": "1234567890.123456789012", "unit_amount": null}`), AsOf: t0})
	upsert(t, conn, "coupons", store.Object{Raw: json.RawMessage(`{"id": "co_1", "object": "coupon", "percent_off": 12.345678901234567890123}`), AsOf: t0})
	var bal int64
	var created int64
	if err := conn.QueryRow(ctx, `SELECT balance, extract(epoch FROM created)::bigint FROM stripe.customers WHERE id = 'cus_big'`).Scan(&bal, &created); err != nil {
		t.Fatal(err)
	}
	if bal != 9007199254740993 || created != 1700000000 {
		t.Errorf("balance %d created %d", bal, created)
	}
	var dec, pct string
	var ua *int64
	conn.QueryRow(ctx, `SELECT unit_amount_decimal, unit_amount FROM stripe.prices WHERE id = 'price_d'`).Scan(&dec, &ua)
	conn.QueryRow(ctx, `SELECT percent_off::text FROM stripe.coupons WHERE id = 'co_1'`).Scan(&pct)
	if dec != "1234567890.123456789012" || ua != nil || pct != "12.345678901234567890123" {
		t.Errorf("decimal %q unit_amount %v percent_off %q", dec, ua, pct)
	}
}

// The warning for a field of an unexpected type says its column is left
// NULL: typeOK, which decides the warning, must agree with the column's
// SQL conversion on which values are stored.
func TestTypeCheckAgreesWithConversion(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	values := []string{`1`, `-7`, `1e3`, `1000.0`, `1.5`, `-2.5e-1`, `9223372036854775807`, `9223372036854775808`,
		`99999999999999999999`, `1e19`, `99999999999`, `100000000000`, `1e11`, `-1e12`, `1.7e9`, `"12"`, `true`, `{}`, `[1]`, `null`}
	for _, kind := range []schema.Kind{schema.KindInteger, schema.KindTimestamp} {
		c := schema.Column{Name: "x", Field: "x", Kind: kind}
		for _, v := range values {
			var null bool
			if err := conn.QueryRow(ctx, `SELECT (`+c.ConvertSQL("$1::jsonb")+`) IS NULL`, v).Scan(&null); err != nil {
				t.Fatalf("%s %s: %v", c.PGType, v, err)
			}
			stored := !null || v == "null"
			if got := store.TypeOK(kind, json.RawMessage(v)); got != stored {
				t.Errorf("kind %v, value %s: typeOK %v, but the conversion stores it: %v", kind, v, got, stored)
			}
		}
	}
}
