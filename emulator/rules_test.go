package emulator_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/stripe/stripe-go/v76"
)

type apiResp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t testing.TB, method, u, key, body string, hdr ...string) apiResp {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return apiResp{status: res.StatusCode, header: res.Header, body: m, raw: string(b)}
}

func errField(r apiResp, f string) string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e[f].(string)
	return s
}

// TestRequestRules checks Stripe's request validation answers.
func TestRequestRules(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus := do(t, "POST", base+"/v1/customers", "sk_test_x", "email=a%40b.c")
	if cus.status != 200 {
		t.Fatalf("create: %d %s", cus.status, cus.raw)
	}
	cid := cus.body["id"].(string)
	for _, tc := range []struct {
		name, method, path, key, body string
		status                        int
		typ, code, param              string
	}{
		{"no key", "GET", "/v1/customers", "", "", 401, "invalid_request_error", "", ""},
		{"bad key", "GET", "/v1/customers", "pk_test_x", "", 401, "invalid_request_error", "", ""},
		{"empty key tail", "GET", "/v1/customers", "sk_test_", "", 401, "invalid_request_error", "", ""},
		{"unknown route", "GET", "/v1/nope", "sk_test_x", "", 404, "invalid_request_error", "", ""},
		{"unknown id", "GET", "/v1/customers/cus_missing", "sk_test_x", "", 404, "invalid_request_error", "resource_missing", "id"},
		{"unknown param", "POST", "/v1/customers", "sk_test_x", "bogus=1", 400, "invalid_request_error", "parameter_unknown", "bogus"},
		{"unknown nested param", "POST", "/v1/customers", "sk_test_x", "address[planet]=mars", 400, "invalid_request_error", "parameter_unknown", "address[planet]"},
		{"unknown query param", "GET", "/v1/customers?bogus=1", "sk_test_x", "", 400, "invalid_request_error", "parameter_unknown", "bogus"},
		{"missing param", "POST", "/v1/products", "sk_test_x", "active=true", 400, "invalid_request_error", "parameter_missing", "name"},
		{"missing query param", "GET", "/v1/subscription_items", "sk_test_x", "", 400, "invalid_request_error", "parameter_missing", "subscription"},
		{"bad integer", "POST", "/v1/customers", "sk_test_x", "balance=abc", 400, "invalid_request_error", "parameter_invalid_integer", "balance"},
		{"bad enum", "POST", "/v1/customers", "sk_test_x", "tax_exempt=sometimes", 400, "invalid_request_error", "parameter_invalid_string", "tax_exempt"},
		{"bad boolean", "GET", "/v1/products?active=maybe", "sk_test_x", "", 400, "invalid_request_error", "parameter_invalid_boolean", "active"},
		{"NaN number", "POST", "/v1/tax_rates", "sk_test_x", "display_name=v&inclusive=false&percentage=NaN", 400, "invalid_request_error", "parameter_invalid_number", "percentage"},
		{"limit too big", "GET", "/v1/customers?limit=101", "sk_test_x", "", 400, "invalid_request_error", "parameter_invalid_integer", "limit"},
		{"limit zero", "GET", "/v1/customers?limit=0", "sk_test_x", "", 400, "invalid_request_error", "parameter_invalid_integer", "limit"},
		{"unknown cursor", "GET", "/v1/customers?starting_after=cus_nope", "sk_test_x", "", 400, "invalid_request_error", "resource_missing", "starting_after"},
		{"created not allowed", "GET", "/v1/payment_methods?created=1", "sk_test_x", "", 400, "invalid_request_error", "parameter_unknown", "created"},
		{"created on lines", "GET", "/v1/invoices/in_x/lines?created[gt]=1", "sk_test_x", "", 400, "invalid_request_error", "parameter_unknown", "created"},
		{"no price delete", "DELETE", "/v1/prices/price_x", "sk_test_x", "", 404, "invalid_request_error", "", ""},
		{"bad expand", "GET", "/v1/customers/" + cid + "?expand[]=email", "sk_test_x", "", 400, "invalid_request_error", "", "expand"},
		{"huge body", "POST", "/v1/customers", "sk_test_x", "description=" + strings.Repeat("x", 5<<20), 400, "invalid_request_error", "", ""},
		{"unknown coupon", "POST", "/v1/customers/" + cid, "sk_test_x", "coupon=C10", 400, "invalid_request_error", "resource_missing", "coupon"},
		{"unknown promotion code", "POST", "/v1/customers/" + cid, "sk_test_x", "promotion_code=promo_1", 400, "invalid_request_error", "resource_missing", "promotion_code"},
		// Invoice discounts are not modelled: refused, not ignored; "" unsets.
		{"invoice discounts not modelled", "POST", "/v1/invoices", "sk_test_x", "customer=" + cid + "&discounts[0][coupon]=C10", 400, "invalid_request_error", "", "discounts"},
		{"checkout discounts not modelled", "POST", "/v1/checkout/sessions", "sk_test_x", "mode=payment&success_url=https%3A%2F%2Fx.co&line_items[0][price]=p&line_items[0][quantity]=1&discounts[0][coupon]=C10", 400, "invalid_request_error", "", "discounts"},
		{"coupon unset ok", "POST", "/v1/customers/" + cid, "sk_test_x", "coupon=", 200, "", "", ""},
		{"live key ok", "GET", "/v1/customers", "sk_live_x", "", 200, "", "", ""},
		{"restricted key ok", "GET", "/v1/customers", "rk_test_x", "", 200, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, base+tc.path, tc.key, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if r.header.Get("Request-Id") == "" {
				t.Error("no Request-Id")
			}
			if tc.status == 200 {
				return
			}
			if got := errField(r, "type"); got != tc.typ {
				t.Errorf("type %q, want %q", got, tc.typ)
			}
			if got := errField(r, "code"); got != tc.code {
				t.Errorf("code %q, want %q (%s)", got, tc.code, r.raw)
			}
			if got := errField(r, "param"); got != tc.param {
				t.Errorf("param %q, want %q (%s)", got, tc.param, r.raw)
			}
			if errField(r, "message") == "" || errField(r, "request_log_url") == "" {
				t.Errorf("message/request_log_url missing: %s", r.raw)
			}
		})
	}

	// Expansion of references, and data.X on lists.
	r := do(t, "GET", base+"/v1/customers?expand[]=data.subscriptions", "sk_test_x", "")
	data, _ := r.body["data"].([]any)
	if r.status != 200 || len(data) != 1 || data[0].(map[string]any)["subscriptions"] == nil {
		t.Fatalf("expand data.subscriptions: %s", r.raw)
	}
	if r.body["url"] != "/v1/customers" || r.body["object"] != "list" || r.body["has_more"] != false {
		t.Fatalf("list envelope: %s", r.raw)
	}
	if r := do(t, "GET", base+"/v1/customers/"+cid+"/tax_ids", "sk_test_x", ""); r.body["url"] != "/v1/customers/"+cid+"/tax_ids" {
		t.Fatalf("nested list url: %s", r.raw)
	}
}

