package emulator_test

import (
	"slices"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// GET /v1/prices lists active prices only unless asked for inactive ones
// (spec, API 2023-10-16: "Returns a list of your active prices … For the
// list of inactive prices, set active to false").
func TestPricesListActiveByDefault(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	prod := do(t, "POST", base+"/v1/products", "sk_test_x", "name=p").body["id"].(string)
	price := func() string {
		return do(t, "POST", base+"/v1/prices", "sk_test_x", "product="+prod+"&currency=usd&unit_amount=100").body["id"].(string)
	}
	active, archived := price(), price()
	if r := do(t, "POST", base+"/v1/prices/"+archived, "sk_test_x", "active=false"); r.status != 200 {
		t.Fatalf("archive: %d %s", r.status, r.raw)
	}
	for q, want := range map[string][]string{
		"":              {active},
		"?active=true":  {active},
		"?active=false": {archived},
	} {
		if got := listIDs(t, base+"/v1/prices"+q); !slices.Equal(got, want) {
			t.Errorf("GET /v1/prices%s: %v, want %v", q, got, want)
		}
	}
}

// Prices created inline (an invoice item's price_data, or its amount) are
// in neither price list, active or not (spec, API 2023-10-16: "Returns a
// list of your active prices, excluding inline prices"), yet retrievable
// by id.
func TestInlinePricesUnlisted(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	prod := do(t, "POST", base+"/v1/products", key, "name=p").body["id"].(string)
	listed := do(t, "POST", base+"/v1/prices", key, "product="+prod+"&currency=usd&unit_amount=100").body["id"].(string)
	archived := do(t, "POST", base+"/v1/prices", key, "product="+prod+"&currency=usd&unit_amount=200").body["id"].(string)
	if r := do(t, "POST", base+"/v1/prices/"+archived, key, "active=false"); r.status != 200 {
		t.Fatalf("archive: %d %s", r.status, r.raw)
	}
	cus := do(t, "POST", base+"/v1/customers", key, "email=a@b.co").body["id"].(string)
	var inline []string
	for _, body := range []string{
		"customer=" + cus + "&price_data[currency]=usd&price_data[product]=" + prod + "&price_data[unit_amount]=300",
		"customer=" + cus + "&currency=usd&amount=400",
	} {
		r := do(t, "POST", base+"/v1/invoiceitems", key, body)
		if r.status != 200 {
			t.Fatalf("invoice item %s: %d %s", body, r.status, r.raw)
		}
		inline = append(inline, r.body["price"].(map[string]any)["id"].(string))
	}
	for q, want := range map[string][]string{
		"":              {listed},
		"?active=true":  {listed},
		"?active=false": {archived},
	} {
		if got := listIDs(t, base+"/v1/prices"+q); !slices.Equal(got, want) {
			t.Errorf("GET /v1/prices%s: %v, want %v", q, got, want)
		}
	}
	for _, id := range inline {
		if r := do(t, "GET", base+"/v1/prices/"+id, key, ""); r.status != 200 || r.body["id"] != id {
			t.Errorf("GET /v1/prices/%s: %d %s", id, r.status, r.raw)
		}
	}
}
