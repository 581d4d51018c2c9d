package emulator_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// listIDs lists the ids a GET list answers.
func listIDs(t *testing.T, u string) []string {
	t.Helper()
	r := mustOK(t, do(t, "GET", u, "sk_test_x", ""))
	var out []string
	for _, d := range r.body["data"].([]any) {
		out = append(out, d.(map[string]any)["id"].(string))
	}
	return out
}

// Test clocks: a customer created on a clock has the clock's frozen time
// and its test_clock; GET /v1/customers leaves it out unless test_clock
// names the clock, and GET /v1/subscriptions leaves its subscriptions out
// unless test_clock or customer is given (spec, API 2023-10-16); other
// lists (invoices) include its objects, which carry the clock too.
func TestTestClockLists(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const frozen = 1577836800
	ck := mustOK(t, do(t, "POST", base+"/v1/test_helpers/test_clocks", "sk_test_x", fmt.Sprintf("frozen_time=%d&name=sim", frozen)))
	clock := idOfResp(ck)
	if ck.body["object"] != "test_helpers.test_clock" || ck.body["status"] != "ready" || num(ck.body["frozen_time"]) != frozen ||
		ck.body["name"] != "sim" || num(ck.body["deletes_after"]) != num(ck.body["created"])+7*86400 || ck.body["livemode"] != false {
		t.Fatalf("clock: %s", ck.raw)
	}
	plain, price := catalog(t, base, 1000)
	c := mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=onclock&test_clock="+clock))
	onClock := idOfResp(c)
	if c.body["test_clock"] != clock || num(c.body["created"]) != frozen {
		t.Fatalf("customer on clock: %s", c.raw)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/customers/"+plain, "sk_test_x", "")); r.body["test_clock"] != nil {
		t.Fatalf("plain customer has a clock: %s", r.raw)
	}
	if got := listIDs(t, base+"/v1/customers"); !slices.Equal(got, []string{plain}) {
		t.Fatalf("customers without test_clock: %v, want only %s", got, plain)
	}
	if got := listIDs(t, base+"/v1/customers?test_clock="+clock); !slices.Equal(got, []string{onClock}) {
		t.Fatalf("customers with test_clock: %v, want %s", got, onClock)
	}

	s := mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+onClock+"&items[0][price]="+price+"&payment_behavior=default_incomplete"))
	sub := idOfResp(s)
	if s.body["test_clock"] != clock || num(s.body["created"]) != frozen || num(s.body["current_period_start"]) != frozen {
		t.Fatalf("subscription of a clock customer: %s", s.raw)
	}
	plainSub := idOfResp(mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+plain+"&items[0][price]="+price+"&payment_behavior=default_incomplete")))
	if got := listIDs(t, base+"/v1/subscriptions?status=all"); !slices.Equal(got, []string{plainSub}) {
		t.Fatalf("subscriptions without test_clock: %v, want only %s", got, plainSub)
	}
	for _, q := range []string{"test_clock=" + clock, "customer=" + onClock} {
		if got := listIDs(t, base+"/v1/subscriptions?status=all&"+q); !slices.Equal(got, []string{sub}) {
			t.Fatalf("subscriptions with %s: %v, want %s", q, got, sub)
		}
	}
	if got := listIDs(t, base+"/v1/customers/"+onClock+"/subscriptions"); !slices.Equal(got, []string{sub}) {
		t.Fatalf("the clock customer's subscriptions: %v", got)
	}
	inv, _ := s.body["latest_invoice"].(string)
	if got := listIDs(t, base+"/v1/invoices?limit=100"); !slices.Contains(got, inv) {
		t.Fatalf("invoices leave out %s of the clock customer: %v", inv, got)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/invoices/"+inv, "sk_test_x", "")); r.body["test_clock"] != clock {
		t.Fatalf("invoice of a clock customer: test_clock %v", r.body["test_clock"])
	}

	// The event of the customer is on the emulator's clock, not the
	// frozen time (the events list stays in order).
	ev := mustOK(t, do(t, "GET", base+"/v1/events?limit=100&type=customer.created", "sk_test_x", ""))
	for _, d := range ev.body["data"].([]any) {
		if num(d.(map[string]any)["created"]) == frozen {
			t.Fatalf("event on the frozen time: %v", d)
		}
	}

	if r := do(t, "GET", base+"/v1/customers?test_clock=clock_nope", "sk_test_x", ""); r.status != 400 || errField(r, "param") != "test_clock" {
		t.Fatalf("customers of an unknown clock: %d %s", r.status, r.raw)
	}
	if r := do(t, "POST", base+"/v1/customers", "sk_test_x", "test_clock=clock_nope"); r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != "test_clock" {
		t.Fatalf("customer on an unknown clock: %d %s", r.status, r.raw)
	}
}

