package emulator_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// Stripe's error JSON links a coded error to its page of the error-codes
// reference (doc_url) and the request to its Dashboard log
// (request_log_url, .../test/logs/req_…?t=… in test mode), e.g. from
// stripe/stripe-js#588: {"code": "resource_missing", "doc_url":
// "https://stripe.com/docs/error-codes/resource-missing", "request_log_url":
// "https://dashboard.stripe.com/test/logs/req_xxxxxxxx?t=1711953549", …}.
func TestErrorDocAndLogURL(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, tc := range []struct {
		name, method, path, key, body string
		status                        int
		doc                           string // "" = no doc_url
		logPrefix                     string
	}{
		{"resource_missing", "GET", "/v1/customers/cus_nope", "sk_test_x", "", 404,
			"https://stripe.com/docs/error-codes/resource-missing", "https://dashboard.stripe.com/test/logs/"},
		{"parameter_unknown", "POST", "/v1/customers", "sk_test_x", "bogus=1", 400,
			"https://stripe.com/docs/error-codes/parameter-unknown", "https://dashboard.stripe.com/test/logs/"},
		{"parameters_exclusive", "GET", "/v1/customers?starting_after=a&ending_before=b", "sk_test_x", "", 400,
			"https://stripe.com/docs/error-codes/parameters-exclusive", "https://dashboard.stripe.com/test/logs/"},
		{"live mode", "GET", "/v1/customers/cus_nope", "sk_live_x", "", 404,
			"https://stripe.com/docs/error-codes/resource-missing", "https://dashboard.stripe.com/logs/"},
		{"no code", "GET", "/v1/nope", "sk_test_x", "", 404, "", "https://dashboard.stripe.com/test/logs/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, base+tc.path, tc.key, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			e, _ := r.body["error"].(map[string]any)
			if doc, has := e["doc_url"]; tc.doc == "" && has || tc.doc != "" && doc != tc.doc {
				t.Errorf("doc_url %v, want %q", doc, tc.doc)
			}
			want := tc.logPrefix + r.header.Get("Request-Id") + "?t="
			if got := errField(r, "request_log_url"); !strings.HasPrefix(got, want) {
				t.Errorf("request_log_url %q, want %q…", got, want)
			}
		})
	}
}

// "Expansions have a maximum depth of four levels (for example, the
// deepest expansion allowed when listing charges is
// data.invoice.subscription.default_source)" (Stripe API reference,
// Expanding responses); deeper ones fail the whole request with 400
// property_expansion_max_depth, "You cannot expand more than 4 levels of a
// property. Property: …".
func TestExpandDepth(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus, price := catalog(t, base, 100)
	sub := idOfResp(mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price)))
	for _, tc := range []struct {
		name, method, path, body string
		ok                       bool
	}{
		{"retrieve, 4 levels", "GET", "/v1/subscriptions/" + sub + "?expand[]=latest_invoice.subscription.customer.default_source", "", true},
		{"retrieve, 5 levels", "GET", "/v1/subscriptions/" + sub + "?expand[]=latest_invoice.subscription.latest_invoice.subscription.customer", "", false},
		{"list, data + 3", "GET", "/v1/subscriptions?expand[]=data.latest_invoice.subscription.customer", "", true},
		{"list, data + 4", "GET", "/v1/subscriptions?expand[]=data.latest_invoice.subscription.customer.default_source", "", false},
		{"update, 5 levels", "POST", "/v1/subscriptions/" + sub, "metadata[a]=b&expand[]=latest_invoice.subscription.latest_invoice.subscription.customer", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, base+tc.path, "sk_test_x", tc.body)
			if tc.ok {
				mustOK(t, r)
				return
			}
			if r.status != 400 || errField(r, "code") != "property_expansion_max_depth" ||
				!strings.HasPrefix(errField(r, "message"), "You cannot expand more than 4 levels of a property.") {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}
	// A refused update changed nothing.
	if r := mustOK(t, do(t, "GET", base+"/v1/subscriptions/"+sub, "sk_test_x", "")); r.body["metadata"].(map[string]any)["a"] != nil {
		t.Fatalf("refused update applied: %s", r.raw)
	}
}

// Idempotency keys (docs.stripe.com/api/idempotent_requests): "up to 255
// characters long"; a key reused on another endpoint is refused naming
// both ("Keys for idempotent requests can only be used for the same
// endpoint they were first used for ('/v1/invoices/in_…/pay' vs
// '/v1/invoices')", stripe/stripe-ruby#598), with other parameters
// likewise.
func TestIdempotencyKeyRules(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a", "Idempotency-Key", "k1"))
	for _, tc := range []struct {
		name, path, body, key string
		status                int
		typ, msg              string
	}{
		{"same request", "/v1/customers", "name=a", "k1", 200, "", ""},
		{"other endpoint", "/v1/products", "name=a", "k1", 400, "idempotency_error",
			"Keys for idempotent requests can only be used for the same endpoint they were first used for ('/v1/products' vs '/v1/customers')."},
		{"other params", "/v1/customers", "name=b", "k1", 400, "idempotency_error",
			"Keys for idempotent requests can only be used with the same parameters they were first used with."},
		{"255 characters", "/v1/customers", "name=c", strings.Repeat("k", 255), 200, "", ""},
		{"256 characters", "/v1/customers", "name=c", strings.Repeat("k", 256), 400, "invalid_request_error", "Invalid Idempotency-Key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", base+tc.path, "sk_test_x", tc.body, "Idempotency-Key", tc.key)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status == 200 {
				return
			}
			if errField(r, "type") != tc.typ || !strings.HasPrefix(errField(r, "message"), tc.msg) {
				t.Fatalf("want %s %q…: %s", tc.typ, tc.msg, r.raw)
			}
		})
	}
}

