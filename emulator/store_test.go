package emulator

import (
	"slices"
	"testing"
)

// An advance's step looks up, for each subscription it bills, the
// invoices due a retry. Before, it decoded every open invoice of the
// subscription at each step (and scanned all of its customer's invoices
// for them), so a customer's send_invoice subscriptions, each with its
// unpaid invoices, made every step of every advance dearer: the work of
// an advance grew with the square of the subscriptions. The lookup's
// allocations (a decoded invoice is a few hundred) must not grow with
// subscriptions whose invoices are not due a retry.
func TestRetryLookupIgnoresInvoicesNotDue(t *testing.T) {
	// lookups is what one step allocates beyond decoding the
	// subscriptions it considers, with extra send_invoice subscriptions
	// beside one whose renewal is in dunning.
	lookups := func(extra int) float64 {
		r := newFrozenClock(t)
		dunnedSub := r.mustID("POST", "/v1/subscriptions", "customer="+r.cus[0]+"&items[0][price]="+r.prices[0]+"&default_payment_method="+r.card(r.cus[0], "pm_card_visa"))
		r.mustID("POST", "/v1/subscriptions/"+dunnedSub, "default_payment_method="+r.card(r.cus[0], "pm_card_chargeCustomerFail"))
		for range extra {
			r.mustID("POST", "/v1/subscriptions", "customer="+r.cus[0]+"&items[0][price]="+r.prices[0]+"&collection_method=send_invoice&days_until_due=3")
		}
		renewal := periodEnd(r.now, r.get("prices", r.prices[0]))
		r.advanceTo(renewal + 86400)

		// What the step faces, read from the stored objects: the failed
		// renewal is the one invoice due a retry; each other subscription
		// has its first invoice and its renewal open.
		var dunnedInvs, open []string
		for _, id := range r.ids("invoices", nil) {
			inv := r.get("invoices", id)
			if getStr(inv, "status") != "open" {
				continue
			}
			open = append(open, id)
			if dunned(inv) && getStr(inv, "subscription") == dunnedSub && getInt(inv, "next_payment_attempt") > renewal {
				dunnedInvs = append(dunnedInvs, id)
			}
		}
		if len(dunnedInvs) != 1 || len(open) != 1+2*extra {
			t.Fatalf("%d extra subscriptions: open invoices %v, in dunning %v; want %d open, one in dunning", extra, open, dunnedInvs, 1+2*extra)
		}
		e, clock := r.e, r.clock
		var st billingStep
		step := testing.AllocsPerRun(5, func() {
			st, _ = e.nextBillingStep(clock, nil, r.now, r.now+400*86400, map[billingStep]bool{})
		})
		if st.kind != stepRetry || st.id != dunnedInvs[0] {
			t.Fatalf("%d extra subscriptions: next step %+v, want the retry of %s", extra, st, dunnedInvs[0])
		}
		subs := testing.AllocsPerRun(5, func() {
			for range e.billedOnClock(clock) {
			}
			for range e.subsOnClock(clock, "incomplete") {
			}
		})
		return step - subs
	}
	few, many := lookups(1), lookups(8)
	if many > few {
		t.Errorf("a step's retry lookups allocate %.0f times with 8 send_invoice subscriptions beside the dunned one, %.0f with 1: they decode invoices not due a retry", many, few)
	}
}

// A table's index of a key field follows its records' values through
// inserts, changes of the value (to and from "") and removals, and keeps
// each value's records in creation order, also after seeding appended
// them out of order.
func TestKeyIndex(t *testing.T) {
	tbl := newTable("things", []string{"customer", "_mark"}, "_mark")
	put := func(id string, created int64, seq uint64, cus, mark string) {
		tbl.put(&record{id: id, created: created, seq: seq, keys: []string{cus, mark}})
	}
	ids := func(value string) []string {
		var out []string
		for _, r := range tbl.withKey("_mark", value) {
			out = append(out, r.id)
		}
		return out
	}
	tbl.sorted = false // as Seed does
	put("c", 30, 3, "cus_1", "x")
	put("a", 10, 1, "cus_1", "x")
	put("b", 20, 2, "cus_2", "")
	tbl.finishBulk()
	put("d", 15, 4, "cus_2", "x")
	for _, tc := range []struct {
		step       func()
		x, y, cus2 []string
	}{
		{func() {}, []string{"a", "d", "c"}, nil, []string{"d", "b"}},
		{func() { put("b", 20, 2, "cus_2", "x") }, []string{"a", "d", "b", "c"}, nil, []string{"d", "b"}},
		{func() { put("d", 15, 4, "cus_2", "y") }, []string{"a", "b", "c"}, []string{"d"}, []string{"d", "b"}},
		{func() { put("a", 10, 1, "cus_2", "") }, []string{"b", "c"}, []string{"d"}, []string{"a", "d", "b"}},
		{func() { tbl.remove("b") }, []string{"c"}, []string{"d"}, []string{"a", "d"}},
		{func() { put("c", 30, 3, "cus_2", "x") }, []string{"c"}, []string{"d"}, []string{"a", "d", "c"}},
	} {
		tc.step()
		var cus2 []string
		for _, r := range tbl.byCustomer["cus_2"] {
			cus2 = append(cus2, r.id)
		}
		if got := ids("x"); !slices.Equal(got, tc.x) || !slices.Equal(ids("y"), tc.y) || !slices.Equal(cus2, tc.cus2) || len(ids("")) != 0 {
			t.Fatalf("x %v, y %v, cus_2 %v, \"\" %v; want %v, %v, %v, none", got, ids("y"), cus2, ids(""), tc.x, tc.y, tc.cus2)
		}
	}
	if _, ok := tbl.byCustomer["cus_1"]; ok {
		t.Errorf("cus_1 still indexed after its records moved: %v", tbl.byCustomer["cus_1"])
	}
	defer func() {
		if recover() == nil {
			t.Error("withKey of a field with no index answered instead of failing")
		}
	}()
	tbl.withKey("customer_typo", "cus_1")
}
