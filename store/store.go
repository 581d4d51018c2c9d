package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
)

// Object is one Stripe object to store.
type Object struct {
	// Raw is the object as Stripe returned it. Unknown fields are kept.
	Raw json.RawMessage
	// AsOf is the Stripe-clock time at which Raw was current: the Date header
	// of the response that carried it, or the created time of the event.
	AsOf time.Time
	// Children, keyed by nested list field ("lines", "items"), are complete
	// nested lists fetched separately (the embedded list had has_more). A
	// field given here replaces the list embedded in Raw.
	Children map[string][]json.RawMessage
}

// Result says what happened to each object, by id (for upcoming_invoices,
// by customer). Every input object is in exactly one list; an id given twice
// in one call appears once per object.
type Result struct {
	Applied []string // written: new, or newer than the stored state
	Stale   []string // the stored state is as new or newer (identical content included)
	// Ambiguous: same _as_of as the stored row but different content, so
	// the order can't be told. The row was left alone; re-fetch the object
	// (after the second has passed) and upsert it again.
	Ambiguous []string
	// Tombstoned: the id was deleted earlier, or the customer owning it
	// (Owned); skipped.
	Tombstoned []string
	Deleted    []string // the object was a deletion stub ({"deleted": true}); removed and tombstoned
	// Incomplete lists applied objects whose embedded nested list had
	// has_more and no complete list in Children: the children present were
	// stored, but none were removed. It also lists applied objects whose
	// row lacks an included list (schema.IncludedList) or has it cut:
	// fetch them with the list (stripeapi.ExpandIncluded).
	Incomplete []string
}

func (r *Result) add(o Result) {
	r.Applied = append(r.Applied, o.Applied...)
	r.Stale = append(r.Stale, o.Stale...)
	r.Ambiguous = append(r.Ambiguous, o.Ambiguous...)
	r.Tombstoned = append(r.Tombstoned, o.Tombstoned...)
	r.Deleted = append(r.Deleted, o.Deleted...)
	r.Incomplete = append(r.Incomplete, o.Incomplete...)
}

// batchSize bounds the rows per statement (parameter arrays stay a few MB).
const batchSize = 2000

// Upsert stores objs into table (a name of schema.Tables()) inside tx.
// Rows are replaced only by a strictly newer AsOf; tombstoned ids are
// skipped; deletion stubs delete. For parents, the children in nested lists
// are replaced in the same transaction: children not in the new complete
// list are removed, unless they were written with a newer _as_of than the
// parent's (e.g. by write-through).
//
// An object without its key (id) is an error and nothing of the call is
// applied by Upsert itself (the caller's tx decides). A field whose JSON type
// doesn't match its column is logged and its column left NULL; the row is
// still written with the field intact in _raw.
func Upsert(ctx context.Context, tx pgx.Tx, table string, objs []Object) (Result, error) {
	t, ok := schema.Lookup(table)
	if !ok {
		return Result{}, fmt.Errorf("store: unknown table %q", table)
	}
	var res Result
	for start := 0; start < len(objs); start += batchSize {
		end := min(start+batchSize, len(objs))
		r, err := upsertBatch(ctx, tx, t, objs[start:end])
		if err != nil {
			return res, err
		}
		res.add(r)
	}
	return res, nil
}

// row is one decoded object on its way into a table.
type row struct {
	keys   []string // values of t.Key
	key    string   // keys joined, for sorting and dedupe
	report string   // the id reported in Result
	raw    json.RawMessage
	fields map[string]json.RawMessage
	asOf   time.Time
	parent string // parent column value (child tables)
	kids   map[string][]json.RawMessage
}

