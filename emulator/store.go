package emulator

import (
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"sort"
	"strconv"
)

// record is one stored object. The object itself is kept pre-encoded (raw is
// exactly what an unexpanded GET returns), because reads vastly outnumber
// writes and a page of 100 is then a byte concatenation; the handful of fields
// lists filter on are copied out into keys.
type record struct {
	id      string
	created int64
	seq     uint64
	raw     []byte
	keys    []string // values of table.keyFields, same order
	parent  string   // parent id for child tables (invoice lines, subscription items)
	visible int64    // events only: unix nanos (wall clock) from which it is listed
	// unlisted: found by id, never by its list (prices created inline)
	unlisted bool
}

// table holds one object type. ordered is sorted by (created, seq) so that
// created-filtered, newest-first pages are binary searches.
type table struct {
	name      string
	keyFields []string
	keyFunc   func(obj map[string]any) []string
	byID      map[string]*record
	ordered   []*record
	children  map[string][]*record // parent id -> children by seq ascending
	sorted    bool                 // false while seeding appends out of order

	// indexes: the key fields whose records are found by value without a
	// scan, "customer" (where the table has it) and those newTable is
	// given.
	indexes    []keyIndex
	byCustomer map[string][]*record // the customer index's map, or nil

	undo *undoLog // while set, put and remove record how to take them back
}

// undoLog records the changes made to the tables while a request may
// still be taken back as a whole: an update with
// payment_behavior=error_if_incomplete runs as any other, and when its
// invoice can't be paid everything it did (items, prorations, the
// invoice, its payment attempt, their events) is undone, as Stripe
// "does not update the subscription and returns an error instead" (spec,
// POST /v1/subscriptions/{id}). Recording every put and remove is simpler
// and surer than predicting what the update would bill.
type undoLog struct {
	steps []undoStep
	seq   uint64 // the emulator's seq when the log began
}

// undoStep is one change of a record: prev is the record as it was (nil:
// it did not exist); removed says the record was removed (prev is then
// the removed record itself, to be put back with its seq and created).
type undoStep struct {
	t       *table
	id      string
	prev    *record
	removed bool
}

// rollback takes back the steps keep says (nil: all), newest first. The
// tables must no longer record (their undo is nil).
func (l *undoLog) rollback(keep func(undoStep) bool) {
	for i := len(l.steps) - 1; i >= 0; i-- {
		s := l.steps[i]
		if keep != nil && !keep(s) {
			continue
		}
		switch {
		case s.prev == nil:
			s.t.remove(s.id)
		case s.removed:
			s.t.put(s.prev)
			if ch := s.t.children[s.prev.parent]; s.prev.parent != "" {
				sort.Slice(ch, func(i, j int) bool { return ch[i].seq < ch[j].seq })
			}
		default:
			s.t.put(&record{id: s.id, raw: s.prev.raw, keys: s.prev.keys})
		}
	}

}

// keyIndex holds a table's records by the value of one key field, each
// value's records sorted like ordered; a record whose value is "" is in
// none. Lists filtered by customer (a customer's payment methods,
// invoices, charges) page a customer's slice instead of scanning the
// table, and a clock's advance finds the invoices due a retry
// (dunnedInvoices) without decoding every open one at each step.
type keyIndex struct {
	pos int // of the field in keyFields
	by  map[string][]*record
}

// newTable makes a table whose records keep keyFields; "customer" and
// the fields in indexed (each one of keyFields) are indexed.
func newTable(name string, keyFields []string, indexed ...string) *table {
	t := &table{name: name, keyFields: keyFields, byID: map[string]*record{}, children: map[string][]*record{}, sorted: true}
	for i, f := range keyFields {
		if f != "customer" && !slices.Contains(indexed, f) {
			continue
		}
		x := keyIndex{pos: i, by: map[string][]*record{}}
		if f == "customer" {
			t.byCustomer = x.by
		}
		t.indexes = append(t.indexes, x)
	}
	for _, f := range indexed {
		if !slices.Contains(keyFields, f) {
			panic(fmt.Sprintf("emulator: table %s indexes %s, which is not one of its keys", name, f))
		}
	}
	return t
}