// A request whose key is held by one still running gets 409
// idempotency_key_in_use (Stripe's errors reference: "409 Conflict — The
// request conflicts with another request (perhaps due to using the same
// idempotent key)"), and nothing is saved for it: once the first one
// finishes, a retry replays the first one's answer.
func TestIdempotencyKeyInUse(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{Latency: time.Second})
	var first apiResp
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		first = do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a", "Idempotency-Key", "busy")
	}()
	// The first request holds its key for its second of latency; the
	// requests below must come within it.
	for deadline := time.Now().Add(10 * time.Second); !emulator.KeyInFlight(e, "sk_test_x", "busy"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first request never arrived")
		}
	}
	for _, tc := range []struct {
		name, key, apiKey string
		status            int
	}{
		{"same key while running", "busy", "sk_test_x", 409},
		{"other key", "free", "sk_test_x", 200},
		{"same key, other API key", "busy", "sk_test_other", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", base+"/v1/customers", tc.apiKey, "name=a", "Idempotency-Key", tc.key)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status == 409 && (errField(r, "code") != "idempotency_key_in_use" || r.header.Get("Idempotent-Replayed") != "") {
				t.Fatalf("409: %s", r.raw)
			}
		})
	}
	wg.Wait()
	mustOK(t, first)
	again := do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a", "Idempotency-Key", "busy")
	if again.status != 200 || again.raw != first.raw || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after the first finished: %d %s", again.status, again.raw)
	}
	if n := len(e.Objects("customers")); n != 3 {
		t.Fatalf("%d customers, want 3 (busy, free, other API key)", n)
	}
}

// TestDeepHashParam: a hash given below the depth where the
// emulator stops building an object's empty shape
// (payment_settings[payment_method_options][us_bank_account][financial_connections])
// is stored as given. It used to panic (assignment to entry in nil map)
// and answer 500 api_error.
func TestDeepHashParam(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "name=a")))
	price := idOfResp(mustOK(t, do(t, "POST", base+"/v1/prices", key, "currency=usd&unit_amount=100&recurring[interval]=month&product_data[name]=p")))
	r := mustOK(t, do(t, "POST", base+"/v1/subscriptions", key, "customer="+cus+"&items[0][price]="+price+
		"&collection_method=send_invoice&days_until_due=7"+
		"&payment_settings[payment_method_options][us_bank_account][financial_connections][permissions][0]=payment_method"+
		"&payment_settings[payment_method_options][us_bank_account][financial_connections][permissions][1]=balances"))
	ps, _ := r.body["payment_settings"].(map[string]any)
	pmo, _ := ps["payment_method_options"].(map[string]any)
	us, _ := pmo["us_bank_account"].(map[string]any)
	fc, _ := us["financial_connections"].(map[string]any)
	if !reflect.DeepEqual(fc["permissions"], []any{"payment_method", "balances"}) {
		t.Fatalf("payment_settings %v", ps)
	}
}

// An injected timeout holds a POST until its client gives up, as it does a
// GET: not for the whole hold (10 s) because the body was never read, which
// leaves the server blind to the closed connection and keeps the request's
// idempotency key in use, so that the client's retries meet 409
// idempotency_key_in_use for seconds (TestIdempotency took ~30 s of it).
func TestTimeoutFaultEndsWhenClientGivesUp(t *testing.T) {
	e, err := emulator.New(emulator.Options{Faults: 1, RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.ServeHTTP(w, r)
		ended <- time.Now()
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(e.Close) // runs first: releases a held request
	client := &http.Client{Timeout: 300 * time.Millisecond}
	// Every request meets a fault, one in six of them a timeout: 100
	// tries miss it once in 10^8 runs.
	for try := 0; try < 100; try++ {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/customers", strings.NewReader("email=a%40b.co&description="+strings.Repeat("x", 2000)))
		req.Header.Set("Authorization", "Bearer sk_test_review")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Idempotency-Key", "k")
		res, err := client.Do(req)
		gaveUp := time.Now()
		if err == nil {
			res.Body.Close()
		}
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout()
		select {
		case end := <-ended:
			if timedOut {
				if d := end.Sub(gaveUp); d > 2*time.Second {
					t.Fatalf("the held request ended %v after its client gave up", d)
				}
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("try %d (timed out: %v): the request was still held 5 s after its client gave up", try, timedOut)
		}
	}
	t.Fatal("no injected timeout in 100 faults")
}