func upsertBatch(ctx context.Context, tx pgx.Tx, t *schema.Table, objs []Object) (Result, error) {
	var res Result
	rows := make([]*row, 0, len(objs))
	var stubs []*row
	// Decode everything before writing anything: a bad object fails the
	// call with nothing sent to Postgres.
	for i, o := range objs {
		if o.AsOf.IsZero() {
			return Result{}, fmt.Errorf("store: %s: object %d has no AsOf (the ordering guard needs it)", t.Name, i)
		}
		r, err := decode(t, o.Raw, "", true)
		if err != nil {
			return Result{}, fmt.Errorf("store: %s: object %d: %w", t.Name, i, err)
		}
		r.asOf = o.AsOf
		r.kids = o.Children
		for field, list := range o.Children {
			for j, it := range list {
				if err := validJSON(it); err != nil {
					return Result{}, fmt.Errorf("store: %s: object %d: Children[%q][%d]: %w", t.Name, i, field, j, err)
				}
			}
		}
		if deletedStub(r.fields) {
			stubs = append(stubs, r)
		} else {
			rows = append(rows, r)
		}
	}
	// Deletion is final, whatever else the batch holds for the id. In key
	// order, as writeRows locks: a write-through deleting rows the events
	// loop is upserting must not deadlock with it.
	sort.Slice(stubs, func(i, j int) bool { return stubs[i].key < stubs[j].key })
	for _, r := range stubs {
		if err := Delete(ctx, tx, t.Name, r.report, r.asOf); err != nil {
			return Result{}, err
		}
		res.Deleted = append(res.Deleted, r.report)
	}
	rows, orphans, err := dropOrphans(ctx, tx, t, rows)
	if err != nil {
		return Result{}, err
	}
	res.Tombstoned = append(res.Tombstoned, orphans...)
	rows, dropped, tied := dedupe(rows)
	res.Stale = append(res.Stale, dropped...)
	res.Ambiguous = append(res.Ambiguous, tied...)
	out, err := writeRows(ctx, tx, t, rows, asObject)
	if err != nil {
		return Result{}, err
	}
	applied := map[string]bool{}
	for _, r := range rows {
		switch out[r.report] {
		case 'a':
			res.Applied = append(res.Applied, r.report)
			applied[r.report] = true
		case 't':
			res.Tombstoned = append(res.Tombstoned, r.report)
		case 'm':
			res.Ambiguous = append(res.Ambiguous, r.report)
		default:
			res.Stale = append(res.Stale, r.report)
		}
	}
	incomplete, err := lacksIncluded(ctx, tx, t, rows, applied)
	if err != nil {
		return Result{}, err
	}
	res.Incomplete = append(res.Incomplete, incomplete...)
	// Every carrier, applied or not: a stale or deleted carrier (an
	// invoice item's created event applied after its deleted one) still
	// shows a price that exists, and no price is ever replaced from it.
	var carriers []*row
	if EmbedsPrice(t.Name) {
		carriers = rows
	}
	for _, n := range t.Nested {
		incomplete, kids, err := replaceChildren(ctx, tx, n, rows, applied)
		if err != nil {
			return Result{}, err
		}
		res.Incomplete = append(res.Incomplete, incomplete...)
		if EmbedsPrice(n.Table) {
			carriers = append(carriers, kids...)
		}
	}
	if err := insertEmbeddedPrices(ctx, tx, carriers); err != nil {
		return Result{}, err
	}
	return res, nil
}

// lacksIncluded returns the applied rows whose stored state lacks one of
// t's included lists (schema.IncludedList) or has it cut at has_more: an
// event's object, which never has the list, for an object no fetch stored
// yet. The caller fetches them (with the list) to complete the row.
func lacksIncluded(ctx context.Context, tx pgx.Tx, t *schema.Table, rows []*row, applied map[string]bool) ([]string, error) {
	if len(t.Included) == 0 {
		return nil, nil
	}
	var out, absent []string
	for _, r := range rows {
		if !applied[r.report] {
			continue
		}
		for _, l := range t.Included {
			v, ok := r.fields[l.Field]
			if !ok {
				absent = append(absent, r.report)
				break
			}
			if f, err := scanObject(v); err == nil && string(f["has_more"]) == "true" {
				out = append(out, r.report)
				break
			}
		}
	}
	if len(absent) == 0 {
		return out, nil
	}
	var lacks []string
	for _, l := range t.Included {
		lacks = append(lacks, fmt.Sprintf(`NOT "_raw" ? %[1]s OR "_raw"->%[1]s->'has_more' = 'true'`, quote(l.Field)))
	}
	// The stored state, which keeps a list the incoming one lacked.
	q, err := tx.Query(ctx, fmt.Sprintf(`SELECT %[1]s FROM %[2]s WHERE %[1]s = ANY($1::text[]) AND (%[3]s)`,
		schema.Ident(reportColumn(t)), t.QualifiedName(), strings.Join(lacks, " OR ")), absent)
	if err != nil {
		return nil, fmt.Errorf("store: %s: included lists: %w", t.Name, err)
	}
	defer q.Close()
	for q.Next() {
		var id string
		if err := q.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: %s: included lists: %w", t.Name, err)
		}
		out = append(out, id)
	}
	if err := q.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: included lists: %w", t.Name, err)
	}
	return out, nil
}