// TestIdempotency replays a POST with the same key, and refuses the key
// with other parameters.
func TestIdempotency(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	a := do(t, "POST", base+"/v1/customers", "sk_test_x", "email=x%40y.z", "Idempotency-Key", "k1")
	b := do(t, "POST", base+"/v1/customers", "sk_test_x", "email=x%40y.z", "Idempotency-Key", "k1")
	if a.status != 200 || a.raw != b.raw || b.header.Get("Idempotent-Replayed") != "true" || a.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("replay: %d %q vs %q (%v)", a.status, a.raw, b.raw, b.header)
	}
	if n := len(e.Objects("customers")); n != 1 {
		t.Fatalf("%d customers after a replayed create", n)
	}
	c := do(t, "POST", base+"/v1/customers", "sk_test_x", "email=other%40y.z", "Idempotency-Key", "k1")
	if c.status != 400 || errField(c, "type") != "idempotency_error" {
		t.Fatalf("other params: %d %s", c.status, c.raw)
	}
	// Concurrent requests with one key create one object.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, "POST", base+"/v1/products", "sk_test_x", "name=same", "Idempotency-Key", "k2")
		}()
	}
	wg.Wait()
	if n := len(e.Objects("products")); n != 1 {
		t.Fatalf("%d products from one idempotency key", n)
	}
	// Keys are per API key.
	d := do(t, "POST", base+"/v1/customers", "sk_test_other", "email=other%40y.z", "Idempotency-Key", "k1")
	if d.status != 200 {
		t.Fatalf("other api key: %d %s", d.status, d.raw)
	}

	// stripe-go's automatic key survives its own retries: with faults on,
	// every create still makes exactly one object.
	e2, base2 := emulatortest.Start(t, emulator.Options{Faults: 0.3})
	sc := newClientTimeout(t, base2, "sk_test_x", 20, 300*time.Millisecond)
	// A create whose every attempt failed for the client may still have
	// been applied (its last answer lost), as with Stripe; what must hold
	// is one object per create at most, and one for every success.
	// 20 creates meet no fault about once in a few hundred runs; go on
	// until one was injected, so the test always checks a retry.
	succeeded := map[string]bool{}
	creates := 0
	for ; creates < 20 || (faultsSeen(e2) == 0 && creates < 200); creates++ {
		name := fmt.Sprintf("p%d", creates)
		if _, err := sc.Products.New(&stripe.ProductParams{Name: stripe.String(name)}); err == nil {
			succeeded[name] = true
		} else {
			t.Logf("create %s: %v", name, err)
		}
	}
	stored := map[string]int{}
	for _, raw := range e2.Objects("products") {
		var p struct{ Name string }
		json.Unmarshal(raw, &p)
		stored[p.Name]++
	}
	for name, n := range stored {
		if n > 1 {
			t.Errorf("faults: %d products named %s", n, name)
		}
	}
	for name := range succeeded {
		if stored[name] != 1 {
			t.Errorf("faults: %s succeeded but is not stored", name)
		}
	}
	if len(succeeded) < creates*3/4 {
		t.Fatalf("faults: only %d of %d creates succeeded", len(succeeded), creates)
	}
	if faultsSeen(e2) == 0 {
		t.Fatalf("no faults injected in %d creates: %+v", creates, e2.Stats().ByStatus)
	}
}

