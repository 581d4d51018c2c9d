package emulator_test

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// subscriptionItems lists a subscription's items as "price×quantity[rates]{metadata}"
// sorted, and their ids by price.
func subscriptionItems(t *testing.T, base, sub string) (string, map[string]string) {
	t.Helper()
	r := mustOK(t, do(t, "GET", base+"/v1/subscription_items?limit=100&subscription="+sub, "sk_test_x", ""))
	var out []string
	ids := map[string]string{}
	for _, x := range r.body["data"].([]any) {
		it := x.(map[string]any)
		price := at(it, "price.id").(string)
		md, _ := it["metadata"].(map[string]any)
		var kv []string
		for k, v := range md {
			kv = append(kv, k+"="+fmt.Sprint(v))
		}
		sort.Strings(kv)
		out = append(out, fmt.Sprintf("%s×%d[%s]{%s}", price, num(it["quantity"]), rateIDs(it, "tax_rates"), strings.Join(kv, ",")))
		ids[price] = it["id"].(string)
	}
	sort.Strings(out)
	return strings.Join(out, " "), ids
}

// countEvents counts the events of type typ about object id.
func countEvents(t *testing.T, base, id, typ string) int {
	t.Helper()
	n := 0
	for _, e := range eventTypes(t, base, id) {
		if e == typ {
			n++
		}
	}
	return n
}

// Updating the current phase of an active schedule updates its
// subscription at once (Stripe: POST /v1/subscription_schedules/{id}
// proration_behavior, "If the update changes the current phase, indicates
// whether the changes should be prorated"; phases[].metadata "will update
// the underlying subscription's metadata when the phase is entered"):
// items (kept when their price stays, else deleted and created),
// quantities, tax rates, metadata and collection settings, with
// customer.subscription.updated and subscription_schedule.updated. An
// update that leaves the current phase as it was doesn't touch the
// subscription.
func TestScheduleUpdateAppliesCurrentPhase(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp { return do(t, "POST", base+path, "sk_test_x", v.Encode()) }
	cus, p1 := catalog(t, base, 1000)
	_, p2 := catalog(t, base, 2500)
	txr := idOfResp(mustOK(t, post("/v1/tax_rates", url.Values{"display_name": {"VAT"}, "percentage": {"20"}, "inclusive": {"false"}})))

	cases := []struct {
		name      string
		update    url.Values // phase 0 params, prefixed with phases[0]
		wantItems func(p1, p2 string) string
		keepsItem bool // the p1 item keeps its id
		sub       map[string]any
		subEvent  bool
	}{
		{name: "quantity", update: url.Values{"[items][0][price]": {p1}, "[items][0][quantity]": {"3"}},
			wantItems: func(p1, _ string) string { return p1 + "×3[]{}" }, keepsItem: true, subEvent: true},
		{name: "price swap", update: url.Values{"[items][0][price]": {p2}},
			wantItems: func(_, p2 string) string { return p2 + "×1[]{}" }, subEvent: true},
		{name: "added item, tax rates, metadata, collection", update: url.Values{
			"[items][0][price]": {p1}, "[items][0][tax_rates][0]": {txr}, "[items][0][metadata][k]": {"v"},
			"[items][1][price]": {p2}, "[items][1][quantity]": {"2"},
			"[default_tax_rates][0]": {txr}, "[metadata][plan]": {"gold"},
			"[collection_method]": {"send_invoice"}, "[invoice_settings][days_until_due]": {"7"}, "[description]": {"phase two"}},
			wantItems: func(p1, p2 string) string {
				s := []string{p1 + "×1[" + txr + "]{k=v}", p2 + "×2[]{}"}
				sort.Strings(s)
				return strings.Join(s, " ")
			}, keepsItem: true, subEvent: true,
			sub: map[string]any{"default_tax_rates.0.id": txr, "metadata.plan": "gold", "collection_method": "send_invoice",
				"days_until_due": float64(7), "description": "phase two"}},
		{name: "unchanged phase", update: url.Values{"[items][0][price]": {p1}},
			wantItems: func(p1, _ string) string { return p1 + "×1[]{}" }, keepsItem: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOK(t, post("/v1/subscription_schedules", url.Values{"customer": {cus}, "start_date": {"now"},
				"phases[0][items][0][price]": {p1}, "phases[0][iterations]": {"2"}}))
			sched, sub := idOfResp(s), s.body["subscription"].(string)
			_, before := subscriptionItems(t, base, sub)
			subUpdates := countEvents(t, base, sub, "customer.subscription.updated")
			v := url.Values{"phases[0][start_date]": {fmt.Sprint(num(at(s.body, "phases.0.start_date")))},
				"phases[0][end_date]": {fmt.Sprint(num(at(s.body, "phases.0.end_date")))}}
			for k, x := range tc.update {
				v["phases[0]"+k] = x
			}
			u := mustOK(t, post("/v1/subscription_schedules/"+sched, v))
			if u.body["status"] != "active" || u.body["subscription"] != sub {
				t.Fatalf("updated schedule: %s", u.raw)
			}
			got, after := subscriptionItems(t, base, sub)
			if want := tc.wantItems(p1, p2); got != want {
				t.Errorf("subscription items %s, want %s", got, want)
			}
			if kept := after[p1] == before[p1]; kept != tc.keepsItem {
				t.Errorf("p1 item %s → %s, want kept %v", before[p1], after[p1], tc.keepsItem)
			}
			so := mustOK(t, do(t, "GET", base+"/v1/subscriptions/"+sub, "sk_test_x", "")).body
			for path, want := range tc.sub {
				if g := at(so, path); g != want {
					t.Errorf("subscription %s = %v, want %v", path, g, want)
				}
			}
			// The embedded items list follows too.
			var embedded []string
			for _, x := range at(so, "items.data").([]any) {
				embedded = append(embedded, at(x, "price.id").(string))
			}
			if len(embedded) != strings.Count(got, "×") {
				t.Errorf("embedded items %v, items %s", embedded, got)
			}
			n := countEvents(t, base, sub, "customer.subscription.updated") - subUpdates
			if (n > 0) != tc.subEvent {
				t.Errorf("%d customer.subscription.updated events, want some: %v", n, tc.subEvent)
			}
			if countEvents(t, base, sched, "subscription_schedule.updated") == 0 && tc.subEvent {
				t.Errorf("no subscription_schedule.updated")
			}
		})
	}
}