// PriceCarriers are the tables whose objects carry their price whole
// (subscription_item.price, line_item.price, invoiceitem.price): Upsert
// stores those prices too when stripe.prices lacks them.
var PriceCarriers = []string{"subscription_items", "invoice_line_items", "invoiceitems"}

// EmbedsPrice reports whether table is one of PriceCarriers.
func EmbedsPrice(table string) bool { return slices.Contains(PriceCarriers, table) }

// insertEmbeddedPrices stores the prices the carriers embed when
// stripe.prices has no row for them yet. Stripe's price list leaves out
// prices created inline (price_data), and nothing says they get events, so
// their carriers are the only place sync sees them. Whether an embedded
// copy is current at its carrier's _as_of is not documented (the emulator
// keeps the copy made when the carrier was), so it never replaces a stored
// row and is dated a second before the price's creation: any state fetched
// or received in an event is newer and replaces it (even in the same
// second, which would otherwise be a tie nobody re-fetches). A price
// deleted earlier stays out (tombstone).
func insertEmbeddedPrices(ctx context.Context, tx pgx.Tx, carriers []*row) error {
	pt, ok := schema.Lookup("prices")
	if !ok || len(carriers) == 0 {
		return nil
	}
	var prices []*row
	for _, c := range carriers {
		v, ok := c.fields["price"]
		if !ok || len(v) == 0 || v[0] != '{' {
			continue // null, or an id only
		}
		p, err := decode(pt, v, "", false)
		if err != nil || string(p.fields["object"]) != `"price"` {
			continue
		}
		p.asOf = c.asOf
		if created, err := strconv.ParseInt(string(p.fields["created"]), 10, 64); err == nil && created > 0 && !time.Unix(created, 0).After(c.asOf) {
			p.asOf = time.Unix(created-1, 0)
		}
		prices = append(prices, p)
	}
	prices, _, _ = dedupe(prices)
	_, err := writeRows(ctx, tx, pt, prices, asMissing)
	return err
}

// dedupe keeps, per key, the newest object of a batch (ON CONFLICT can't
// touch a row twice in one statement). The older duplicates are dropped
// (reported stale); a duplicate with the same AsOf and other content is a tie
// the batch can't order: the later one is kept and the other reported
// ambiguous, so the caller re-fetches.
func dedupe(rows []*row) (kept []*row, dropped, tied []string) {
	idx := make(map[string]int, len(rows))
	out := rows[:0]
	for _, r := range rows {
		i, seen := idx[r.key]
		if !seen {
			idx[r.key] = len(out)
			out = append(out, r)
			continue
		}
		prev := out[i]
		switch {
		case r.asOf.After(prev.asOf):
			out[i] = r
			dropped = append(dropped, prev.report)
		case r.asOf.Equal(prev.asOf) && !bytes.Equal(r.raw, prev.raw):
			out[i] = r
			tied = append(tied, prev.report)
		default:
			dropped = append(dropped, r.report)
		}
	}
	return out, dropped, tied
}

func deletedStub(fields map[string]json.RawMessage) bool {
	d, ok := fields["deleted"]
	return ok && string(d) == "true"
}

// decode parses raw far enough to know its key and to check each column's
// JSON type (mismatches are logged; the SQL mapping leaves them NULL).
// validate is false for children split out of an already validated parent.
func decode(t *schema.Table, raw json.RawMessage, parent string, validate bool) (*row, error) {
	if validate {
		if err := validJSON(raw); err != nil {
			return nil, err
		}
	}
	if needsEscapeRepair(raw) {
		raw = replaceBadEscapes(raw)
	}
	fields, err := scanObject(raw)
	if err != nil {
		return nil, err
	}
	r := &row{raw: raw, fields: fields, parent: parent}
	for _, k := range t.Key {
		var v string
		if t.Parent != nil && k == t.Parent.Column && parent != "" {
			v = parent
		} else {
			v = schema.RefID(fields[k])
		}
		if v == "" {
			return nil, fmt.Errorf("missing key field %q", k)
		}
		r.keys = append(r.keys, v)
	}
	r.report = r.keys[len(r.keys)-1]
	r.key = strings.Join(r.keys, "\x00")
	if t.Parent != nil && r.parent == "" {
		r.parent = schema.RefID(fields[t.Parent.Column])
	}
	for _, c := range t.Columns {
		if v, ok := fields[c.Field]; ok && !typeOK(c.Kind, v) {
			warnType(t.Name, c, r.report, v)
		}
	}
	return r, nil
}