// faultsSeen counts the requests e answered with anything but a 200.
func faultsSeen(e *emulator.Emulator) int64 {
	st := e.Stats()
	return st.Total - st.ByStatus[200]
}

// TestRateLimit answers Stripe's 429 beyond the limit, per key mode.
func TestRateLimit(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{RateLimit: 5})
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := do(t, "GET", base+"/v1/customers", "sk_test_x", "")
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
			if r.status == 429 && (errField(r, "code") != "rate_limit" || r.header.Get("Stripe-Rate-Limited-Reason") == "") {
				t.Errorf("429 body: %s", r.raw)
			}
		}()
	}
	wg.Wait()
	if codes[429] < 10 || codes[200] < 5 {
		t.Fatalf("codes %v", codes)
	}
	e.Update(emulator.Options{RateLimit: -1})
	for i := 0; i < 30; i++ {
		if r := do(t, "GET", base+"/v1/customers", "sk_test_x", ""); r.status != 200 {
			t.Fatalf("unlimited: %d", r.status)
		}
	}
	if st := e.Stats(); st.ByRoute["GET /v1/customers"] != 50 || st.Total != 50 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestLatency adds the configured delay.
func TestLatency(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{Latency: 30 * time.Millisecond, LatencyMax: 60 * time.Millisecond})
	start := time.Now()
	do(t, "GET", base+"/v1/customers", "sk_test_x", "")
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("latency %v", d)
	}
	if lo, hi, err := emulator.ParseLatency("50ms-300ms"); err != nil || lo != 50*time.Millisecond || hi != 300*time.Millisecond {
		t.Fatalf("ParseLatency: %v %v %v", lo, hi, err)
	}
	if _, _, err := emulator.ParseLatency("300ms-50ms"); err == nil {
		t.Fatal("inverted range accepted")
	}
}

