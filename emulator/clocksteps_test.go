package emulator

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postID sends one form POST to e and returns the object's id; anything
// but a 200 fails.
func postID(tb testing.TB, e *Emulator, path, body string) string {
	tb.Helper()
	req := httptest.NewRequest("POST", "http://emulator"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer sk_test_x")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || rec.Code != 200 {
		tb.Fatalf("POST %s %s: %d %.400s", path, body, rec.Code, rec.Body)
	}
	id, _ := v["id"].(string)
	return id
}

// sendInvoiceClock is an emulator with a clock frozen at 2024-01-15 and subs
// monthly send_invoice subscriptions spread over 10 of its customers.
func sendInvoiceClock(tb testing.TB, subs int) (e *Emulator, clock string, now int64) {
	tb.Helper()
	e, err := New(Options{RateLimit: -1})
	if err != nil {
		tb.Fatal(err)
	}
	now = 1705276800
	clock = postID(tb, e, "/v1/test_helpers/test_clocks", fmt.Sprintf("frozen_time=%d", now))
	var cus []string
	for range 10 {
		cus = append(cus, postID(tb, e, "/v1/customers", "test_clock="+clock))
	}
	prod := postID(tb, e, "/v1/products", "name=p")
	price := postID(tb, e, "/v1/prices", "currency=usd&unit_amount=1000&recurring[interval]=month&product="+prod)
	for i := range subs {
		postID(tb, e, "/v1/subscriptions", "customer="+cus[i%len(cus)]+"&items[0][price]="+price+"&collection_method=send_invoice&days_until_due=30")
	}
	return e, clock, now
}

