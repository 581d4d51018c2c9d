package store

import (
	"fmt"
	"strings"
	"sync"

	"github.com/pgstripe/pgstripe/schema"
)

// stmts are the SQL texts for one table, built once from its metadata (pgx
// then prepares and caches them per connection).
type stmts struct {
	upsert, upsertChild string
	insertMissing       string // embedded copies: a missing row only
	recheck             string
	dropTombstoned      string
	pruneChildren       string
	delete              string
	storedCreated       string // ChosenIDs: $2 id, $3 the deletion's time (Delete's tombstone insert)
	deleteChildren      []string
}

var (
	stmtMu    sync.Mutex
	stmtCache = map[string]*stmts{}
)

func statements(t *schema.Table) *stmts {
	stmtMu.Lock()
	defer stmtMu.Unlock()
	if s, ok := stmtCache[t.Name]; ok {
		return s
	}
	s := &stmts{
		upsert:        upsertSQL(t, "<"),
		upsertChild:   upsertSQL(t, "<="),
		insertMissing: upsertSQL(t, ""),
	}
	id := reportColumn(t)
	s.recheck = recheckSQL(t)
	s.dropTombstoned = fmt.Sprintf(`DELETE FROM %[1]s t USING stripe_sync.tombstones tb
WHERE tb.object = %[2]s AND tb.id = t.%[3]s AND tb.id = ANY($1::text[]) AND NOT %[4]s
RETURNING t.%[3]s`, t.QualifiedName(), quote(t.Name), schema.Ident(id), createdAfter(t, `t."_raw"`, tombstoneBound("tb")))
	s.delete = fmt.Sprintf("DELETE FROM %s WHERE %s = $1", t.QualifiedName(), schema.Ident(id))
	if ChosenIDs(t.Name) {
		// The row goes only if the tombstone, as Delete just recorded
		// it, blocks it: a deletion of an earlier object with the same
		// id leaves the row alone.
		s.delete = fmt.Sprintf(`DELETE FROM %[1]s t WHERE t.%[2]s = $1 AND NOT %[3]s`, t.QualifiedName(), schema.Ident(id),
			createdAfter(t, `t."_raw"`, fmt.Sprintf(`(SELECT %s FROM stripe_sync.tombstones tb WHERE tb.object = %s AND tb.id = $1)`, tombstoneBound("tb"), quote(t.Name))))
		// The created time of the object deleted, when the caller does not
		// know it: the stored row's, unless a tombstone of a deletion as
		// late already leaves that row alone (a new object with the id).
		s.storedCreated = fmt.Sprintf(`SELECT pg_catalog.to_timestamp((t."_raw"->>'created')::numeric) FROM %[1]s t
WHERE t.%[2]s = $2 AND pg_catalog.jsonb_typeof(t."_raw"->'created') = 'number' AND (t."_raw"->>'created')::numeric <= pg_catalog.date_part('epoch', $3::timestamptz)::numeric
  AND NOT EXISTS (SELECT 1 FROM stripe_sync.tombstones tb WHERE tb.object = %[3]s AND tb.id = $2 AND tb.deleted_at >= $3 AND %[4]s)`,
			t.QualifiedName(), schema.Ident(id), quote(t.Name), createdAfter(t, `t."_raw"`, tombstoneBound("tb")))
	}
	for _, n := range t.Nested {
		ct, ok := schema.Lookup(n.Table)
		if !ok || ct.Parent == nil {
			continue
		}
		s.deleteChildren = append(s.deleteChildren, fmt.Sprintf("DELETE FROM %s WHERE %s = $1", ct.QualifiedName(), schema.Ident(ct.Parent.Column)))
	}
	if t.Parent != nil {
		pc := schema.Ident(t.Parent.Column)
		s.pruneChildren = fmt.Sprintf(`DELETE FROM %[1]s c USING unnest($1::text[], $2::timestamptz[]) AS p(id, as_of)
WHERE c.%[2]s = p.id AND c."_as_of" <= p.as_of
  AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS k(parent, id) WHERE k.parent = c.%[2]s AND k.id = c.%[3]s)`,
			t.QualifiedName(), pc, schema.Ident(id))
	}
	stmtCache[t.Name] = s
	return s
}