func validJSON(raw json.RawMessage) error {
	if !json.Valid(raw) {
		var x any
		return fmt.Errorf("invalid JSON: %v", json.Unmarshal(raw, &x))
	}
	if !utf8.Valid(raw) {
		return errors.New("invalid UTF-8 in JSON")
	}
	return nil
}

func typeOK(k schema.Kind, v json.RawMessage) bool {
	if len(v) == 0 || string(v) == "null" {
		return true
	}
	c := v[0]
	number := c == '-' || (c >= '0' && c <= '9')
	switch k {
	case schema.KindText:
		return c == '"'
	case schema.KindExpandable:
		return c == '"' || c == '{'
	case schema.KindInteger, schema.KindTimestamp:
		// What the column's conversion (schema.Column.ConvertSQL) stores:
		// an integral value that fits (1e3 too) in an integer column, a
		// time before year 5138 in a timestamp column; the rest is NULL.
		if !number {
			return false
		}
		if k == schema.KindInteger && !bytes.ContainsAny(v, ".eE") {
			_, err := strconv.ParseInt(string(v), 10, 64)
			return err == nil
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return false
		}
		if k == schema.KindTimestamp {
			return math.Abs(f) < 1e11
		}
		return f == math.Trunc(f) && math.Abs(f) < math.MaxInt64
	case schema.KindNumber:
		return number
	case schema.KindBoolean:
		return c == 't' || c == 'f'
	}
	return true
}

var (
	warnMu   sync.Mutex
	warnSeen = map[string]int{}
)

// warnType logs a field whose JSON type doesn't fit its column: the first
// time per table and column, then every 1000th, so a Stripe change that
// affects every row can't flood the log.
func warnType(table string, c schema.Column, id string, v json.RawMessage) {
	warnMu.Lock()
	k := table + "." + c.Name
	warnSeen[k]++
	n := warnSeen[k]
	warnMu.Unlock()
	if n == 1 || n%1000 == 0 {
		sample := string(v)
		if len(sample) > 80 {
			sample = sample[:80] + "…"
		}
		slog.Warn("stripe field has an unexpected JSON type; column left NULL, value kept in _raw",
			"table", table, "column", c.Name, "want", c.Kind.String(), "id", id, "value", sample, "occurrences", n)
	}
}

// writeMode says which stored rows a write replaces.
type writeMode int

const (
	asObject  writeMode = iota // strictly older ones
	asChild                    // as old or older, so re-applying a parent state rewrites its children
	asMissing                  // none: only ids not stored yet are inserted
)

// writeRows runs the upsert statement and returns, by reported id, 'a'
// (applied), 's' (stale), 'm' (ambiguous) or 't' (tombstoned); the
// ambiguous ones are told apart only for asObject.
func writeRows(ctx context.Context, tx pgx.Tx, t *schema.Table, rows []*row, mode writeMode) (map[string]byte, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	// Lock rows in key order so concurrent upserts of overlapping ids can't
	// deadlock.
	sort.Slice(rows, func(i, j int) bool { return rows[i].key < rows[j].key })
	n := len(rows)
	k1 := make([]string, n)
	k2 := make([]string, n)
	raws := make([]string, n)
	asOf := make([]time.Time, n)
	parents := make([]*string, n)
	for i, r := range rows {
		k1[i] = r.keys[0]
		if len(r.keys) > 1 {
			k2[i] = r.keys[1]
		}
		raws[i] = string(r.raw)
		asOf[i] = r.asOf
		if r.parent != "" {
			p := r.parent
			parents[i] = &p
		}
	}
	q := statements(t)
	sql := q.upsert
	switch mode {
	case asChild:
		sql = q.upsertChild
	case asMissing:
		sql = q.insertMissing
	}
	// The upsert checks tombstones in its snapshot, so it can't see a
	// Delete that commits while it waits on the row that Delete removes;
	// Postgres then inserts the row again. The second statement runs with a
	// fresh snapshot (READ COMMITTED), after the wait, and takes such rows
	// out. Both go in one round trip.
	batch := &pgx.Batch{}
	batch.Queue(sql, k1, k2, raws, asOf, parents)
	if !t.Virtual {
		ids := k1
		if len(t.Key) > 1 {
			ids = k2
		}
		batch.Queue(q.dropTombstoned, ids)
	}
	br := tx.SendBatch(ctx, batch)
	out := make(map[string]byte, n)
	err := func() error {
		defer br.Close()
		res, err := br.Query()
		if err != nil {
			return err
		}
		for res.Next() {
			var id, st string
			if err := res.Scan(&id, &st); err != nil {
				return err
			}
			out[id] = st[0]
		}
		if err := res.Err(); err != nil {
			return err
		}
		if t.Virtual {
			return nil
		}
		res, err = br.Query()
		if err != nil {
			return err
		}
		for res.Next() {
			var id string
			if err := res.Scan(&id); err != nil {
				return err
			}
			out[id] = 't'
		}
		return res.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("store: upsert %s: %w", t.Name, err)
	}
	if mode != asObject {
		return out, nil
	}
	var rk1, rk2, rraw []string
	var rasOf []time.Time
	for i, r := range rows {
		if out[r.report] == 's' {
			rk1, rk2, rraw, rasOf = append(rk1, k1[i]), append(rk2, k2[i]), append(rraw, raws[i]), append(rasOf, asOf[i])
		}
	}
	if len(rk1) == 0 {
		return out, nil
	}
	res, err := tx.Query(ctx, q.recheck, rk1, rk2, rraw, rasOf)
	if err != nil {
		return nil, fmt.Errorf("store: upsert %s: recheck: %w", t.Name, err)
	}
	for res.Next() {
		var id string
		if err := res.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: upsert %s: recheck: %w", t.Name, err)
		}
		out[id] = 'm'
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("store: upsert %s: recheck: %w", t.Name, err)
	}
	return out, nil
}

