package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/stripeapi"
)

func newEmu(t *testing.T) (*emulator.Emulator, *Injector, *stripeapi.Client) {
	t.Helper()
	e, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	inj := NewInjector(e, 0, 1)
	srv := httptest.NewServer(inj)
	t.Cleanup(srv.Close)
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_faults", BaseURL: srv.URL, RateLimit: 1000, MaxRetries: 4})
	if err != nil {
		t.Fatal(err)
	}
	return e, inj, c
}

func byMarker(e *emulator.Emulator, m string) int {
	n := 0
	for _, raw := range e.Objects("customers") {
		var c struct {
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(raw, &c) == nil && c.Metadata["m"] == m {
			n++
		}
	}
	return n
}

func isCreate(m string) func(Request) bool {
	return func(r Request) bool {
		return r.Method == http.MethodPost && r.Path == "/v1/customers" && r.Form.Get("metadata[m]") == m
	}
}

// A create whose response is lost is performed: without an idempotency
// key a retry makes a second object (the danger), with stripeapi's one key
// per call it makes exactly one (the remedy).
func TestDropAfterPerform(t *testing.T) {
	e, inj, c := newEmu(t)
	ctx := context.Background()

	// The danger, shown with a plain HTTP client retrying without a key.
	inj.Force(isCreate("raw"), FaultDropAfter)
	for attempt := 0; attempt < 2; attempt++ {
		req, _ := http.NewRequest("POST", c.BaseURL()+"/v1/customers", stringsReader("metadata[m]=raw"))
		req.Header.Set("Authorization", "Bearer sk_test_faults")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := http.DefaultClient.Do(req)
		if attempt == 0 {
			if err == nil {
				res.Body.Close()
				t.Fatal("the dropped response arrived")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	if n := byMarker(e, "raw"); n != 2 {
		t.Fatalf("a keyless retry after a lost response made %d objects; the fault does not perform the write", n)
	}

	// The remedy.
	inj.Force(isCreate("keyed"), FaultDropAfter, FaultTimeout, FaultDropAfter)
	inj.SetHold(200 * time.Millisecond)
	resp, err := c.Post(ctx, "/v1/customers", url.Values{"metadata[m]": {"keyed"}}, "")
	if err != nil {
		t.Fatalf("create after three faults: %v", err)
	}
	if n := byMarker(e, "keyed"); n != 1 {
		t.Fatalf("%d objects for one keyed create", n)
	}
	if resp.Attempts != 4 {
		t.Errorf("attempts %d, want 4", resp.Attempts)
	}
	if got := inj.Counts(); got["drop_after_perform"] != 3 || got["timeout"] != 1 {
		t.Errorf("counts %v", got)
	}
}

// Each fault kind reaches the client as the error it stands for, and the
// random rate applies.
func TestFaultKinds(t *testing.T) {
	_, inj, c := newEmu(t)
	ctx := context.Background()
	// No keep-alive: net/http silently resends an idempotent request (a
	// GET, or anything with an Idempotency-Key) when a reused connection
	// closes before answering, which would hide the drop faults.
	noRetry, _ := stripeapi.New(stripeapi.Config{APIKey: "sk_test_faults", BaseURL: c.BaseURL(), RateLimit: 1000, MaxRetries: -1,
		Transport: &http.Transport{DisableKeepAlives: true}})
	inj.SetHold(50 * time.Millisecond)
	want := map[Fault]int{Fault500: 500, Fault503: 503, Fault429: 429}
	for f, status := range want {
		inj.Force(func(r Request) bool { return r.Path == "/v1/customers" }, f)
		_, err := noRetry.Get(ctx, "/v1/customers", nil)
		var se *stripeapi.Error
		if !errors.As(err, &se) || se.HTTPStatus != status {
			t.Errorf("%v: got %v", f, err)
		}
	}
	for _, f := range []Fault{FaultDrop, FaultDropAfter, FaultTimeout} {
		inj.Force(func(r Request) bool { return r.Path == "/v1/customers" }, f)
		_, err := noRetry.Get(ctx, "/v1/customers", nil)
		var ne *stripeapi.NetworkError
		if !errors.As(err, &ne) {
			t.Errorf("%v: got %v, want a network error", f, err)
		}
	}
	inj.SetRate(1)
	if _, err := noRetry.Get(ctx, "/v1/customers", nil); err == nil {
		t.Errorf("rate 1: a request went through")
	}
	inj.SetRate(0)
	if _, err := noRetry.Get(ctx, "/v1/customers", nil); err != nil {
		t.Errorf("rate 0: %v", err)
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