// TestEvents checks previous_attributes, filters, the visibility delay,
// retention, and the Date header on the emulator's clock.
func TestEvents(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	sc := newClient(t, base, "sk_test_x", 0)
	cus := check(sc.Customers.New(&stripe.CustomerParams{Name: stripe.String("a")}))
	check(sc.Customers.Update(cus.ID, &stripe.CustomerParams{Name: stripe.String("b")}))
	check(sc.Customers.Update(cus.ID, &stripe.CustomerParams{Name: stripe.String("b")})) // no change, no event
	it := sc.Events.List(&stripe.EventListParams{Types: []*string{stripe.String("customer.updated")}})
	var evs []*stripe.Event
	for it.Next() {
		evs = append(evs, it.Event())
	}
	if len(evs) != 1 || evs[0].Data.PreviousAttributes["name"] != "a" || evs[0].Data.Object["name"] != "b" {
		t.Fatalf("customer.updated: %d events %+v", len(evs), evs)
	}
	check(sc.Customers.Update(cus.ID, &stripe.CustomerParams{Metadata: map[string]string{"a": "1", "b": "2"}}))
	check(sc.Customers.Update(cus.ID, &stripe.CustomerParams{Metadata: map[string]string{"a": "", "b": "3"}}))
	ml := sc.Events.List(&stripe.EventListParams{Type: stripe.String("customer.updated"), ListParams: stripe.ListParams{Single: true}})
	ml.Next()
	if pa, _ := ml.Event().Data.PreviousAttributes["metadata"].(map[string]any); len(pa) != 2 || pa["a"] != "1" || pa["b"] != "2" {
		t.Fatalf("metadata previous_attributes: %v", ml.Event().Data.PreviousAttributes)
	}
	if n := count(sc.Events.List(&stripe.EventListParams{Type: stripe.String("customer.*")}).Iter); n != 4 {
		t.Fatalf("customer.*: %d", n)
	}
	check(sc.Customers.Del(cus.ID, nil))
	if n := count(sc.Events.List(&stripe.EventListParams{Type: stripe.String("customer.deleted")}).Iter); n != 1 {
		t.Fatalf("customer.deleted: %d", n)
	}

	// Visibility delay: an event can show up after newer ones.
	e.Update(emulator.Options{RateLimit: -1, EventDelay: 300 * time.Millisecond})
	for i := 0; i < 10; i++ {
		check(sc.Products.New(&stripe.ProductParams{Name: stripe.String("p")}))
	}
	visible := count(sc.Events.List(&stripe.EventListParams{Type: stripe.String("product.created")}).Iter)
	time.Sleep(350 * time.Millisecond)
	if all := count(sc.Events.List(&stripe.EventListParams{Type: stripe.String("product.created")}).Iter); all != 10 || visible == 10 {
		t.Fatalf("delay: %d visible at once, %d later", visible, all)
	}

	// Retention: after 31 days the events are gone and a cursor on one is
	// refused.
	first := sc.Events.List(&stripe.EventListParams{ListParams: stripe.ListParams{Single: true}})
	first.Next()
	evID := first.Event().ID
	e.SetClockOffset(31 * 24 * time.Hour)
	r := do(t, "GET", base+"/v1/events?starting_after="+url.QueryEscape(evID), "sk_test_x", "")
	if r.status != 400 || errField(r, "param") != "starting_after" {
		t.Fatalf("expired cursor: %d %s", r.status, r.raw)
	}
	r = do(t, "GET", base+"/v1/events", "sk_test_x", "")
	if data, _ := r.body["data"].([]any); len(data) != 0 {
		t.Fatalf("%d events past retention", len(data))
	}
	check(sc.Customers.New(&stripe.CustomerParams{}))
	if st := e.Stats(); st.Events != 1 {
		t.Fatalf("expired events kept in memory: %d", st.Events)
	}
	d, err := http.ParseTime(r.header.Get("Date"))
	if err != nil || time.Until(d) < 30*24*time.Hour {
		t.Fatalf("Date header %q ignores the clock offset", r.header.Get("Date"))
	}
}

// Live mode allows four times test mode's rate, as Stripe does (100 and
// 25 requests/s), also when the test-mode rate is given. The requests
// go to six endpoints, five each: live mode also limits each endpoint
// to the test-mode rate.
func TestRateLimitLiveIsFourTimesTest(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: 5})
	lists := []string{"customers", "products", "prices", "coupons", "tax_rates", "invoices"}
	// burst sends 30 requests at once and checks that the bucket of
	// size b refilling at b per second answered b of them, plus what it
	// refilled while they arrived (a loaded machine spreads them out).
	burst := func(mode, key string, b int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		ok, limited := 0, 0
		start := time.Now()
		for i := 0; i < 30; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := do(t, "GET", base+"/v1/"+lists[i%len(lists)], key, "")
				mu.Lock()
				defer mu.Unlock()
				switch r.status {
				case 200:
					ok++
				case 429:
					limited++
				}
			}()
		}
		wg.Wait()
		most := b + int(float64(b)*time.Since(start).Seconds()) + 1
		if ok < b || ok > most || limited == 0 && most < 30 {
			t.Errorf("%s: %d answered, %d limited of 30 at once; want the burst of %d answered (at most %d with the refill meanwhile)", mode, ok, limited, b, most)
		}
	}
	burst("live", "sk_live_x", 20) // 4 × 5
	burst("test", "sk_test_x", 5)
}