// replaceChildren stores the nested list n of every applied parent and
// returns the children it wrote.
func replaceChildren(ctx context.Context, tx pgx.Tx, n schema.NestedList, parents []*row, applied map[string]bool) (incomplete []string, kids []*row, err error) {
	ct, ok := schema.Lookup(n.Table)
	if !ok {
		return nil, nil, fmt.Errorf("store: nested table %q unknown", n.Table)
	}
	var complete []string // parents whose whole child set is known
	var completeAsOf []time.Time
	for _, p := range parents {
		if !applied[p.report] {
			continue
		}
		pid := p.keys[0]
		var items []json.RawMessage
		full := true
		if list, ok := p.kids[n.Field]; ok {
			items = list
		} else if v, ok := p.fields[n.Field]; ok && string(v) != "null" {
			// Raw was validated as a whole; only the shape can be off.
			l, err := scanObject(v)
			if err == nil && string(l["data"]) != "null" && len(l["data"]) > 0 {
				items, err = scanArray(l["data"])
			}
			if err != nil {
				warnType(ct.Name, schema.Column{Name: n.Field, Kind: schema.KindJSON}, pid, v)
				full = false
			}
			full = full && string(l["has_more"]) != "true"
		} else {
			continue // list absent: leave the stored children alone
		}
		// Children were validated with their parent (or, passed separately,
		// up front). One that still can't be stored (no id) is skipped and
		// the list treated as incomplete, so nothing is removed on its
		// account: the parent itself is fine and stays applied.
		for i, it := range items {
			k, err := decode(ct, it, pid, false)
			if err != nil {
				slog.Warn("nested list element can't be stored; skipped, siblings kept", "table", ct.Name, "parent", pid, "field", n.Field, "index", i, "err", err)
				full = false
				continue
			}
			k.asOf = p.asOf
			kids = append(kids, k)
		}
		if !full {
			incomplete = append(incomplete, p.report)
		} else {
			complete = append(complete, pid)
			completeAsOf = append(completeAsOf, p.asOf)
		}
	}
	kids, _, _ = dedupe(kids)
	if len(complete) > 0 {
		kp := make([]string, len(kids))
		kid := make([]string, len(kids))
		for i, k := range kids {
			kp[i], kid[i] = k.parent, k.keys[len(k.keys)-1]
		}
		if _, err := tx.Exec(ctx, statements(ct).pruneChildren, complete, completeAsOf, kp, kid); err != nil {
			return nil, nil, fmt.Errorf("store: replace %s: %w", ct.Name, err)
		}
	}
	if _, err := writeRows(ctx, tx, ct, kids, asChild); err != nil {
		return nil, nil, err
	}
	return incomplete, kids, nil
}

// Delete removes the object id (with its children) from table and records a
// tombstone, so no later upsert brings it back. Deleting an id that isn't
// stored still records the tombstone. For upcoming_invoices (virtual, keyed
// by customer) the row is removed without a tombstone: a customer's upcoming
// invoice can come back.
func Delete(ctx context.Context, tx pgx.Tx, table, id string, at time.Time) error {
	return DeleteCreated(ctx, tx, table, id, at, time.Time{})
}