// withKey are the records whose key field is value, sorted like ordered;
// field must be one of the table's indexed fields.
func (t *table) withKey(field, value string) []*record {
	for _, x := range t.indexes {
		if t.keyFields[x.pos] == field {
			return x.by[value]
		}
	}
	panic(fmt.Sprintf("emulator: table %s has no index of %s", t.name, field))
}

// timesWithKey yields the ids of the records whose indexed field is
// value, each with the Unix time its key timeField holds (records
// without one are left out): what a clock step looks up to find what is
// due without decoding objects.
func (t *table) timesWithKey(field, value, timeField string) iter.Seq2[string, int64] {
	return func(yield func(string, int64) bool) {
		for _, r := range t.withKey(field, value) {
			if at, ok := t.timeKey(r, timeField); ok && !yield(r.id, at) {
				return
			}
		}
	}
}

// timeKey is the Unix time r holds as its key field; false when it holds
// none.
func (t *table) timeKey(r *record, field string) (int64, bool) {
	k, _ := t.keyOf(r, field)
	if k == "" {
		return 0, false // without a parse's error, which allocates
	}
	at, err := strconv.ParseInt(k, 10, 64)
	return at, err == nil
}

func less(a, b *record) bool {
	if a.created != b.created {
		return a.created < b.created
	}
	return a.seq < b.seq
}

// put inserts a record, or updates the stored record of the same id in
// place (created and seq never change for an id, so its position holds).
// It returns the stored record.
func (t *table) put(r *record) *record {
	if t.undo != nil {
		st := undoStep{t: t, id: r.id}
		if old, ok := t.byID[r.id]; ok {
			cp := *old // put replaces raw and keys, never changes them in place
			st.prev = &cp
		}
		t.undo.steps = append(t.undo.steps, st)
	}
	if old, ok := t.byID[r.id]; ok {
		prev := old.keys
		old.raw, old.keys = r.raw, r.keys
		for i := range t.indexes {
			x := &t.indexes[i]
			if p, cur := prev[x.pos], old.keys[x.pos]; p != cur {
				x.remove(p, old)
				x.add(cur, old, t.sorted)
			}
		}
		return old
	}
	t.byID[r.id] = r
	for i := range t.indexes {
		t.indexes[i].add(r.keys[t.indexes[i].pos], r, t.sorted)
	}
	n := len(t.ordered)
	if !t.sorted || n == 0 || less(t.ordered[n-1], r) {
		t.ordered = append(t.ordered, r)
	} else {
		i := sort.Search(n, func(i int) bool { return less(r, t.ordered[i]) })
		t.ordered = append(t.ordered, nil)
		copy(t.ordered[i+1:], t.ordered[i:])
		t.ordered[i] = r
	}
	if r.parent != "" {
		t.children[r.parent] = append(t.children[r.parent], r)
	}
	return r
}

// remove deletes a record.
func (t *table) remove(id string) {
	r, ok := t.byID[id]
	if !ok {
		return
	}
	if t.undo != nil {
		t.undo.steps = append(t.undo.steps, undoStep{t: t, id: id, prev: r, removed: true})
	}
	delete(t.byID, id)
	for i := range t.indexes {
		t.indexes[i].remove(r.keys[t.indexes[i].pos], r)
	}
	if i := t.pos(r); i >= 0 {
		t.ordered = append(t.ordered[:i], t.ordered[i+1:]...)
	}
	if r.parent != "" {
		ch := t.children[r.parent]
		for j, c := range ch {
			if c == r {
				t.children[r.parent] = append(ch[:j:j], ch[j+1:]...)
				break
			}
		}
		if len(t.children[r.parent]) == 0 {
			delete(t.children, r.parent)
		}
	}
}

// pos is the index of r in ordered, or -1.
func (t *table) pos(r *record) int {
	if !t.sorted {
		for i, x := range t.ordered {
			if x.id == r.id {
				return i
			}
		}
		return -1
	}
	i := sort.Search(len(t.ordered), func(i int) bool { return !less(t.ordered[i], r) })
	if i < len(t.ordered) && t.ordered[i].id == r.id {
		return i
	}
	return -1
}