// ChosenIDs reports whether objects of table may carry an id of the user's
// choice, which Stripe lets a new object take once the old one is deleted:
// the create endpoints of coupons, plans and products take an id (the only
// ones in the spec that do). Their tombstones block only the objects
// created no later than the deletion.
func ChosenIDs(table string) bool {
	return table == "coupons" || table == "plans" || table == "products"
}

// tombstoneBound is the SQL time up to which the tombstone tb blocks
// objects by their created: the deleted object's created when known (a new
// object with the id may be created in the deletion's own second), else
// the deletion's time.
func tombstoneBound(tb string) string {
	return fmt.Sprintf("COALESCE(%[1]s.created, %[1]s.deleted_at)", tb)
}

// createdAfter is an SQL condition: the object raw (jsonb) of t was created
// after the time at, so it is not the object a deletion at that time
// removed but a new one with the same id (ChosenIDs; false for the other
// tables, whose ids Stripe never gives again, so that no clock skew between
// a deletion's time and Stripe's created can let a deleted object back).
// Without a numeric created the object counts as the deleted one. Created
// in the second of at (the deleted object's created, or without it the
// deletion's time) can't be told from the deleted object: it counts as
// deleted too (a replay must never bring a deleted object back).
func createdAfter(t *schema.Table, raw, at string) string {
	if !ChosenIDs(t.Name) {
		return "false"
	}
	return fmt.Sprintf(`COALESCE(CASE WHEN pg_catalog.jsonb_typeof(%[1]s->'created') = 'number'
    THEN (%[1]s->>'created')::numeric > pg_catalog.date_part('epoch', %[2]s)::numeric END, false)`, raw, at)
}

// reportColumn is the column whose value identifies an object in Result and
// in tombstones: id, or the key for virtual tables.
func reportColumn(t *schema.Table) string {
	return t.Key[len(t.Key)-1]
}

