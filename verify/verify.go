package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/schema"
)

// Diff is how a database differs from the emulator's current objects.
type Diff struct {
	Missing, Extra, Stale int
	// Details names the first differences ("customers cus_1: stale").
	Details []string
	// ByTable counts the differing rows per table.
	ByTable map[string]int
	// Rows is the number of rows compared (all tables together).
	Rows int
}

// Total is the number of differing rows.
func (d Diff) Total() int { return d.Missing + d.Extra + d.Stale }

// Compare checks every non-virtual table of schema stripe against
// e.Objects: a row per object, none besides, and _raw equal as JSON.
// (upcoming_invoices is virtual: Stripe computes it, the emulator doesn't
// store it.)
func Compare(ctx context.Context, pool *pgxpool.Pool, e *emulator.Emulator) (Diff, error) {
	return CompareTables(ctx, pool, e, nil)
}

// CompareTables is Compare restricted to the named tables (all when empty).
func CompareTables(ctx context.Context, pool *pgxpool.Pool, e *emulator.Emulator, tables []string) (Diff, error) {
	only := map[string]bool{}
	for _, n := range tables {
		only[n] = true
	}
	d := Diff{ByTable: map[string]int{}}
	note := func(format string, args ...any) {
		if len(d.Details) < 20 {
			d.Details = append(d.Details, fmt.Sprintf(format, args...))
		}
	}
	for _, t := range schema.Tables() {
		if t.Virtual || (len(only) > 0 && !only[t.Name]) {
			continue
		}
		want, err := Expected(e, t)
		if err != nil {
			return d, err
		}
		key := schema.Ident(t.Key[len(t.Key)-1])
		rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT %s, _raw::text FROM %s`, key, t.QualifiedName()))
		if err != nil {
			return d, fmt.Errorf("compare %s: %w", t.Name, err)
		}
		got := map[string]string{}
		for rows.Next() {
			var id, raw string
			if err := rows.Scan(&id, &raw); err != nil {
				rows.Close()
				return d, fmt.Errorf("compare %s: %w", t.Name, err)
			}
			got[id] = raw
			d.Rows++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return d, fmt.Errorf("compare %s: %w", t.Name, err)
		}
		ids := make([]string, 0, len(want))
		for id := range want {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			g, ok := got[id]
			switch {
			case !ok:
				d.Missing++
				d.ByTable[t.Name]++
				note("%s %s: missing", t.Name, id)
			case !SameJSON([]byte(g), want[id]):
				d.Stale++
				d.ByTable[t.Name]++
				note("%s %s: stale:\n  got  %s\n  want %s", t.Name, id, canonical([]byte(g)), canonical(want[id]))
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				d.Extra++
				d.ByTable[t.Name]++
				note("%s %s: extra", t.Name, id)
			}
		}
	}
	return d, nil
}

// Expected returns, by key, the objects table t must hold to equal e: its
// objects, as sync fetches them (with included lists whole), without the
// payment methods on no list (listable).
func Expected(e *emulator.Emulator, t *schema.Table) (map[string]json.RawMessage, error) {
	want := e.Objects(t.Name)
	if t.Name == "payment_methods" {
		want = listable(want, e.Objects("customers"), e.UnlistedPaymentMethods())
	}
	if len(t.Included) > 0 {
		return included(e, t, want)
	}
	return want, nil
}

// included returns the objects of t with their included lists
// (schema.IncludedList) whole, as sync fetches and stores them: Stripe puts
// them in an object only on request, so the emulator's objects lack them.
func included(e *emulator.Emulator, t *schema.Table, objs map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(objs))
	for id, raw := range objs {
		for _, l := range t.Included {
			items, ok := e.Included(t.Name, id, l.Field)
			if !ok {
				return nil, fmt.Errorf("compare %s: the emulator has no included list %s", t.Name, l.Field)
			}
			var err error
			if raw, err = schema.WholeList(raw, l.Field, items, schema.Path(l.ListPath, id, "")); err != nil {
				return nil, fmt.Errorf("compare %s %s: %w", t.Name, id, err)
			}
		}
		out[id] = raw
	}
	return out, nil
}

// listable leaves out the payment methods whose customer was deleted:
// Stripe keeps them, still naming the customer, but lists payment methods
// per customer only, so they are on no list, and sync removes them with
// their customer (store.Owned). Detached and never attached ones (customer
// null) stay: the events of a detach, or a write-through, show them;
// except those Stripe made of a test card for a payment or setup and
// never attached (unlisted), which nothing shows.
func listable(pms, customers map[string]json.RawMessage, unlisted map[string]bool) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(pms))
	for id, raw := range pms {
		if unlisted[id] {
			continue
		}
		var pm struct {
			Customer *string `json:"customer"`
		}
		if json.Unmarshal(raw, &pm) == nil && pm.Customer != nil && *pm.Customer != "" {
			if _, ok := customers[*pm.Customer]; !ok {
				continue
			}
		}
		out[id] = raw
	}
	return out
}

func canonical(raw []byte) []byte {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	b, _ := json.Marshal(v)
	return b
}

// SameJSON reports whether a and b are equal as JSON values.
func SameJSON(a, b []byte) bool { return bytes.Equal(canonical(a), canonical(b)) }