// Advancing moves frozen_time forward only (advancing, then ready), and
// deleting a clock deletes its customers (their subscriptions are
// canceled), with the clock's and the customers' events. Test mode only.
func TestTestClockAdvanceDelete(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const frozen = 1577836800
	clock := idOfResp(mustOK(t, do(t, "POST", base+"/v1/test_helpers/test_clocks", "sk_test_x", fmt.Sprintf("frozen_time=%d", frozen))))
	if r := do(t, "POST", base+"/v1/test_helpers/test_clocks", "sk_live_x", "frozen_time=1"); r.status != 400 {
		t.Fatalf("clock with a live key: %d %s", r.status, r.raw)
	}
	if r := do(t, "POST", base+"/v1/test_helpers/test_clocks/"+clock+"/advance", "sk_test_x", fmt.Sprintf("frozen_time=%d", frozen)); r.status != 400 || errField(r, "param") != "frozen_time" {
		t.Fatalf("advance to the same time: %d %s", r.status, r.raw)
	}
	if r := do(t, "POST", base+"/v1/test_helpers/test_clocks/"+clock+"/advance", "sk_test_x", fmt.Sprintf("frozen_time=%d", frozen+3*365*86400)); r.status != 400 {
		t.Fatalf("advance a clock without subscriptions by three years: %d %s", r.status, r.raw)
	}
	a := mustOK(t, do(t, "POST", base+"/v1/test_helpers/test_clocks/"+clock+"/advance", "sk_test_x", fmt.Sprintf("frozen_time=%d", frozen+86400)))
	if num(a.body["frozen_time"]) != frozen+86400 || a.body["status"] != "ready" {
		t.Fatalf("advanced: %s", a.raw)
	}
	_, price := catalog(t, base, 1000)
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "test_clock="+clock)))
	sub := idOfResp(mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&payment_behavior=default_incomplete")))
	if got := listIDs(t, base+"/v1/test_helpers/test_clocks"); !slices.Equal(got, []string{clock}) {
		t.Fatalf("clocks: %v", got)
	}

	d := mustOK(t, do(t, "DELETE", base+"/v1/test_helpers/test_clocks/"+clock, "sk_test_x", ""))
	if d.body["deleted"] != true || d.body["object"] != "test_helpers.test_clock" {
		t.Fatalf("delete: %s", d.raw)
	}
	if r := do(t, "GET", base+"/v1/test_helpers/test_clocks/"+clock, "sk_test_x", ""); r.status != 404 {
		t.Fatalf("deleted clock: %d %s", r.status, r.raw)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/customers/"+cus, "sk_test_x", "")); r.body["deleted"] != true {
		t.Fatalf("customer of a deleted clock: %s", r.raw)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/subscriptions/"+sub, "sk_test_x", "")); r.body["status"] != "canceled" {
		t.Fatalf("subscription of a deleted clock: %s", r.raw)
	}
	if got := eventTypes(t, base, clock); !slices.Equal(got, []string{"test_helpers.test_clock.created", "test_helpers.test_clock.advancing",
		"test_helpers.test_clock.ready", "test_helpers.test_clock.deleted"}) {
		t.Fatalf("clock events: %v", got)
	}
	if got := eventTypes(t, base, cus); !slices.Contains(got, "customer.deleted") {
		t.Fatalf("customer events: %v", got)
	}
}