// upsertSQL builds the one upsert statement. Parameters: $1, $2 the key
// column values (second only for two-column keys), $3 the raw objects as
// text, $4 their _as_of, $5 the parent column value (child tables).
// A stored row is replaced when its _as_of compares to the new one by
// guard; with no guard it is left alone, and not locked either (DO
// NOTHING). It still waits for a transaction that is inserting or updating
// that row (Postgres's conflict check does), which is why writers order
// their tables by LockOrder.
//
// The typed columns are computed in SQL: jsonb_to_record splits each object
// once and Column.ConvertSQL converts each field, the same mapping Migrate
// uses to fill new columns from _raw. The final SELECT sees the table as it
// was before the INSERT (one snapshot for the whole statement), which tells
// stale from ambiguous; writeRows rechecks the stale ones with a fresh
// snapshot (a concurrent writer may have committed meanwhile).
func upsertSQL(t *schema.Table, guard string) string {
	keyExpr := map[string]string{t.Key[0]: "i.k1"}
	if len(t.Key) > 1 {
		keyExpr[t.Key[1]] = "i.k2"
	}
	var cols, exprs, sets, rec []string
	for _, c := range t.Columns {
		cols = append(cols, schema.Ident(c.Name))
		rec = append(rec, schema.Ident(c.Field)+" jsonb")
		e := c.ConvertSQL("x." + schema.Ident(c.Field))
		if k, ok := keyExpr[c.Name]; ok {
			e = k
		} else if t.Parent != nil && c.Name == t.Parent.Column {
			e = fmt.Sprintf("COALESCE(i.parent, %s)", e)
		}
		exprs = append(exprs, e)
		if _, isKey := keyExpr[c.Name]; isKey {
			continue
		}
		if included(t, c.Field) {
			// A state without the list (an event's) keeps the stored one.
			sets = append(sets, fmt.Sprintf(`%[1]s = CASE WHEN excluded."_raw" ? %[2]s THEN excluded.%[1]s ELSE d.%[1]s END`,
				schema.Ident(c.Name), quote(c.Field)))
			continue
		}
		sets = append(sets, fmt.Sprintf("%[1]s = excluded.%[1]s", schema.Ident(c.Name)))
	}
	for _, m := range []string{schema.ColRaw, schema.ColSyncedAt, schema.ColAsOf} {
		cols = append(cols, schema.Ident(m))
		if m == schema.ColRaw {
			sets = append(sets, fmt.Sprintf("%s = %s", schema.Ident(m), keepIncluded(t, `excluded."_raw"`, `d."_raw"`)))
			continue
		}
		sets = append(sets, fmt.Sprintf("%[1]s = excluded.%[1]s", schema.Ident(m)))
	}
	exprs = append(exprs, "i.raw", "statement_timestamp()", "i.as_of")
	onConflict := "DO NOTHING"
	if guard != "" {
		onConflict = fmt.Sprintf(`DO UPDATE SET %s
  WHERE d."_as_of" %s excluded."_as_of"`, strings.Join(sets, ", "), guard)
	}

	keys := make([]string, len(t.Key))
	ret := make([]string, len(t.Key))
	match := func(alias string) string {
		var on []string
		for i, k := range t.Key {
			on = append(on, fmt.Sprintf("%s.%s = i.k%d", alias, schema.Ident(k), i+1))
		}
		return strings.Join(on, " AND ")
	}
	for i, k := range t.Key {
		keys[i] = schema.Ident(k)
		ret[i] = fmt.Sprintf("d.%s AS k%d", schema.Ident(k), i+1)
	}
	reportK := fmt.Sprintf("k%d", len(t.Key))
	live := "SELECT * FROM input"
	if !t.Virtual {
		live = fmt.Sprintf(`SELECT * FROM input i WHERE NOT EXISTS (
    SELECT 1 FROM stripe_sync.tombstones tb WHERE tb.object = %s AND tb.id = i.%s AND NOT %s)`,
			quote(t.Name), reportK, createdAfter(t, "i.raw", tombstoneBound("tb")))
	}
	return fmt.Sprintf(`WITH input AS (
  SELECT r.k1, r.k2, r.raw::jsonb AS raw, r.as_of, r.parent, r.ord
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) WITH ORDINALITY AS r(k1, k2, raw, as_of, parent, ord)
), live AS (
  %[1]s
), ins AS (
  INSERT INTO %[2]s AS d (%[3]s)
  SELECT %[4]s
  FROM live i CROSS JOIN LATERAL jsonb_to_record(i.raw) AS x(%[11]s) ORDER BY i.ord
  ON CONFLICT (%[5]s) %[6]s
  RETURNING %[7]s
)
SELECT i.%[8]s, CASE
    WHEN ins.k1 IS NOT NULL THEN 'a'
    WHEN l.ord IS NULL THEN 't'
    WHEN cur."_as_of" = i.as_of AND %[12]s <> i.raw THEN 'm'
    ELSE 's' END
FROM input i
LEFT JOIN ins ON %[9]s
LEFT JOIN live l ON l.ord = i.ord
LEFT JOIN %[2]s cur ON %[10]s`,
		live, t.QualifiedName(), strings.Join(cols, ", "), strings.Join(exprs, ",\n         "),
		strings.Join(keys, ", "), onConflict, strings.Join(ret, ", "),
		reportK, matchIns(len(t.Key)), match("cur"), strings.Join(rec, ", "), comparableRaw(t, `cur."_raw"`, "i.raw"))
}

// included reports whether field is one of t's included lists.
func included(t *schema.Table, field string) bool {
	for _, l := range t.Included {
		if l.Field == field {
			return true
		}
	}
	return false
}