// DeleteCreated is Delete of an object whose created time is known (a
// deletion event carries the object): for ids of the user's choice
// (ChosenIDs) its tombstone then blocks only objects created no later than
// it, so a new object with the id, even one created in the deletion's own
// second, is stored. Zero created: the stored row's, if that is the object
// deleted, else the deletion's time bounds the tombstone.
func DeleteCreated(ctx context.Context, tx pgx.Tx, table, id string, at, created time.Time) error {
	t, ok := schema.Lookup(table)
	if !ok {
		return fmt.Errorf("store: unknown table %q", table)
	}
	if id == "" {
		return fmt.Errorf("store: delete from %s: empty id", table)
	}
	q := statements(t)
	batch := &pgx.Batch{}
	switch {
	case ChosenIDs(t.Name):
		var c *time.Time
		if !created.IsZero() {
			c = &created
		}
		// The latest deletion's created bounds the tombstone; two
		// reports of one deletion keep the one that knew it.
		batch.Queue(`INSERT INTO stripe_sync.tombstones AS o (object, id, deleted_at, created)
VALUES ($1, $2, $3, COALESCE($4::timestamptz, (`+q.storedCreated+`)))
ON CONFLICT (object, id) DO UPDATE SET deleted_at = GREATEST(o.deleted_at, excluded.deleted_at),
  created = CASE WHEN excluded.deleted_at > o.deleted_at THEN excluded.created
    WHEN excluded.deleted_at = o.deleted_at THEN GREATEST(o.created, excluded.created)
    ELSE o.created END`, t.Name, id, at, c)
	case !t.Virtual:
		batch.Queue(`INSERT INTO stripe_sync.tombstones (object, id, deleted_at) VALUES ($1, $2, $3)
ON CONFLICT (object, id) DO UPDATE SET deleted_at = GREATEST(stripe_sync.tombstones.deleted_at, excluded.deleted_at)`, t.Name, id, at)
	}
	for _, s := range q.deleteChildren {
		batch.Queue(s, id)
	}
	batch.Queue(q.delete, id)
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("store: delete %s %s: %w", table, id, err)
	}
	for _, dep := range Owned[t.Name] {
		if err := deleteOwned(ctx, tx, dep, id, at); err != nil {
			return fmt.Errorf("store: delete %s of %s %s: %w", dep.Table, table, id, err)
		}
	}
	return nil
}

// Dependent is a table whose rows, by their customer column, go with a
// deleted row of their owner (Owned).
type Dependent struct {
	Table string
	// Deleted: the owner's deletion deletes them in Stripe, so they are
	// tombstoned; otherwise the rows are only removed, so that a later
	// state of the object that names no deleted owner (a payment method
	// detached before, its event listed late) is still stored.
	Deleted bool
}

// Owned lists, per table, the tables whose rows go with a deleted row of
// it. A deleted customer's tax ids are deleted (in 2023-10-16 only
// customers own them, read through /v1/customers/{id}/tax_ids, which
// answers for live customers only). Its payment methods stay in Stripe,
// still attached and retrievable by id, with their events, but payment
// methods are listed per customer, so no list shows them again: a
// backfill can't find them, and a table that kept them would differ
// between a database that followed the events and one backfilled later.
// The table holds what the lists show. Its upcoming invoice (virtual,
// keyed by customer) goes too, whichever path learns of the deletion.
// While the owner's tombstone stands, Upsert skips rows naming it
// (dropOrphans).
var Owned = map[string][]Dependent{"customers": {{Table: "payment_methods"}, {Table: "tax_ids", Deleted: true}, {Table: "upcoming_invoices"}}}

// deleteOwned removes the rows of dep owned by customer id.
func deleteOwned(ctx context.Context, tx pgx.Tx, dep Dependent, id string, at time.Time) error {
	dt, ok := schema.Lookup(dep.Table)
	if !ok {
		return fmt.Errorf("unknown table %q", dep.Table)
	}
	if !dep.Deleted {
		_, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE "customer" = $1`, dt.QualifiedName()), id)
		return err
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT "id" FROM %s WHERE "customer" = $1`, dt.QualifiedName()), id)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, did := range ids {
		if err := Delete(ctx, tx, dep.Table, did, at); err != nil {
			return err
		}
	}
	return nil
}

// dependent finds table among the Owned dependents: its owner's table
// and its entry.
func dependent(table string) (owner string, d Dependent, ok bool) {
	for owner, deps := range Owned {
		for _, d := range deps {
			if d.Table == table {
				return owner, d, true
			}
		}
	}
	return "", Dependent{}, false
}

