package events_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// TestScheduleFollowsPhases: the subscription changes a schedule
// makes (its current phase updated; a test clock advanced into the next
// phase and past the last, end_behavior cancel and release) reach the
// tables through the events: subscriptions, their items (created, updated
// and deleted with no event of their own) and the schedules.
func TestScheduleFollowsPhases(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, call := opsEnv(t)
	prod := call("/v1/products", url.Values{"name": {"Plan"}})
	price := func(amount int) string {
		return call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {fmt.Sprint(amount)}, "currency": {"usd"}, "recurring[interval]": {"month"}})
	}
	p1, p2, p3 := price(500), price(900), price(1500)
	v.converge(t, 10*time.Second)

	// An active schedule's current phase updated: items swapped and
	// added, quantities, metadata.
	cus := call("/v1/customers", url.Values{"name": {"Sched"}})
	s := call("/v1/subscription_schedules", url.Values{"customer": {cus}, "start_date": {"now"},
		"phases[0][items][0][price]": {p1}, "phases[0][items][1][price]": {p2}, "phases[0][iterations]": {"2"}})
	v.converge(t, 10*time.Second)
	call("/v1/subscription_schedules/"+s, url.Values{"phases[0][items][0][price]": {p2}, "phases[0][items][0][quantity]": {"4"},
		"phases[0][items][1][price]": {p3}, "phases[0][metadata][tier]": {"gold"}, "phases[0][iterations]": {"1"}})
	v.converge(t, 10*time.Second)

	// Schedules on a test clock moved through their phases.
	for _, end := range []string{"cancel", "release"} {
		k := emulatortest.NewClock(call)
		call("/v1/subscription_schedules", url.Values{"customer": {k.Customer()}, "start_date": {"now"}, "end_behavior": {end},
			"phases[0][items][0][price]": {p1}, "phases[0][end_date]": {fmt.Sprint(frozen + 10*day)},
			"phases[1][items][0][price]": {p2}, "phases[1][items][1][price]": {p3}, "phases[1][end_date]": {fmt.Sprint(frozen + 20*day)}})
		v.converge(t, 10*time.Second)
		advance := v.clockAdvancer(t, k)
		advance(frozen + 15*day)
		advance(frozen + 25*day)
	}
	// p3 only ever reaches a subscription through a phase change.
	var n int
	if err := v.pool.QueryRow(context.Background(), `SELECT count(*) FROM stripe.subscription_items WHERE price->>'id' = $1`, p3).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("%d subscription items of %s stored, want 3 (one per schedule)", n, p3)
	}
}