// keepIncluded is the SQL for the object to store when the jsonb incoming
// replaces stored: incoming, plus each included list (schema.IncludedList)
// that incoming lacks and stored has. Stripe sends those lists only when
// asked (an event's object never has them) and they never change, so
// leaving them out would erase what a fetch stored.
func keepIncluded(t *schema.Table, incoming, stored string) string {
	expr := incoming
	for _, l := range t.Included {
		f := quote(l.Field)
		expr = fmt.Sprintf(`CASE WHEN %[1]s ? %[2]s OR NOT COALESCE(%[3]s ? %[2]s, false) THEN %[4]s ELSE %[4]s || pg_catalog.jsonb_build_object(%[2]s, %[3]s->%[2]s) END`,
			incoming, f, stored, expr)
	}
	return expr
}

// comparableRaw is the SQL for the stored object (jsonb) as comparable with
// incoming: without the included lists incoming lacks, which a state
// without them would keep (keepIncluded), so they are no difference.
func comparableRaw(t *schema.Table, stored, incoming string) string {
	expr := stored
	for _, l := range t.Included {
		f := quote(l.Field)
		expr = fmt.Sprintf(`CASE WHEN %[1]s ? %[2]s THEN %[3]s ELSE %[3]s - %[2]s END`, incoming, f, expr)
	}
	return expr
}

// recheckSQL finds, among objects the upsert did not apply, those whose stored
// row has the same _as_of and other content. The upsert's own classification
// reads the snapshot from before the statement, which misses a row a
// concurrent transaction committed meanwhile (ON CONFLICT waited for it);
// this statement takes a new snapshot (READ COMMITTED) and sees it.
// Parameters: $1, $2 key values, $3 raw, $4 _as_of.
func recheckSQL(t *schema.Table) string {
	var on []string
	for i, k := range t.Key {
		on = append(on, fmt.Sprintf("cur.%s = i.k%d", schema.Ident(k), i+1))
	}
	return fmt.Sprintf(`SELECT i.k%d FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS i(k1, k2, raw, as_of)
JOIN %s cur ON %s
WHERE cur."_as_of" = i.as_of AND %s <> i.raw::jsonb`, len(t.Key), t.QualifiedName(), strings.Join(on, " AND "), comparableRaw(t, `cur."_raw"`, "i.raw::jsonb"))
}

func matchIns(n int) string {
	on := []string{"ins.k1 = i.k1"}
	if n > 1 {
		on = append(on, "ins.k2 = i.k2")
	}
	return strings.Join(on, " AND ")
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// RowsSQL maps Stripe objects to the rows Upsert would store for them,
// without storing anything: $1 is a jsonb array of objects, $2 their
// _as_of. It yields one value, a jsonb array (as text) of the rows as
// to_jsonb gives them, in the order given (plus an "ord" key). Writethrough
// answers RETURNING with it when its apply could not write the rows (a
// client holding their row locks), so the client gets the state Stripe
// answered with, not the one its snapshot still holds.
func RowsSQL(t *schema.Table) string {
	var exprs, rec []string
	for _, c := range t.Columns {
		rec = append(rec, schema.Ident(c.Field)+" jsonb")
		exprs = append(exprs, c.ConvertSQL("x."+schema.Ident(c.Field))+" AS "+schema.Ident(c.Name))
	}
	exprs = append(exprs, "i.raw AS "+schema.Ident(schema.ColRaw),
		"statement_timestamp() AS "+schema.Ident(schema.ColSyncedAt),
		"a.as_of AS "+schema.Ident(schema.ColAsOf))
	return fmt.Sprintf(`SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r) ORDER BY r.ord)::text FROM (
  SELECT i.ord, %s
  FROM pg_catalog.jsonb_array_elements($1::jsonb) WITH ORDINALITY AS i(raw, ord)
  JOIN pg_catalog.unnest($2::timestamptz[]) WITH ORDINALITY AS a(as_of, ord) ON a.ord = i.ord
  CROSS JOIN LATERAL pg_catalog.jsonb_to_record(i.raw) AS x(%s)
) r`, strings.Join(exprs, ",\n         "), strings.Join(rec, ", "))
}