// A test clock advanced past a phase's end_date moves the schedule to
// the next phase and applies it to the subscription; past the last phase
// end_behavior applies: release leaves the subscription running on its
// own (status released, released_subscription, subscription_schedule.
// released), cancel cancels it (customer.subscription.deleted; the
// schedule is completed, subscription_schedule.completed). A schedule
// that has not started starts when the clock reaches its start_date.
func TestScheduleClockAdvance(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp { return do(t, "POST", base+path, "sk_test_x", v.Encode()) }
	_, p1 := catalog(t, base, 1000)
	_, p2 := catalog(t, base, 2500)
	_, p3 := catalog(t, base, 4000)
	const frozen = 1577836800 // 2020-01-01
	const day = 86400

	type step struct {
		to           int64 // days after frozen
		status       string
		price        string // the subscription's single item's price, "" = not checked
		subStatus    string
		schedEvent   string // an event the schedule must have had by now
		subScheduled bool   // subscription.schedule still set
	}
	cases := []struct {
		name  string
		sched url.Values
		steps []step
	}{
		{name: "release", sched: url.Values{"start_date": {"now"}, "end_behavior": {"release"},
			"phases[0][items][0][price]": {p1}, "phases[0][end_date]": {fmt.Sprint(frozen + 10*day)},
			"phases[1][items][0][price]": {p2}, "phases[1][end_date]": {fmt.Sprint(frozen + 20*day)}},
			steps: []step{
				{to: 5, status: "active", price: p1, subStatus: "*", subScheduled: true},
				{to: 10, status: "active", price: p2, subStatus: "*", schedEvent: "subscription_schedule.updated", subScheduled: true},
				{to: 25, status: "released", price: p2, subStatus: "*", schedEvent: "subscription_schedule.released"},
			}},
		{name: "cancel", sched: url.Values{"start_date": {"now"}, "end_behavior": {"cancel"},
			"phases[0][items][0][price]": {p1}, "phases[0][end_date]": {fmt.Sprint(frozen + 10*day)}},
			steps: []step{
				{to: 11, status: "completed", price: p1, subStatus: "canceled", schedEvent: "subscription_schedule.completed"},
			}},
		{name: "two boundaries at once", sched: url.Values{"start_date": {"now"},
			"phases[0][items][0][price]": {p1}, "phases[0][end_date]": {fmt.Sprint(frozen + 10*day)},
			"phases[1][items][0][price]": {p2}, "phases[1][end_date]": {fmt.Sprint(frozen + 20*day)},
			"phases[2][items][0][price]": {p3}, "phases[2][end_date]": {fmt.Sprint(frozen + 30*day)}},
			steps: []step{
				{to: 21, status: "active", price: p3, subStatus: "*", schedEvent: "subscription_schedule.updated", subScheduled: true},
				{to: 40, status: "released", price: p3, subStatus: "*", schedEvent: "subscription_schedule.released"},
			}},
		{name: "starts later", sched: url.Values{"start_date": {fmt.Sprint(frozen + 3*day)},
			"phases[0][items][0][price]": {p1}, "phases[0][end_date]": {fmt.Sprint(frozen + 10*day)},
			"phases[1][items][0][price]": {p2}, "phases[1][end_date]": {fmt.Sprint(frozen + 20*day)}},
			steps: []step{
				{to: 1, status: "not_started"},
				{to: 4, status: "active", price: p1, subStatus: "*", subScheduled: true},
				{to: 12, status: "active", price: p2, subStatus: "*", subScheduled: true},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := idOfResp(mustOK(t, post("/v1/test_helpers/test_clocks", url.Values{"frozen_time": {fmt.Sprint(frozen)}})))
			cus := idOfResp(mustOK(t, post("/v1/customers", url.Values{"test_clock": {clock}})))
			v := url.Values{"customer": {cus}}
			for k, x := range tc.sched {
				v[k] = x
			}
			sched := idOfResp(mustOK(t, post("/v1/subscription_schedules", v)))
			var sub string
			for _, st := range tc.steps {
				mustOK(t, post("/v1/test_helpers/test_clocks/"+clock+"/advance", url.Values{"frozen_time": {fmt.Sprint(frozen + st.to*day)}}))
				s := mustOK(t, do(t, "GET", base+"/v1/subscription_schedules/"+sched, "sk_test_x", "")).body
				if s["status"] != st.status {
					t.Fatalf("day %d: schedule %v, want %s: %v", st.to, s["status"], st.status, s)
				}
				switch st.status {
				case "active":
					sub, _ = s["subscription"].(string)
					cp := at(s, "current_phase.start_date")
					if sub == "" || num(cp) > frozen+st.to*day || num(at(s, "current_phase.end_date")) <= frozen+st.to*day {
						t.Fatalf("day %d: active schedule: %v", st.to, s)
					}
				case "released":
					if s["subscription"] != nil || s["released_subscription"] != sub || s["released_at"] == nil || s["current_phase"] != nil {
						t.Fatalf("day %d: released schedule: %v", st.to, s)
					}
				case "completed":
					if s["completed_at"] == nil || s["current_phase"] != nil {
						t.Fatalf("day %d: completed schedule: %v", st.to, s)
					}
					if sub == "" {
						sub, _ = s["subscription"].(string)
					}
				}
				if sub == "" {
					sub, _ = s["subscription"].(string)
				}
				if st.price != "" {
					so := mustOK(t, do(t, "GET", base+"/v1/subscriptions/"+sub, "sk_test_x", "")).body
					if got, _ := subscriptionItems(t, base, sub); got != st.price+"×1[]{}" {
						t.Errorf("day %d: items %s, want %s", st.to, got, st.price)
					}
					if st.subStatus != "*" && so["status"] != st.subStatus {
						t.Errorf("day %d: subscription status %v, want %s", st.to, so["status"], st.subStatus)
					}
					if st.subStatus == "*" && so["status"] == "canceled" {
						t.Errorf("day %d: subscription canceled", st.to)
					}
					if (so["schedule"] == sched) != st.subScheduled {
						t.Errorf("day %d: subscription.schedule %v", st.to, so["schedule"])
					}
				}
				if st.schedEvent != "" && !slices.Contains(eventTypes(t, base, sched), st.schedEvent) {
					t.Errorf("day %d: schedule events %v, want %s", st.to, eventTypes(t, base, sched), st.schedEvent)
				}
			}
			if tc.name == "cancel" && !slices.Contains(eventTypes(t, base, sub), "customer.subscription.deleted") {
				t.Errorf("subscription events %v, want customer.subscription.deleted", eventTypes(t, base, sub))
			}
		})
	}
}

