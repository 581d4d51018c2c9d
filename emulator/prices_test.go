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