// add puts r in value's slice, in order (appended while unsorted:
// finishBulk sorts).
func (x *keyIndex) add(value string, r *record, sorted bool) {
	if value == "" {
		return
	}
	s := x.by[value]
	if !sorted || len(s) == 0 || less(s[len(s)-1], r) {
		x.by[value] = append(s, r)
		return
	}
	i := sort.Search(len(s), func(i int) bool { return less(r, s[i]) })
	s = append(s, nil)
	copy(s[i+1:], s[i:])
	s[i] = r
	x.by[value] = s
}

func (x *keyIndex) remove(value string, r *record) {
	if value == "" {
		return
	}
	s := x.by[value]
	for i, y := range s {
		if y == r {
			s = append(s[:i:i], s[i+1:]...)
			break
		}
	}
	if len(s) == 0 {
		delete(x.by, value)
	} else {
		x.by[value] = s
	}
}

// finishBulk restores order after seeding appended records out of order.
func (t *table) finishBulk() {
	for _, x := range t.indexes {
		for _, s := range x.by {
			sort.Slice(s, func(i, j int) bool { return less(s[i], s[j]) })
		}
	}
	sort.Slice(t.ordered, func(i, j int) bool { return less(t.ordered[i], t.ordered[j]) })
	for _, ch := range t.children {
		sort.Slice(ch, func(i, j int) bool { return ch[i].seq < ch[j].seq })
	}
	t.sorted = true
}

// keyOf returns the filter value of a field for a record.
func (t *table) keyOf(r *record, field string) (string, bool) {
	for i, f := range t.keyFields {
		if f == field {
			return r.keys[i], true
		}
	}
	return "", false
}

// extractKeys computes a record's filter values from the object.
func (t *table) extractKeys(obj map[string]any) []string {
	if t.keyFunc != nil {
		return t.keyFunc(obj)
	}
	return fieldKeys(t.keyFields, obj)
}

// fieldKeys are obj's values of fields, as keys.
func fieldKeys(fields []string, obj map[string]any) []string {
	if len(fields) == 0 {
		return nil
	}
	k := make([]string, len(fields))
	for i, f := range fields {
		k[i] = keyString(obj[f])
	}
	return k
}

func keyString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case map[string]any:
		if id, ok := x["id"].(string); ok {
			return id
		}
	}
	return ""
}

// listQuery is a parsed list request.
type listQuery struct {
	limit         int
	startingAfter *record
	endingBefore  *record
	createdLo     int64 // inclusive
	createdHi     int64 // inclusive
	match         func(*record) bool
}

// page walks seq (sorted ascending by (created, seq)) newest first, or oldest
// first when asc is set (nested lists such as invoice lines), and returns one
// page.
func page(seq []*record, q listQuery, asc bool) ([]*record, bool) {
	lo, hi := 0, len(seq) // candidate window [lo, hi)
	if !asc {
		if q.createdLo > minTime {
			lo = sort.Search(len(seq), func(i int) bool { return seq[i].created >= q.createdLo })
		}
		if q.createdHi < maxTime {
			hi = sort.Search(len(seq), func(i int) bool { return seq[i].created > q.createdHi })
		}
	}
	idx := func(r *record) int {
		if asc {
			return sort.Search(len(seq), func(i int) bool { return seq[i].seq >= r.seq })
		}
		return sort.Search(len(seq), func(i int) bool { return !less(seq[i], r) })
	}
	var out []*record
	take := func(r *record) bool {
		if q.match != nil && !q.match(r) {
			return true
		}
		out = append(out, r)
		return len(out) <= q.limit
	}
	// "forward" is the list's natural direction: descending for newest
	// first, ascending for nested lists.
	forward := true
	start := 0
	if q.startingAfter != nil {
		start = idx(q.startingAfter)
		if asc {
			lo = max(lo, start+1)
		} else {
			hi = min(hi, start)
		}
	} else if q.endingBefore != nil {
		forward = false
		start = idx(q.endingBefore)
		if asc {
			hi = min(hi, start)
		} else {
			lo = max(lo, start+1)
		}
	}
	descending := asc != forward // walk high->low?
	if descending {
		for i := hi - 1; i >= lo; i-- {
			if !take(seq[i]) {
				break
			}
		}
	} else {
		for i := lo; i < hi; i++ {
			if !take(seq[i]) {
				break
			}
		}
	}
	more := len(out) > q.limit
	if more {
		out = out[:q.limit]
	}
	if !forward {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, more
}

const (
	minTime = -1 << 62
	maxTime = 1 << 62
)