// A schedule whose phases are laid out from a date in the past starts in
// the phase current now, whether it is created so or a not_started one is
// updated so: its subscription follows that phase's items at once.
func TestScheduleStartsInCurrentPhase(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp { return do(t, "POST", base+path, "sk_test_x", v.Encode()) }
	_, p1 := catalog(t, base, 1000)
	_, p2 := catalog(t, base, 2500)
	const frozen = 1577836800 // 2020-01-01
	const day = 86400
	past := url.Values{"phases[0][items][0][price]": {p1}, "phases[0][start_date]": {fmt.Sprint(frozen - 20*day)},
		"phases[0][end_date]":        {fmt.Sprint(frozen - 10*day)},
		"phases[1][items][0][price]": {p2}, "phases[1][end_date]": {fmt.Sprint(frozen + 10*day)}}
	for _, name := range []string{"created", "updated"} {
		t.Run(name, func(t *testing.T) {
			clock := idOfResp(mustOK(t, post("/v1/test_helpers/test_clocks", url.Values{"frozen_time": {fmt.Sprint(frozen)}})))
			cus := idOfResp(mustOK(t, post("/v1/customers", url.Values{"test_clock": {clock}})))
			v := url.Values{"customer": {cus}}
			if name == "created" {
				v["start_date"] = []string{fmt.Sprint(frozen - 20*day)}
				for k, x := range past {
					if k != "phases[0][start_date]" { // create takes the top-level start_date only
						v[k] = x
					}
				}
			} else {
				v["start_date"] = []string{fmt.Sprint(frozen + 5*day)}
				v["phases[0][items][0][price]"] = []string{p1}
			}
			sched := idOfResp(mustOK(t, post("/v1/subscription_schedules", v)))
			if name == "updated" {
				mustOK(t, post("/v1/subscription_schedules/"+sched, past))
			}
			s := mustOK(t, do(t, "GET", base+"/v1/subscription_schedules/"+sched, "sk_test_x", "")).body
			if s["status"] != "active" || num(at(s, "current_phase.start_date")) != frozen-10*day {
				t.Fatalf("schedule: %v", s)
			}
			items, _ := subscriptionItems(t, base, s["subscription"].(string))
			if items != p2+"×1[]{}" {
				t.Fatalf("subscription items %s, want phase 1's %s", items, p2)
			}
		})
	}
}