// TestEmptyStringByPlace: the empty string (key=) is taken where
// the spec's request schema takes it at that place, at any depth: a
// string without an enum (which "" is; Stripe reads it as an unset:
// stripe/stripe-dotnet#1954, a customer's email= and phone=), an enum
// with "" among its values, or the unset alternative anyOf [..., enum
// [""]] of an object or array. Anywhere else, whatever the type (an
// array, an object, an integer, a number, a boolean, an enum without "",
// an array's element), it is refused as Stripe refuses it
// (stripe/stripe-dotnet#1828: 'line_items[0][images]'; electrikhq/
// electrik#3: 'default_tax_rates[0]'): 400 invalid_request_error,
// parameter_invalid_empty, param the form key, and nothing changes.
// Before, "" was taken for every array and object, and a number or a
// boolean answered "Invalid decimal" or "Invalid boolean".
func TestEmptyStringByPlace(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key,
		"name=a&preferred_locales[0]=en&address[line1]=1+Main+St&address[line2]=Apt+2&invoice_settings[footer]=f")))
	price := idOfResp(mustOK(t, do(t, "POST", base+"/v1/prices", key, "currency=usd&unit_amount=100&recurring[interval]=month&product_data[name]=p")))
	txr := idOfResp(mustOK(t, do(t, "POST", base+"/v1/tax_rates", key, "display_name=VAT&percentage=20&inclusive=false")))
	sub := mustOK(t, do(t, "POST", base+"/v1/subscriptions", key, "customer="+cus+"&items[0][price]="+price+
		"&collection_method=send_invoice&days_until_due=7&default_tax_rates[0]="+txr))
	subID := idOfResp(sub)
	items, _ := sub.body["items"].(map[string]any)
	data, _ := items["data"].([]any)
	si, _ := data[0].(map[string]any)["id"].(string)

	cusPath, subPath := "/v1/customers/"+cus, "/v1/subscriptions/"+subID
	for _, c := range []struct {
		name, path, body string
		param            string // "" when taken
	}{
		{"a string", cusPath, "name=", ""},
		{"a string in a hash", cusPath, "address[line2]=", ""},
		{"an unset alternative of an object", cusPath, "address=", ""},
		{"an enum with \"\"", cusPath, "tax_exempt=", ""},
		{"a free key", cusPath, "metadata[k]=", ""},
		{"an unset alternative in a hash", cusPath, "invoice_settings[rendering_options]=", ""},
		{"an enum with \"\" two levels down", cusPath, "invoice_settings[rendering_options][amount_tax_display]=", ""},
		{"an unset alternative of an array in a hash", cusPath, "invoice_settings[custom_fields]=", ""},
		{"an unset alternative of an array", subPath, "default_tax_rates=", ""},
		{"an unset alternative three levels down", subPath, "payment_settings[payment_method_options][card]=", ""},

		{"an array", cusPath, "preferred_locales=", "preferred_locales"},
		{"an object", cusPath, "invoice_settings=", "invoice_settings"},
		{"an integer", cusPath, "balance=", "balance"},
		{"a boolean", subPath, "cancel_at_period_end=", "cancel_at_period_end"},
		{"a number in a hash", subPath, "transfer_data[destination]=acct_1&transfer_data[amount_percent]=", "transfer_data[amount_percent]"},
		{"an enum without \"\" in a hash", subPath, "payment_settings[save_default_payment_method]=", "payment_settings[save_default_payment_method]"},
		{"an object in a hash", subPath, "payment_settings[payment_method_options]=", "payment_settings[payment_method_options]"},
		{"an array four levels down", subPath, "payment_settings[payment_method_options][us_bank_account][financial_connections][permissions]=",
			"payment_settings[payment_method_options][us_bank_account][financial_connections][permissions]"},
		{"an array's element", subPath, "default_tax_rates[0]=", "default_tax_rates[0]"},
		{"an integer in an array's element", subPath, "items[0][id]=" + si + "&items[0][quantity]=", "items[0][quantity]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, "POST", base+c.path, key, c.body)
			if c.param == "" {
				if r.status != 200 {
					t.Fatalf("%s: %d %s, want it taken", c.body, r.status, r.raw)
				}
				return
			}
			want := fmt.Sprintf("You passed an empty string for '%[1]s'. We assume empty values are an attempt to unset a parameter; however '%[1]s' cannot be unset. You should remove '%[1]s' from your request or supply a non-empty value.", c.param)
			if r.status != 400 || errField(r, "type") != "invalid_request_error" || errField(r, "code") != "parameter_invalid_empty" ||
				errField(r, "param") != c.param || errField(r, "message") != want {
				t.Fatalf("%s: %d %s, want 400 parameter_invalid_empty for %s", c.body, r.status, r.raw, c.param)
			}
		})
	}

	// What was taken applied; what was refused changed nothing.
	got := mustOK(t, do(t, "GET", base+cusPath, key, "")).body
	if got["name"] != nil || got["address"] != nil || !reflect.DeepEqual(got["preferred_locales"], []any{"en"}) {
		t.Errorf("customer name %v, address %v, preferred_locales %v", got["name"], got["address"], got["preferred_locales"])
	}
	if is, _ := got["invoice_settings"].(map[string]any); is["footer"] != "f" {
		t.Errorf("invoice_settings %v", got["invoice_settings"])
	}
	s := mustOK(t, do(t, "GET", base+subPath, key, "")).body
	if s["cancel_at_period_end"] != false || !reflect.DeepEqual(s["default_tax_rates"], []any{}) {
		t.Errorf("subscription cancel_at_period_end %v, default_tax_rates %v", s["cancel_at_period_end"], s["default_tax_rates"])
	}
}

