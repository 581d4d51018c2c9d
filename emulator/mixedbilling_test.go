package emulator_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

const (
	mixedItemsMessage = "Currency and interval fields must match across all plans on this subscription. Found mismatch in %s field."
	mixedPhaseMessage = "For a particular phase, all of its `plans` must have the same `interval`, `interval_count`, and `currency`."
)

// TestMixedBillingRefused: before flexible billing mode, Stripe
// refuses a subscription whose recurring prices differ in currency,
// interval or interval_count, wherever its items are set (create,
// update with new, changed or deleted items, the item endpoints, a
// schedule's phase), and the refusal changes nothing and sends no event.
// Prices that agree are taken, metered with licensed too, and so are
// phases that differ from each other. In the table, <M1> and the like are
// prices (see prices below), <sub>, <item0>, <item1> and <sched> the
// subscription, its items and the schedule set up before the request.
func TestMixedBillingRefused(t *testing.T) {
	prices := map[string]url.Values{
		"M1": {"unit_amount": {"1000"}, "recurring[interval]": {"month"}},
		"M2": {"unit_amount": {"2500"}, "recurring[interval]": {"month"}},
		"MM": {"unit_amount": {"7"}, "recurring[interval]": {"month"}, "recurring[usage_type]": {"metered"}},
		"Y":  {"unit_amount": {"12000"}, "recurring[interval]": {"year"}},
		"W":  {"unit_amount": {"300"}, "recurring[interval]": {"week"}},
		"Q":  {"unit_amount": {"4500"}, "recurring[interval]": {"month"}, "recurring[interval_count]": {"3"}},
		"ME": {"unit_amount": {"900"}, "recurring[interval]": {"month"}, "currency": {"eur"}},
	}
	for _, tc := range []struct {
		name string
		// subscribe: the prices of a subscription made first (none if
		// empty); schedule: it is made by a schedule of one phase.
		subscribe []string
		schedule  bool
		method    string
		path      string
		params    string
		// param and field: the refusal's param and the field its message
		// names ("" for a phase's message); param "" with field "" means
		// the request is taken.
		param, field string
	}{
		{name: "create, monthly and yearly", method: "POST", path: "/v1/subscriptions",
			params: "items[0][price]=<M1>&items[1][price]=<Y>", param: "items", field: "interval"},
		{name: "create, usd and eur", method: "POST", path: "/v1/subscriptions",
			params: "items[0][price]=<M1>&items[1][price]=<ME>", param: "items", field: "currency"},
		{name: "create, monthly and quarterly", method: "POST", path: "/v1/subscriptions",
			params: "items[0][price]=<M1>&items[1][price]=<Q>", param: "items", field: "interval_count"},
		{name: "create, licensed and metered monthly", method: "POST", path: "/v1/subscriptions",
			params: "items[0][price]=<M1>&items[1][price]=<MM>"},
		{name: "update, item added", subscribe: []string{"M1"}, method: "POST", path: "/v1/subscriptions/<sub>",
			params: "items[0][price]=<W>", param: "items", field: "interval"},
		{name: "update, price changed beside another item", subscribe: []string{"M1", "M2"}, method: "POST", path: "/v1/subscriptions/<sub>",
			params: "items[0][id]=<item0>&items[0][price]=<Y>&proration_behavior=none", param: "items", field: "interval"},
		{name: "update, one item deleted and one added", subscribe: []string{"M1", "M2"}, method: "POST", path: "/v1/subscriptions/<sub>",
			params: "items[0][id]=<item0>&items[0][deleted]=true&items[1][price]=<Y>", param: "items", field: "interval"},
		{name: "update, every item moved to yearly", subscribe: []string{"M1", "M2"}, method: "POST", path: "/v1/subscriptions/<sub>",
			params: "items[0][id]=<item0>&items[0][price]=<Y>&items[1][id]=<item1>&items[1][deleted]=true"},
		{name: "update, metered item added", subscribe: []string{"M1"}, method: "POST", path: "/v1/subscriptions/<sub>",
			params: "items[0][price]=<MM>"},
		{name: "subscription item created", subscribe: []string{"M1"}, method: "POST", path: "/v1/subscription_items",
			params: "subscription=<sub>&price=<Y>", param: "price", field: "interval"},
		{name: "subscription item's price changed", subscribe: []string{"M1", "M2"}, method: "POST", path: "/v1/subscription_items/<item1>",
			params: "price=<ME>", param: "price", field: "currency"},
		{name: "only subscription item's price changed", subscribe: []string{"M1"}, method: "POST", path: "/v1/subscription_items/<item0>",
			params: "price=<Q>&proration_behavior=none"},
		{name: "schedule, a phase of monthly and yearly", method: "POST", path: "/v1/subscription_schedules",
			params: "start_date=now&phases[0][items][0][price]=<M1>&phases[0][items][1][price]=<Y>", param: "phases[0][items]"},
		{name: "schedule, its second phase of monthly and weekly", method: "POST", path: "/v1/subscription_schedules",
			params: "start_date=now&phases[0][items][0][price]=<M1>&phases[1][items][0][price]=<M1>&phases[1][items][1][price]=<W>", param: "phases[1][items]"},
		{name: "schedule, a monthly phase then a yearly one", method: "POST", path: "/v1/subscription_schedules",
			params: "start_date=now&phases[0][items][0][price]=<M1>&phases[1][items][0][price]=<Y>"},
		{name: "schedule updated, its current phase mixed", subscribe: []string{"M1"}, schedule: true, method: "POST", path: "/v1/subscription_schedules/<sched>",
			params: "phases[0][items][0][price]=<M1>&phases[0][items][1][price]=<ME>", param: "phases[0][items]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, base := emulatortest.Start(t, emulator.Options{})
			post := func(path, body string) apiResp {
				t.Helper()
				return do(t, "POST", base+path, "sk_test_x", body)
			}
			cus := idOfResp(mustOK(t, post("/v1/customers", "name=a")))
			prod := idOfResp(mustOK(t, post("/v1/products", "name=p")))
			var pairs []string
			for key, p := range prices {
				v := url.Values{"product": {prod}, "currency": {"usd"}}
				for k, x := range p {
					v[k] = x
				}
				pairs = append(pairs, "<"+key+">", idOfResp(mustOK(t, post("/v1/prices", v.Encode()))))
			}
			fill := func(s string) string { return strings.NewReplacer(pairs...).Replace(s) }
			if len(tc.subscribe) > 0 {
				var sub, sched string
				if tc.schedule {
					body := "customer=" + cus + "&start_date=now"
					for i, p := range tc.subscribe {
						body += fmt.Sprintf("&phases[0][items][%d][price]=<%s>", i, p)
					}
					r := mustOK(t, post("/v1/subscription_schedules", fill(body)))
					sched, sub = idOfResp(r), r.body["subscription"].(string)
				} else {
					body := "customer=" + cus + "&default_payment_method=" + attachCard(t, base, cus, "pm_card_visa")
					for i, p := range tc.subscribe {
						body += fmt.Sprintf("&items[%d][price]=<%s>", i, p)
					}
					sub = idOfResp(mustOK(t, post("/v1/subscriptions", fill(body))))
				}
				pairs = append(pairs, "<sub>", sub, "<sched>", sched)
				items := mustOK(t, do(t, "GET", base+"/v1/subscription_items?subscription="+sub, "sk_test_x", "")).body["data"].([]any)
				for i, it := range items {
					pairs = append(pairs, fmt.Sprintf("<item%d>", i), it.(map[string]any)["id"].(string))
				}
			}
			params := fill(tc.params)
			if tc.method == "POST" && (tc.path == "/v1/subscriptions" || tc.path == "/v1/subscription_schedules") {
				params = "customer=" + cus + "&" + params
			}
			before := billingState(t, base)
			r := do(t, tc.method, base+fill(tc.path), "sk_test_x", params)
			if tc.param == "" {
				if r.status != 200 {
					t.Fatalf("%s %s %s: %d %s, want it taken", tc.method, tc.path, params, r.status, r.raw)
				}
				return
			}
			want := mixedPhaseMessage
			if tc.field != "" {
				want = fmt.Sprintf(mixedItemsMessage, tc.field)
			}
			if r.status != 400 || errField(r, "type") != "invalid_request_error" || errField(r, "param") != tc.param || errField(r, "message") != want {
				t.Fatalf("%s %s %s: %d %s\nwant 400 invalid_request_error, param %q: %s", tc.method, tc.path, params, r.status, r.raw, tc.param, want)
			}
			if after := billingState(t, base); after != before {
				t.Fatalf("the refusal changed what the API shows:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// billingState is what the API shows of subscriptions (ended ones
// too), their items, schedules, invoices, invoice items, customers and
// events.
func billingState(t *testing.T, base string) string {
	t.Helper()
	var b strings.Builder
	for _, path := range []string{"/v1/subscriptions?status=all&limit=100&expand[]=data.items", "/v1/subscription_schedules?limit=100",
		"/v1/invoices?limit=100", "/v1/invoiceitems?limit=100", "/v1/customers?limit=100", "/v1/events?limit=100"} {
		r := mustOK(t, do(t, "GET", base+path, "sk_test_x", ""))
		b.WriteString(r.raw)
		if strings.HasPrefix(path, "/v1/subscriptions?") {
			for _, s := range r.body["data"].([]any) {
				b.WriteString(mustOK(t, do(t, "GET", base+"/v1/subscription_items?limit=100&subscription="+s.(map[string]any)["id"].(string), "sk_test_x", "")).raw)
			}
		}
	}
	return b.String()
}

// TestSeedOneBillingPeriod: the seed made subscriptions of prices of
// different intervals (month, year and week items together), a state
// Stripe refuses to make, so everything tested on seeded data met
// subscriptions that can't exist. Every seeded subscription's items now
// share one currency, interval and interval_count; all three intervals
// still have subscriptions, some of several items, and the seed is
// deterministic.
func TestSeedOneBillingPeriod(t *testing.T) {
	list := func(base string) []any {
		t.Helper()
		var out []any
		after := ""
		for {
			r := mustOK(t, do(t, "GET", base+"/v1/subscriptions?status=all&limit=100"+after, "sk_test_x", ""))
			data := r.body["data"].([]any)
			out = append(out, data...)
			if r.body["has_more"] != true {
				return out
			}
			after = "&starting_after=" + data[len(data)-1].(map[string]any)["id"].(string)
		}
	}
	// The prices a subscription takes don't depend on the distribution.
	for _, dist := range []string{emulator.DistUniform, emulator.DistSameSecond} {
		t.Run(dist, func(t *testing.T) {
			_, base := emulatortest.Start(t, emulator.Options{Seed: 60, Distribution: dist})
			subs := list(base)
			intervals := map[string]int{}
			multi := 0
			for _, x := range subs {
				s := x.(map[string]any)
				items := at(s, "items.data").([]any)
				if at(s, "items.has_more") == true {
					t.Fatalf("subscription %v: more than a page of items", s["id"])
				}
				if len(items) > 1 {
					multi++
				}
				var periods []string
				for _, it := range items {
					p := it.(map[string]any)["price"].(map[string]any)
					periods = append(periods, fmt.Sprintf("%v %v/%v", p["currency"], at(p, "recurring.interval"), at(p, "recurring.interval_count")))
				}
				for _, p := range periods[1:] {
					if p != periods[0] {
						t.Fatalf("subscription %v mixes billing periods: %v", s["id"], periods)
					}
				}
				intervals[at(items[0], "price.recurring.interval").(string)]++
			}
			if intervals["month"] == 0 || intervals["year"] == 0 || intervals["week"] == 0 || multi == 0 {
				t.Fatalf("%d subscriptions by interval %v, %d of several items: want every interval and some of several items", len(subs), intervals, multi)
			}
			_, again := emulatortest.Start(t, emulator.Options{Seed: 60, Distribution: dist})
			if a, b := fmt.Sprint(subs), fmt.Sprint(list(again)); a != b {
				t.Fatalf("the same seed made other subscriptions")
			}
		})
	}
}
