package schema_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) { pgtest.Main(m) }

// The DDL of every table is checked in, so a spec or generator change shows
// up in review as a readable diff.
func TestGoldenDDL(t *testing.T) {
	got := schema.DDL()
	const path = "testdata/ddl.sql"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Fatal("testdata/ddl.sql is stale: run `go generate ./schema/...` (or go test ./schema -run TestGolden -update)")
	}
}

func TestContractTables(t *testing.T) {
	want := strings.Fields(`customers products prices plans coupons promotion_codes tax_rates
subscriptions subscription_items subscription_schedules invoices invoice_line_items invoiceitems
credit_notes payment_intents setup_intents payment_methods charges refunds disputes payouts
balance_transactions checkout_sessions tax_ids upcoming_invoices`)
	tables := schema.Tables()
	if len(tables) != len(want) {
		t.Fatalf("%d tables, want %d", len(tables), len(want))
	}
	for i, name := range want {
		if tables[i].Name != name {
			t.Errorf("table %d = %s, want %s", i, tables[i].Name, name)
		}
		if _, ok := schema.Lookup(name); !ok {
			t.Errorf("Lookup(%s) failed", name)
		}
	}
	if tb, ok := schema.ByObject("invoice"); !ok || tb.Name != "invoices" {
		t.Errorf("ByObject(invoice) = %v", tb)
	}
	if tb, _ := schema.ByObject("checkout.session"); tb == nil || tb.Name != "checkout_sessions" {
		t.Errorf("ByObject(checkout.session) = %v", tb)
	}
}

func TestMetadata(t *testing.T) {
	cus, _ := schema.Lookup("customers")
	for name, want := range map[string]string{
		"id": "text", "created": "timestamptz", "email": "text", "metadata": "jsonb",
		"balance": "bigint", "delinquent": "boolean", "default_source": "text", "address": "jsonb",
	} {
		c, ok := cus.Column(name)
		if !ok || c.PGType != want {
			t.Errorf("customers.%s: %+v, want %s", name, c, want)
		}
	}
	if c, _ := cus.Column("default_source"); c.Kind != schema.KindExpandable {
		t.Errorf("default_source kind %v", c.Kind)
	}
	if !cus.CreatedFilter || cus.ListPath != "/v1/customers" || cus.DeletePath != "/v1/customers/{id}" || cus.UpdatePath != "/v1/customers/{id}" {
		t.Errorf("customers endpoints: %+v", cus)
	}
	if p, ok := cus.CreateParams["metadata"]; !ok || !p.Unset {
		t.Errorf("customers create metadata param: %+v", p)
	}
	if _, ok := cus.CreateParams["balance"]; !ok {
		t.Error("customers create lacks balance")
	}

	si, _ := schema.Lookup("subscription_items")
	if si.CreatedFilter || len(si.ListRequired) != 1 || si.ListRequired[0] != "subscription" {
		t.Errorf("subscription_items list: created=%v required=%v", si.CreatedFilter, si.ListRequired)
	}
	if si.Parent == nil || si.Parent.Table != "subscriptions" || si.Parent.Column != "subscription" {
		t.Errorf("subscription_items parent %+v", si.Parent)
	}
	inv, _ := schema.Lookup("invoices")
	if len(inv.Nested) != 1 || inv.Nested[0].Table != "invoice_line_items" || inv.Nested[0].ListPath != "/v1/invoices/{id}/lines" {
		t.Errorf("invoices nested %+v", inv.Nested)
	}
	lines, _ := schema.Lookup("invoice_line_items")
	if strings.Join(lines.Key, ",") != "invoice,id" {
		t.Errorf("line item key %v", lines.Key)
	}
	up, _ := schema.Lookup("upcoming_invoices")
	if !up.Virtual || strings.Join(up.Key, ",") != "customer" {
		t.Errorf("upcoming_invoices %+v", up)
	}
	pr, _ := schema.Lookup("prices")
	if pr.DeletePath != "" || pr.UpdatePath == "" {
		t.Errorf("prices delete=%q update=%q", pr.DeletePath, pr.UpdatePath)
	}
	pi, _ := schema.Lookup("payment_intents")
	if pi.CancelPath != "/v1/payment_intents/{id}/cancel" {
		t.Errorf("payment_intents cancel %q", pi.CancelPath)
	}
	for _, tb := range schema.Tables() {
		if tb.ListPath == "" && !tb.Virtual {
			t.Errorf("%s has no list path", tb.Name)
		}
	}
}

func TestPath(t *testing.T) {
	lines, _ := schema.Lookup("invoice_line_items")
	if got := schema.Path(lines.UpdatePath, "il_1", "in_1"); got != "/v1/invoices/in_1/lines/il_1" {
		t.Errorf("got %q", got)
	}
	if got := schema.Path("/v1/customers/{id}", "a/b c", ""); got != "/v1/customers/a%2Fb%20c" {
		t.Errorf("got %q", got)
	}
}

// TestUnsetAt: UnsetPlaces, as the generator reads them from the
// spec's update schemas, and their matching. "" is taken by a string
// (address.line2), an enum with "" (rendering_options.amount_tax_display),
// an unset alternative (payment_method_options.card) and any key of a
// free hash (metadata's, also one holding a dot), not by an enum without
// it (save_default_payment_method), an object without the alternative
// (payment_method_options), an integer in a list element (items
// [].quantity) or the parameter itself (Unset says that). "{}" matches a
// key, not an array's elements.
func TestUnsetAt(t *testing.T) {
	up := func(table, param string) schema.Param {
		t.Helper()
		tb, ok := schema.Lookup(table)
		if !ok {
			t.Fatalf("no table %s", table)
		}
		p, ok := tb.UpdateParams[param]
		if !ok {
			t.Fatalf("%s: no update parameter %s", table, param)
		}
		return p
	}
	for _, c := range []struct {
		table, param string
		keys         []string
		want         bool
	}{
		{"customers", "address", []string{"line2"}, true},
		{"customers", "invoice_settings", []string{"rendering_options", "amount_tax_display"}, true},
		{"customers", "invoice_settings", []string{"rendering_options"}, true},
		{"customers", "invoice_settings", []string{"custom_fields"}, true},
		{"customers", "metadata", []string{"k"}, true},
		{"customers", "metadata", []string{"a.b"}, true},
		{"customers", "metadata", []string{"[]"}, false},
		{"customers", "metadata", []string{"k", "j"}, false},
		{"customers", "metadata", nil, false},
		{"subscriptions", "payment_settings", []string{"payment_method_options", "card"}, true},
		{"subscriptions", "payment_settings", []string{"payment_method_options"}, false},
		{"subscriptions", "payment_settings", []string{"save_default_payment_method"}, false},
		{"subscriptions", "payment_settings", []string{"payment_method_options", "us_bank_account", "financial_connections", "permissions"}, false},
		{"subscriptions", "items", []string{"[]", "metadata", "k"}, true},
		{"subscriptions", "items", []string{"[]", "quantity"}, false},
		{"subscriptions", "automatic_tax", []string{"enabled"}, false},
	} {
		if got := up(c.table, c.param).UnsetAt(c.keys...); got != c.want {
			t.Errorf("%s.%s %q: UnsetAt %v, want %v", c.table, c.param, c.keys, got, c.want)
		}
	}
	// Create parameters never send an unset: no places.
	tb, _ := schema.Lookup("customers")
	if p := tb.CreateParams["address"]; len(p.UnsetPlaces) != 0 {
		t.Errorf("create address: UnsetPlaces %v", p.UnsetPlaces)
	}
}
