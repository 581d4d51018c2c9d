package chaos

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
)

// FuzzEmulatorForm sends arbitrary form bodies and paths to the emulator
// (through the Injector, whose own form reading is on the way): whatever
// arrives, the answer is a Stripe-shaped JSON object with a 2xx or 4xx
// status, never a panic or a 500. The emulator owner has no fuzz target
// for its form decoder; this one lives here.
func FuzzEmulatorForm(f *testing.F) {
	e, err := emulator.New(emulator.Options{RateLimit: -1, Seed: 2})
	if err != nil {
		f.Fatal(err)
	}
	h := NewInjector(e, 0, 1)
	seeds := []struct{ method, path, body string }{
		{"POST", "/v1/customers", "email=a%40b.co&metadata[k]=v"},
		{"POST", "/v1/customers", "metadata[a][b][c]=1&expand[]=x&expand[0]=y"},
		{"POST", "/v1/subscriptions", "customer=cus_x&items[0][price]=price_x&items[1][quantity]=2"},
		{"POST", "/v1/prices", "currency=usd&unit_amount=-1&recurring[interval]=month&product_data[name]=n"},
		{"POST", "/v1/products", "name=%ZZ&active=maybe"},
		{"GET", "/v1/customers", "limit=1000&created[gte]=abc&starting_after=cus_"},
		{"DELETE", "/v1/coupons/%00", ""},
		{"POST", "/v1/invoices", "customer=&auto_advance=true&metadata=&lines[][x]=1"},
		{"POST", "/v1/customers/cus_x/tax_ids", "type=eu_vat&value=DE123"},
		{"GET", "/v1/events", "types[]=customer.created&types[]=" + strings.Repeat("x", 300)},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.body)
	}
	f.Fuzz(func(t *testing.T, method, path, body string) {
		switch method {
		case "GET", "POST", "DELETE":
		default:
			method = "POST"
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		if strings.HasPrefix(path, "/_emulator") {
			return // the admin API changes knobs (faults) and is not Stripe's
		}
		target := "http://emulator" + path
		if method == "GET" {
			target += "?" + body
		}
		req, err := http.NewRequest(method, target, strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		if method != "GET" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Authorization", "Bearer sk_test_fuzz")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: status %d: %s", method, path, body, rec.Code, rec.Body)
		}
		var v map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("%s %s %q: status %d, not a JSON object: %q", method, path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			if _, ok := v["error"].(map[string]any); !ok {
				t.Fatalf("%s %s %q: status %d without Stripe's error shape: %s", method, path, body, rec.Code, rec.Body)
			}
		}
	})
}