// A subscription schedule's default_settings[default_payment_method] and
// phases[i][default_payment_method] must be payment methods of its
// customer, as a subscription's default_payment_method: an unknown id,
// another customer's and a test payment method are refused on create and
// update, and nothing is made.
func TestSchedulePMChecked(t *testing.T) {
	base, cus, other, price, post := defaultPMSetup(t)
	own := attachCard(t, base, cus, "pm_card_visa")
	others := attachCard(t, base, other, "pm_card_visa")
	phase := url.Values{"customer": {cus}, "start_date": {"now"}, "phases[0][items][0][price]": {price}}
	with := func(q url.Values, k, v string) url.Values {
		out := url.Values{}
		for a, b := range q {
			out[a] = b
		}
		out.Set(k, v)
		return out
	}
	count := func() int {
		return len(getObj(t, base, "/v1/subscription_schedules?limit=100&customer="+cus)["data"].([]any))
	}
	before := count()
	sched := idOfResp(mustOK(t, post("/v1/subscription_schedules", phase)))
	for _, param := range []string{"default_settings[default_payment_method]", "phases[0][default_payment_method]"} {
		for _, tc := range []struct{ path string }{{"/v1/subscription_schedules"}, {"/v1/subscription_schedules/" + sched}} {
			q := phase
			if tc.path != "/v1/subscription_schedules" {
				q = url.Values{"phases[0][items][0][price]": {price}, "phases[0][start_date]": {"now"}}
			}
			r := post(tc.path, with(q, param, "pm_nope"))
			if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != param || errField(r, "message") != "No such PaymentMethod: 'pm_nope'" {
				t.Errorf("%s %s=pm_nope: %d %s", tc.path, param, r.status, r.raw)
			}
			r = post(tc.path, with(q, param, others))
			if r.status != 400 || errField(r, "param") != param ||
				errField(r, "message") != "The customer does not have a payment method with the ID "+others+". The payment method must be attached to the customer." {
				t.Errorf("%s %s=another customer's: %d %s", tc.path, param, r.status, r.raw)
			}
			refusedTestPM(t, tc.path+" "+param, param, post(tc.path, with(q, param, "pm_card_visa")))
			mustOK(t, post(tc.path, with(q, param, own)))
		}
	}
	// The first create, and one with the customer's own card per param.
	if n := count(); n != before+3 {
		t.Errorf("%d schedules, want %d: a refused create made one", n, before+3)
	}
}