// reviewLimited reports which limit refused r: "" when none did,
// otherwise Stripe-Rate-Limited-Reason, after checking the 429 is
// Stripe's rate limit (code rate_limit).
func reviewLimited(t *testing.T, r apiResp) string {
	t.Helper()
	if r.status != 429 {
		return ""
	}
	if errField(r, "code") != "rate_limit" || errField(r, "type") != "invalid_request_error" || errField(r, "message") == "" {
		t.Fatalf("429 is not Stripe's rate limit: %s", r.raw)
	}
	return r.header.Get("Stripe-Rate-Limited-Reason")
}

// TestEndpointRateLiveMode: in live mode every endpoint (method and
// path template: GET /v1/customers/{customer} for any id) has its own
// bucket at the test-mode rate, as Stripe's default 25/s per endpoint
// besides the global 100/s; a request it refuses is a 429 rate_limit with
// Stripe-Rate-Limited-Reason endpoint-rate, and it still counts against
// the global limit.
func TestEndpointRateLiveMode(t *testing.T) {
	// RateLimit 1: live mode 4/s globally (burst 4), 1/s per endpoint
	// (burst 1): a token comes back only every 250 ms, far longer than
	// these few local requests take.
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: 1})
	const key = "sk_live_review"
	steps := []struct {
		path, want string
	}{
		{"/v1/customers/cus_a", ""},
		{"/v1/customers/cus_b", "endpoint-rate"}, // same endpoint, other id
		{"/v1/products/prod_a", ""},              // another endpoint has its own bucket
		{"/v1/prices", ""},                       // the 4th global token (cus_b's refusal took one)
		{"/v1/coupons", "global-rate"},           // its endpoint bucket is full, the global one empty
	}
	for _, s := range steps {
		r := do(t, "GET", base+s.path, key, "")
		if got := reviewLimited(t, r); got != s.want {
			t.Fatalf("GET %s: limited %q (status %d %.200s), want %q", s.path, got, r.status, r.raw, s.want)
		}
	}
}

// TestEndpointRateTestModeUnchanged: test mode's global limit is the
// endpoint's, so every 429 is the global one, as before.
func TestEndpointRateTestModeUnchanged(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: 3})
	for i, want := range []string{"", "", "", "global-rate"} {
		r := do(t, "GET", base+"/v1/customers", "sk_test_review", "")
		if got := reviewLimited(t, r); got != want {
			t.Fatalf("request %d: limited %q (status %d), want %q", i, got, r.status, want)
		}
	}
}