// dropOrphans takes out of rows (of a Dependent table) those naming a
// customer that was deleted and is not stored again: an event of a
// payment method or tax id can be applied after its customer's deletion
// (listed late), and Stripe keeps sending events of a deleted customer's
// payment methods (a card updated by the network). The stored rows are
// left alone (the deletion removed those naming the customer). It
// returns the rows left and the ids skipped.
func dropOrphans(ctx context.Context, tx pgx.Tx, t *schema.Table, rows []*row) ([]*row, []string, error) {
	owner, _, _ := dependent(t.Name)
	if owner == "" || len(rows) == 0 {
		return rows, nil, nil
	}
	var owners []string
	for _, r := range rows {
		if o := schema.RefID(r.fields["customer"]); o != "" {
			owners = append(owners, o)
		}
	}
	if len(owners) == 0 {
		return rows, nil, nil
	}
	ot, _ := schema.Lookup(owner)
	q, err := tx.Query(ctx, fmt.Sprintf(`SELECT DISTINCT o FROM unnest($1::text[]) AS o
WHERE EXISTS (SELECT 1 FROM stripe_sync.tombstones tb WHERE tb.object = $2 AND tb.id = o)
  AND NOT EXISTS (SELECT 1 FROM %s k WHERE k."id" = o)`, ot.QualifiedName()), owners, owner)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %s: owners deleted: %w", t.Name, err)
	}
	deleted, err := pgx.CollectRows(q, pgx.RowTo[string])
	if err != nil || len(deleted) == 0 {
		return rows, nil, err
	}
	kept := rows[:0:0]
	var dropped []string
	for _, r := range rows {
		if slices.Contains(deleted, schema.RefID(r.fields["customer"])) {
			dropped = append(dropped, r.report)
		} else {
			kept = append(kept, r)
		}
	}
	return kept, dropped, nil
}

// Sweep deletes (and tombstones) the rows of a top-level table that a
// complete backfill planned at before did not write: every object that
// exists was written with _as_of ≥ before, so the others are gone. It
// returns how many it removed. keepClocks spares the rows of objects on test
// clocks, which a key refused the clocks list could not list, and in a
// table without test_clock the rows of customers on test clocks. Prices that
// stored objects embed (PriceCarriers) are spared too: prices created inline
// are in no price list, and an object the backfill just wrote still uses
// them.
//
// The ids in spare are left alone: objects whose row the backfill could
// not write (another transaction held it) and that are queued for a
// re-fetch, which stores or removes them. Rows held by another
// transaction are not waited for either: they are left in place and
// returned in held, for the caller to queue the same way.
func Sweep(ctx context.Context, tx pgx.Tx, table string, before time.Time, keepClocks bool, spare []string) (removed int, held []string, err error) {
	t, ok := schema.Lookup(table)
	if !ok {
		return 0, nil, fmt.Errorf("store: unknown table %q", table)
	}
	if t.Parent != nil {
		return 0, nil, fmt.Errorf("store: sweep %s: children go with their parents", table)
	}
	key := schema.Ident(t.Key[len(t.Key)-1])
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT %[1]s FROM %[2]s WHERE "_as_of" < $1 AND %[1]s <> ALL(coalesce($2::text[], '{}'))%[3]s`,
		key, t.QualifiedName(), sweepSpares(t, keepClocks)), before, spare)
	if err != nil {
		return 0, nil, fmt.Errorf("store: sweep %s: %w", t.Name, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, nil, fmt.Errorf("store: sweep %s: %w", t.Name, err)
	}
	if len(ids) == 0 {
		return 0, nil, nil
	}
	w := WriteSet{}
	for _, id := range ids {
		w.Add(t.Name, id, true)
	}
	busy, err := LockRows(ctx, tx, w)
	if err != nil {
		return 0, nil, err
	}
	if len(busy) > 0 {
		kept := ids[:0]
		for _, id := range ids {
			if _, ok := busy[RowKey{t.Name, id}]; ok {
				held = append(held, id)
			} else {
				kept = append(kept, id)
			}
		}
		ids = kept
	}
	if err := removeUnlisted(ctx, tx, t, ids, before); err != nil {
		return 0, nil, err
	}
	return len(ids), held, nil
}

// sweepSpares is the condition (" AND …" on the rows of t) that keeps out
// of a sweep the rows Sweep spares besides the recent ones: with
// keepClocks, objects on test clocks (or of customers on clocks), and
// prices a stored object embeds. A sweep's verdict applied later
// (removeSwept) checks it again: the row must still be one Sweep would
// take.
func sweepSpares(t *schema.Table, keepClocks bool) string {
	cond := ""
	if keepClocks {
		if _, ok := t.Column("test_clock"); ok {
			cond = ` AND "test_clock" IS NULL`
		} else if _, ok := t.Column("customer"); ok {
			// Listed per customer (payment methods, tax ids): the
			// customers on clocks were not among the parents listed.
			cond = fmt.Sprintf(` AND NOT EXISTS (SELECT 1 FROM stripe.customers k WHERE k."id" = %s."customer" AND k."test_clock" IS NOT NULL)`, t.QualifiedName())
		}
	}
	if t.Name == "prices" {
		for _, n := range PriceCarriers {
			if ct, ok := schema.Lookup(n); ok {
				cond += fmt.Sprintf(` AND NOT EXISTS (SELECT 1 FROM %s c WHERE c."_raw"->'price'->>'id' = %s."id")`, ct.QualifiedName(), t.QualifiedName())
			}
		}
	}
	return cond
}

// removeUnlisted removes the rows ids of t, which a complete list no
// longer showed at before (Sweep).
func removeUnlisted(ctx context.Context, tx pgx.Tx, t *schema.Table, ids []string, before time.Time) error {
	if _, d, ok := dependent(t.Name); ok && !d.Deleted {
		// Not listed is not deleted here: Stripe keeps payment methods
		// that are on no customer's list (detached, never attached, or a
		// deleted customer's), and a later attach must be stored. The
		// table holds what the lists show (see Owned): removed, without
		// a tombstone.
		key := schema.Ident(t.Key[len(t.Key)-1])
		if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE %s = ANY($1::text[])`, t.QualifiedName(), key), ids); err != nil {
			return fmt.Errorf("store: sweep %s: %w", t.Name, err)
		}
		return nil
	}
	for _, id := range ids {
		if err := Delete(ctx, tx, t.Name, id, before); err != nil {
			return err
		}
	}
	return nil
}