// BenchmarkClockAdvance advances a clock of send_invoice
// subscriptions month by month (an advance may not pass two periods):
// each month renews every subscription, and each renewal's invoice falls
// overdue 30 days later.
func BenchmarkClockAdvance(b *testing.B) {
	for _, tc := range []struct{ subs, months int }{{40, 12}, {150, 2}} {
		b.Run(fmt.Sprintf("%dsubs_%dmonths", tc.subs, tc.months), func(b *testing.B) {
			var cpu time.Duration
			for range b.N {
				b.StopTimer()
				e, clock, now := sendInvoiceClock(b, tc.subs)
				b.StartTimer()
				cpu0 := processCPU()
				for m := 1; m <= tc.months; m++ {
					postID(b, e, "/v1/test_helpers/test_clocks/"+clock+"/advance", fmt.Sprintf("frozen_time=%d", now+int64(m)*31*86400))
				}
				cpu += processCPU() - cpu0
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

// processCPU is the process's CPU time so far (user and system): the
// machine is shared, so wall time says little.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A step looks at every subscription on its clock to find the next thing
// due. It used to decode each (a few hundred allocations apiece), which
// made most of an advance's work; now it reads their record keys, so its
// allocations do not grow with subscriptions that are not due.
func TestStepDecodesNoSubscription(t *testing.T) {
	allocs := func(subs int) float64 {
		e, clock, now := sendInvoiceClock(t, subs)
		var st billingStep
		n := testing.AllocsPerRun(5, func() {
			st, _ = e.nextBillingStep(clock, nil, now, now+400*86400, map[billingStep]bool{})
		})
		if st.at <= now || st.kind != stepOverdue && st.kind != stepRenew {
			t.Fatalf("%d subscriptions: next step %+v, want an invoice falling overdue or a renewal after %d", subs, st, now)
		}
		return n
	}
	few, many := allocs(1), allocs(40)
	if many > few {
		t.Errorf("a step allocates %.0f times with 40 subscriptions on its clock, %.0f with 1: it decodes subscriptions", many, few)
	}
}

// decodedNextStep is nextBillingStep as it was before subscriptions kept
// their step times as keys: every subscription on the clock decoded.
func decodedNextStep(e *Emulator, clock string, from, to int64, done map[billingStep]bool) (billingStep, bool) {
	var best billingStep
	found := false
	consider := func(st billingStep) {
		if st.at > to || done[st] {
			return
		}
		if !found || st.at < best.at || st.at == best.at && st.kind < best.kind {
			best, found = st, true
		}
	}
	for _, r := range e.tables["subscription_schedules"].ordered {
		if obj, _ := decodeObject(r.raw); getStr(obj, "test_clock") == clock {
			if at, ok := scheduleBoundary(obj); ok {
				consider(billingStep{at, stepPhase, r.id})
			}
		}
	}
	invs := e.tables["invoices"]
	for _, r := range e.tables["subscriptions"].ordered {
		sub, err := decodeObject(r.raw)
		if err != nil || getStr(sub, "test_clock") != clock {
			continue
		}
		id, status := r.id, getStr(sub, "status")
		switch status {
		case "active", "trialing", "past_due", "unpaid":
		case "incomplete":
			consider(billingStep{getInt(sub, "created") + incompleteExpiry, stepExpire, id})
			continue
		default:
			continue
		}
		if te, ok := toInt(sub["trial_end"]); ok && status == "trialing" && te-trialWarning > from {
			consider(billingStep{te - trialWarning, stepTrialWillEnd, id})
		}
		if ca, ok := toInt(sub["cancel_at"]); ok && ca > 0 {
			consider(billingStep{ca, stepCancel, id})
		}
		if status == "active" && getStr(sub, "collection_method") == "send_invoice" {
			if ir := invs.byID[getStr(sub, "latest_invoice")]; ir != nil {
				if due, ok := invs.timeKey(ir, "_due_at"); ok {
					consider(billingStep{max(due, from), stepOverdue, id})
				}
			}
		}
		for inv, at := range e.dunnedInvoices(id) {
			consider(billingStep{at, stepRetry, inv})
		}
		consider(billingStep{getInt(sub, "current_period_end"), stepRenew, id})
	}
	for id, at := range e.pendingExpiries(clock) {
		consider(billingStep{at, stepPendingExpire, id})
	}
	return best, found
}

// The steps an advance finds from the subscriptions' keys are those it
// found decoding them, in the same order, through trials, cancel_at and
// cancel_at_period_end, send_invoice invoices falling overdue, failed
// renewals in dunning, incomplete subscriptions, pending updates,
// schedules and cancels, at each day of four months.
func TestStepsFromKeysMatchObjects(t *testing.T) {
	r := newFrozenClock(t)
	c0, p := r.cus[0], r.prices
	sub := func(body string) string {
		return r.mustID("POST", "/v1/subscriptions", body)
	}
	sub("customer=" + c0 + "&items[0][price]=" + p[0] + "&trial_period_days=5")
	sub("customer=" + c0 + "&items[0][price]=" + p[3] + "&trial_period_days=20&cancel_at_period_end=true")
	sub(fmt.Sprintf("customer=%s&items[0][price]=%s&cancel_at=%d", c0, p[1], r.now+40*86400))
	sub("customer=" + c0 + "&items[0][price]=" + p[0] + "&collection_method=send_invoice&days_until_due=3")
	sub("customer=" + c0 + "&items[0][price]=" + p[5] + "&collection_method=send_invoice&days_until_due=10")
	visa, failing := r.card(c0, "pm_card_visa"), r.card(c0, "pm_card_chargeCustomerFail")
	dunned := sub("customer=" + c0 + "&items[0][price]=" + p[0] + "&default_payment_method=" + visa)
	r.mustID("POST", "/v1/subscriptions/"+dunned, "default_payment_method="+failing)
	sub("customer=" + c0 + "&items[0][price]=" + p[1] + "&payment_behavior=default_incomplete&default_payment_method=" + failing)
	pending := sub("customer=" + c0 + "&items[0][price]=" + p[0] + "&default_payment_method=" + visa)
	r.mustID("POST", "/v1/subscriptions/"+pending, "default_payment_method="+failing)
	pendingItem := r.items(pending)[0]
	r.mustID("POST", "/v1/subscriptions/"+pending, "payment_behavior=pending_if_incomplete&proration_behavior=always_invoice&items[0][id]="+pendingItem+"&items[0][price]="+p[1])
	canceled := sub("customer=" + c0 + "&items[0][price]=" + p[3])
	r.mustID("DELETE", "/v1/subscriptions/"+canceled, "")
	r.mustID("POST", "/v1/subscription_schedules", fmt.Sprintf("customer=%s&start_date=%d&phases[0][items][0][price]=%s&phases[0][iterations]=1&phases[1][items][0][price]=%s&phases[1][iterations]=2",
		c0, r.now+2*86400, p[0], p[1]))

	var schedules []string
	for _, rec := range r.e.tables["subscription_schedules"].ordered {
		schedules = append(schedules, rec.id)
	}
	kinds := map[int]bool{}
	for day := 1; day <= 120; day++ {
		from, to := r.now, r.now+86400
		done := map[billingStep]bool{}
		for n := 0; ; n++ {
			got, ok := r.e.nextBillingStep(r.clock, schedules, from, to+400*86400, done)
			want, wok := decodedNextStep(r.e, r.clock, from, to+400*86400, done)
			if got != want || ok != wok {
				t.Fatalf("day %d, step %d: next step %+v (%v), decoding the subscriptions %+v (%v)", day, n, got, ok, want, wok)
			}
			if !ok {
				break
			}
			done[got] = true
			if got.at <= to {
				kinds[got.kind] = true
			}
		}
		r.advanceTo(to)
	}
	for k, name := range []string{"pending expiry", "phase", "trial_will_end", "cancel", "overdue", "expire", "retry", "renew"} {
		if !kinds[k] {
			t.Errorf("no %s step was taken: the scenario does not cover it", name)
		}
	}
}
