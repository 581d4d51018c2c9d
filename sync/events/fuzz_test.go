package events

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/pgstripe/pgstripe/store"
)

// FuzzPlanBatch plans random event sequences for one object, in the order
// given and reversed, and checks the plan against what the events say
// independently of their order: the newest state is upserted (one of the
// newest second's states, re-fetched after that second when they differ),
// a deletion is kept at its latest time and keeps the object out unless a
// chosen id was created again after it, and the plan does not depend on the
// order the events list returned them in.
//
// Each event is three bytes: its kind (update, create, delete, update
// rendered in another API version), its second (0–3 after a base) and its
// state (0–2: the name, and for chosen ids its created).
func FuzzPlanBatch(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 1}, false)
	f.Add([]byte{0, 1, 0, 0, 1, 1, 0, 0, 2}, false)
	f.Add([]byte{0, 2, 0, 2, 1, 0, 0, 3, 1}, true)
	f.Add([]byte{3, 2, 0, 0, 1, 1, 1, 1, 1}, false)
	f.Add([]byte{0, 0, 2, 2, 0, 0, 1, 1, 2}, true)
	f.Fuzz(func(t *testing.T, data []byte, chosen bool) {
		table, object, prefix := "customers", "customer", "cus_"
		if chosen {
			table, object, prefix = "products", "product", "prod_"
		}
		id := prefix + "1"
		const base = 1_700_000_000
		var evs []Event
		for i := 0; i+2 < len(data) && len(evs) < 30; i += 3 {
			kind, sec, state := data[i]%4, int64(data[i+1]%4), data[i+2]%3
			created := int64(base - 100)
			if chosen {
				created = base - 1 + int64(state) // may be after a deletion
			}
			obj := fmt.Sprintf(`{"id":%q,"object":%q,"name":"s%d","created":%d}`, id, object, state, created)
			typ := object + ".updated"
			switch kind {
			case 1:
				typ = object + ".created"
			case 2:
				typ = object + ".deleted"
				obj = fmt.Sprintf(`{"id":%q,"object":%q,"deleted":true}`, id, object)
			}
			e := ev(fmt.Sprintf("evt_%03d", len(evs)), typ, base+sec, obj)
			if kind == 3 {
				e.APIVersion = "2020-08-27"
			} else {
				e.APIVersion = stripe.APIVersion
			}
			evs = append(evs, e)
		}
		if len(evs) == 0 {
			return
		}

		// The expectation, from the events as a set.
		k := refetchKey{table, id}
		var newest int64 = -1
		states := map[string]bool{}
		var delAt int64 = -1
		var versionAt int64 = -1
		for _, e := range evs {
			switch {
			case e.Type == object+".deleted":
				delAt = max(delAt, e.Created)
			case e.APIVersion != stripe.APIVersion:
				versionAt = max(versionAt, e.Created)
			case e.Created > newest:
				newest, states = e.Created, map[string]bool{string(e.Data.Object): true}
			case e.Created == newest:
				states[string(e.Data.Object)] = true
			}
		}
		upserted := newest >= 0 && (delAt < 0 || createdAfter(table, pickAny(states), time.Unix(delAt, 0)))
		if newest >= 0 && delAt >= 0 && len(states) > 1 {
			// Whether the kept state was created after the deletion
			// depends on which of the conflicting states is kept: both
			// outcomes are checked below against the state kept.
			upserted = false
			for s := range states {
				upserted = upserted || createdAfter(table, []byte(s), time.Unix(delAt, 0))
			}
		}

		var first plan
		for n, order := range [][]Event{evs, reversed(evs)} {
			p := planBatch(order)
			got := p.Upserts[table]
			switch {
			case len(got) > 1:
				t.Fatalf("order %d: %d states of one object upserted", n, len(got))
			case len(got) == 1:
				if !states[string(got[0].Raw)] {
					t.Fatalf("order %d: upserted %s (as of %v), not a state of the newest second %d", n, got[0].Raw, got[0].AsOf.Unix(), newest)
				}
				if got[0].AsOf.Unix() != newest {
					t.Fatalf("order %d: AsOf %d, want %d", n, got[0].AsOf.Unix(), newest)
				}
				if delAt >= 0 && !createdAfter(table, got[0].Raw, time.Unix(delAt, 0)) {
					t.Fatalf("order %d: %s upserted although deleted at %d", n, got[0].Raw, delAt)
				}
			case upserted && (len(states) == 1 || delAt < 0):
				t.Fatalf("order %d: nothing upserted; newest %d states %v deleted %d", n, newest, states, delAt)
			}
			if delAt >= 0 {
				if len(p.Deletes) != 1 || p.Deletes[0].At.Unix() != delAt {
					t.Fatalf("order %d: deletes %+v, want one at %d", n, p.Deletes, delAt)
				}
			} else if len(p.Deletes) != 0 {
				t.Fatalf("order %d: deletes %+v without a delete event", n, p.Deletes)
			}
			var rf *refetch
			for i := range p.Refetch {
				if p.Refetch[i].refetchKey == k {
					rf = &p.Refetch[i]
				}
			}
			recreated := len(got) == 1 && delAt >= 0
			gone := delAt >= 0 && !recreated
			switch {
			case gone && rf != nil:
				t.Fatalf("order %d: deleted object re-fetched: %+v", n, *rf)
			case !gone && len(got) == 1 && len(states) > 1 && (rf == nil || rf.NotBefore.Unix() < newest+1):
				t.Fatalf("order %d: states %v in second %d, re-fetch %+v: want one not before %d", n, states, newest, rf, newest+1)
			case !gone && versionAt >= 0 && (rf == nil || rf.NotBefore.Unix() < versionAt):
				t.Fatalf("order %d: event in another API version at %d, re-fetch %+v", n, versionAt, rf)
			}
			if n == 0 {
				first = p
				continue
			}
			if len(states) == 1 && !slices.EqualFunc(first.Upserts[table], got, func(a, b store.Object) bool {
				return string(a.Raw) == string(b.Raw) && a.AsOf.Equal(b.AsOf)
			}) {
				t.Fatalf("order matters: %+v vs %+v", first.Upserts[table], got)
			}
			if !slices.Equal(first.Deletes, p.Deletes) {
				t.Fatalf("order matters for deletes: %+v vs %+v", first.Deletes, p.Deletes)
			}
			if first.maxEvent.ID != p.maxEvent.ID {
				t.Fatalf("order matters for the newest event: %s vs %s", first.maxEvent.ID, p.maxEvent.ID)
			}
		}
	})
}

func reversed(evs []Event) []Event {
	out := slices.Clone(evs)
	slices.Reverse(out)
	return out
}

func pickAny(states map[string]bool) []byte {
	for s := range states {
		return []byte(s)
	}
	return nil
}