// Tombstoned reports whether id of table was deleted.
func Tombstoned(ctx context.Context, tx pgx.Tx, table, id string) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE object = $1 AND id = $2)`, table, id).Scan(&ok)
	return ok, err
}

var (
	nulEscape = []byte(`\u0000`)
	// Prefixes of the escapes of UTF-16 surrogates (\ud800–\udfff).
	surrogateEscape      = []byte(`\ud`)
	surrogateEscapeUpper = []byte(`\uD`)
)

// needsEscapeRepair is a cheap test for escapes replaceBadEscapes may have
// to rewrite.
func needsEscapeRepair(raw []byte) bool {
	return bytes.Contains(raw, nulEscape) || bytes.Contains(raw, surrogateEscape) || bytes.Contains(raw, surrogateEscapeUpper)
}

// replaceBadEscapes rewrites the escapes Postgres's jsonb cannot store as
// \ufffd: \u0000 (no NUL in text) and a UTF-16 surrogate escape that is not
// part of a high+low pair (encoding/json accepts it, Postgres rejects it).
// Either would fail the whole statement (and the caller's transaction) for
// one odd string in, say, a customer's metadata.
func replaceBadEscapes(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	replaced := false
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			out = append(out, raw[i])
			continue
		}
		if r, ok := unicodeEscape(raw, i); ok {
			bad := r == 0
			n := 6
			switch {
			case r >= 0xd800 && r <= 0xdbff:
				if lo, ok := unicodeEscape(raw, i+6); ok && lo >= 0xdc00 && lo <= 0xdfff {
					n = 12 // a proper pair: keep both
				} else {
					bad = true
				}
			case r >= 0xdc00 && r <= 0xdfff:
				bad = true // a low surrogate without its high one
			}
			if bad {
				out = append(out, `\ufffd`...)
				replaced = true
			} else {
				out = append(out, raw[i:i+n]...)
			}
			i += n - 1
			continue
		}
		// Any other escape: copy it whole so an escaped backslash followed by
		// "u0000" text is left alone.
		out = append(out, raw[i])
		if i+1 < len(raw) {
			out = append(out, raw[i+1])
			i++
		}
	}
	if replaced {
		slog.Warn("stripe object contains \\u0000 or an unpaired surrogate escape, which Postgres jsonb cannot store; replaced by U+FFFD in _raw")
	}
	return out
}

// unicodeEscape decodes the escape \uXXXX at raw[i], if there is one.
func unicodeEscape(raw []byte, i int) (rune, bool) {
	if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range raw[i+2 : i+6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
