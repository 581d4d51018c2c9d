package emulator

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/customers"}, {"POST", "/v1/subscriptions"}, {"POST", "/v1/prices"}, {"GET", "/v1/customers"},
	{"POST", "/v1/invoices"}, {"POST", "/v1/checkout/sessions"}, {"POST", "/v1/payment_intents"}, {"GET", "/v1/events"},
	{"POST", "/v1/products"}, {"POST", "/v1/coupons"}, {"DELETE", "/v1/customers/cus_x"}, {"POST", "/v1/subscription_schedules"},
}

// serveChecked sends one request and checks the answer: JSON, below 500,
// Stripe's error shape on a 4xx. It returns the bytes allocated meanwhile.
func serveChecked(t *testing.T, e *Emulator, method, path, body, contentType string) (int, uint64) {
	t.Helper()
	target := path
	if method == "GET" {
		target += "?" + body
		body = ""
	}
	req, err := http.NewRequest(method, "http://emulator"+target, strings.NewReader(body))
	if err != nil {
		return 0, 0
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer sk_test_review")
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	runtime.ReadMemStats(&m1)
	if rec.Code >= 500 {
		t.Fatalf("%s %s %.200q: status %d: %.300s", method, path, body, rec.Code, rec.Body)
	}
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("%s %s %.200q: status %d, not a JSON object: %.300q", method, path, body, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		if _, ok := v["error"].(map[string]any); !ok {
			t.Fatalf("%s %s %.200q: status %d without Stripe's error shape: %.300s", method, path, body, rec.Code, rec.Body)
		}
	}
	return rec.Code, m1.TotalAlloc - m0.TotalAlloc
}

// FuzzEmulatorParams sends bracketed form bodies (a[b][][c], a[99999999],
// deep nesting, escaped brackets) to real routes of the emulator: the
// answer is a 2xx or Stripe's 4xx error, never a panic or a 5xx, and the
// request allocates in proportion to its size, never a blow-up.
func FuzzEmulatorParams(f *testing.F) {
	e, err := New(Options{RateLimit: -1, Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		route uint8
		body  string
	}{
		{0, "email=a%40b.co&metadata[k]=v&expand[]=default_source"},
		{0, "metadata[a][b][][c]=1&address[line1]=x&preferred_locales[]=fr&preferred_locales[]=en"},
		{1, "customer=cus_x&items[0][price]=price_x&items[1][quantity]=2&items[99999999][price]=p"},
		{1, "items[][price_data][recurring][interval]=month&items[][price_data][currency]=usd"},
		{2, "currency=usd&unit_amount=100&recurring[interval]=month&product_data[name]=n&tiers[0][up_to]=inf"},
		{3, "limit=3&created[gte]=1&expand[]=data.default_source&starting_after=cus_"},
		{4, "customer=cus_x&custom_fields[0][name]=a&custom_fields[0][value]=b&metadata[%5Bx%5D]=1"},
		{5, "mode=payment&line_items[0][price_data][product_data][name]=x&line_items[0][quantity]=1&success_url=http://x"},
		{6, "amount=100&currency=usd&payment_method_options[card][mandate_options][amount]=1"},
		{7, "types[]=customer.created&types[0]=x&created[gt]=abc"},
		{8, "name=p&metadata" + strings.Repeat("[a]", 40) + "=x"},
		{9, "duration=once&percent_off=10&applies_to[products][]=prod_x&currency_options[eur][amount_off]=1"},
		{11, "phases[0][items][0][price]=p&phases[0][items][0][quantity]=1&phases[][iterations]=2"},
	} {
		f.Add(s.route, s.body)
	}
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		_, alloc := serveChecked(t, e, r.method, r.path, body, "application/x-www-form-urlencoded")
		if limit := uint64(1<<20 + 200*len(body)); alloc > limit {
			t.Fatalf("%s %s %.200q: allocated %d bytes for a %d-byte body", r.method, r.path, body, alloc, len(body))
		}
	})
}

// TestDeepParamsRefused: a key nested a million levels deep
// (metadata[a][a]…, 3 MB) killed the emulator with a fatal stack overflow
// (fmt formatting the nested value into "Invalid string: %v"), after
// building as many nested maps; in a form body, a query or a multipart
// body, it is now a 400 with Stripe's error shape.
func TestDeepParamsRefused(t *testing.T) {
	e, err := New(Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	deep := "metadata" + strings.Repeat("[a]", 1_000_000)
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/customers", "email=x&" + deep + "=x"},
		{"POST", "/v1/customers", "email=x&metadata" + strings.Repeat("%5Ba%5D", 100) + "=x"},
		{"GET", "/v1/customers", "metadata" + strings.Repeat("[a]", 100_000) + "=x"},
	} {
		code, alloc := serveChecked(t, e, r.method, r.path, r.body, "application/x-www-form-urlencoded")
		if code != 400 || alloc > 64<<20 {
			t.Errorf("%s %s deep key: status %d, allocated %d MB", r.method, r.path, code, alloc>>20)
		}
	}
	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	w.WriteField("metadata"+strings.Repeat("[a]", 100_000), "x")
	w.Close()
	if code, _ := serveChecked(t, e, "POST", "/v1/customers", mp.String(), w.FormDataContentType()); code != 400 {
		t.Errorf("multipart deep key: status %d", code)
	}
	// Stripe's own nesting still works, and brackets in values count for
	// nothing.
	body := "email=x&metadata[k]=" + strings.Repeat("[", 100) + "&invoice_settings[custom_fields][0][name]=a&invoice_settings[custom_fields][0][value]=b"
	if code, _ := serveChecked(t, e, "POST", "/v1/customers", body, "application/x-www-form-urlencoded"); code != 200 {
		t.Errorf("ordinary nesting: status %d", code)
	}
}
