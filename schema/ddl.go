package schema

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Schema names.
const (
	DataSchema = "stripe"      // one table per object type
	SyncSchema = "stripe_sync" // sync state: status, log, tombstones, migrations
)

// commentPrefix marks tables pgstripe created; Migrate refuses to touch a
// table in its way that lacks it.
const commentPrefix = "pgstripe:"

// indexedRefs are the reference columns users join on. Besides these,
// created is indexed.
var indexedRefs = []string{"customer", "subscription", "invoice", "price", "product", "charge", "payment_intent"}

// Ident quotes an identifier (Stripe's fields include reserved words such as
// object, type, default, order, end, user).
func Ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// QualifiedName is stripe."name".
func (t *Table) QualifiedName() string { return pgx.Identifier{DataSchema, t.Name}.Sanitize() }

// CreateTableSQL is the DDL creating t (table, comment, indexes and
// LocalWriteGuardTrigger), one statement per line-terminated ";".
func (t *Table) CreateTableSQL() string {
	var b strings.Builder
	isKey := map[string]bool{}
	for _, k := range t.Key {
		isKey[k] = true
	}
	fmt.Fprintf(&b, "CREATE TABLE %s (\n", t.QualifiedName())
	for _, c := range t.Columns {
		fmt.Fprintf(&b, "    %s %s", Ident(c.Name), c.PGType)
		if isKey[c.Name] {
			b.WriteString(" NOT NULL")
		}
		if d := t.SetByStripeDefault(c.Name); d != "" {
			b.WriteString(" DEFAULT " + d)
		}
		b.WriteString(",\n")
	}
	for _, m := range []struct{ name, typ string }{{ColRaw, "jsonb"}, {ColSyncedAt, "timestamptz"}, {ColAsOf, "timestamptz"}} {
		fmt.Fprintf(&b, "    %s %s NOT NULL DEFAULT %s,\n", Ident(m.name), m.typ, t.SetByStripeDefault(m.name))
	}
	fmt.Fprintf(&b, "    %s jsonb,\n", Ident(ColParams))
	keys := make([]string, len(t.Key))
	for i, k := range t.Key {
		keys[i] = Ident(k)
	}
	fmt.Fprintf(&b, "    PRIMARY KEY (%s)\n);\n", strings.Join(keys, ", "))
	fmt.Fprintf(&b, "COMMENT ON TABLE %s IS %s;\n", t.QualifiedName(), quoteLiteral(t.comment()))
	for _, ix := range t.Indexes() {
		b.WriteString(ix.SQL)
		b.WriteString(";\n")
	}
	b.WriteString(t.GuardSQL())
	b.WriteString(";\n")
	return b.String()
}

// LocalWriteSetting is the session setting that lets a write to stripe.*
// past LocalWriteGuardTrigger: pgstripe's own connections set it on
// (config.OwnSession), and so may an operator who changes the local copy
// on purpose. Unset, or anything but on, true, yes or 1, refuses.
const LocalWriteSetting = "pgstripe.local_write"

// LocalWriteGuardTrigger is the statement-level trigger on every stripe
// table, BEFORE INSERT, UPDATE, DELETE and TRUNCATE (so COPY FROM, MERGE
// and writes through views and rules too), that raises
// feature_not_supported (0A000) unless LocalWriteSetting is on. Such a
// write reached Postgres without the proxy's write-through (a direct
// connection; a function, DO block or trigger, even one called through
// the proxy, which passes it on unparsed) and would change the local copy
// only: Stripe would never hear of it, and sync rewrites the row only when
// the object next changes in Stripe (never, for a row Stripe doesn't
// have). 0A000 rather than 42501, as for SetByStripeFunc: no GRANT fixes
// it. Statement-level, so a write pays one call of the function per
// statement and event (an upsert's INSERT … ON CONFLICT fires INSERT's
// and UPDATE's), whatever its rows.
const LocalWriteGuardTrigger = "_pgstripe_refuse_local_write"

// LocalWriteGuardFunc is the function of LocalWriteGuardTrigger (created
// by migration 8). It lives in schema stripe for the same reason as
// SetByStripeFunc.
const LocalWriteGuardFunc = DataSchema + "._refuse_local_write"

// GuardSQL creates LocalWriteGuardTrigger on t.
func (t *Table) GuardSQL() string {
	return fmt.Sprintf("CREATE TRIGGER %s BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()",
		Ident(LocalWriteGuardTrigger), t.QualifiedName(), LocalWriteGuardFunc)
}

// SetByStripeFunc is the function the defaults of the columns Stripe and
// sync fill (SetByStripeColumns) call. It raises feature_not_supported
// (0A000) whenever Postgres evaluates it. The defaults exist for tools that
// generate models from the schema (Prisma, kysely-codegen, drizzle-kit,
// sequelize-auto): a NOT NULL column without a default is one they demand
// a value for on create, yet through the proxy Stripe assigns the id and
// sync fills the rest. Nothing of pgstripe's evaluates them: store.Upsert
// gives every one of these columns, and write-through turns DEFAULT into
// "not given" and never runs the client's INSERT. Only an INSERT made on a
// direct connection to Postgres, which Stripe would never hear of, reaches
// the function, and it gets a message naming the proxy instead of a NOT
// NULL violation. It lives in schema stripe, beside the tables whose
// defaults call it, so that a dump of that schema alone (pg_dump -n
// stripe) restores.
const SetByStripeFunc = DataSchema + "._set_by_stripe"

// SetByStripeColumns are the columns whose default is SetByStripeFunc: the
// object id (when it is part of the key; upcoming_invoices has none) and
// sync's own metadata.
func (t *Table) SetByStripeColumns() []string {
	var out []string
	for _, k := range t.Key {
		if k == "id" {
			out = append(out, k)
		}
	}
	return append(out, ColRaw, ColSyncedAt, ColAsOf)
}

// SetByStripeDefault is the default expression of column col, or "" when
// col is not one of SetByStripeColumns. The function is polymorphic: the
// typed NULL gives it the column's type, so no cast appears in the default
// that introspection tools read.
func (t *Table) SetByStripeDefault(col string) string {
	var typ string
	switch col {
	case ColRaw:
		typ = "jsonb"
	case ColSyncedAt, ColAsOf:
		typ = "timestamptz"
	case "id":
		for _, k := range t.Key {
			if k == "id" {
				typ = "text"
			}
		}
	}
	if typ == "" {
		return ""
	}
	return fmt.Sprintf("%s(%s, NULL::%s)", SetByStripeFunc, quoteLiteral(t.Name), typ)
}

func (t *Table) comment() string {
	return fmt.Sprintf("%s Stripe %s objects (API %s); managed by pgstripe, do not edit", commentPrefix, t.Object, APIVersion)
}

// Index is a secondary index pgstripe keeps on a table.
type Index struct {
	Name string // unquoted, in schema stripe
	SQL  string // CREATE INDEX IF NOT EXISTS …
}

// Indexes are the indexes on the reference columns users join on and on
// created. A reference stored as an embedded object (subscription_items.price
// is the whole price) gets an expression index on its id so joins on
// price->>'id' are indexed too.
func (t *Table) Indexes() []Index {
	var out []Index
	cols := append(append([]string(nil), indexedRefs...), "created")
	for _, name := range cols {
		c, ok := t.Column(name)
		if !ok || (len(t.Key) > 0 && t.Key[0] == name) {
			continue // the primary key already leads with it
		}
		ix := Index{Name: t.Name + "_" + name + "_idx"}
		switch c.Kind {
		case KindJSON:
			ix.SQL = fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s ((%s ->> 'id'))", Ident(ix.Name), t.QualifiedName(), Ident(name))
		default:
			ix.SQL = fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", Ident(ix.Name), t.QualifiedName(), Ident(name))
		}
		out = append(out, ix)
	}
	return out
}

// DDL returns the CREATE statements of every table, as in the golden files.
func DDL() string {
	var b strings.Builder
	for i, t := range tables {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(t.CreateTableSQL())
	}
	return b.String()
}

// ExtractSQL is the SQL expression computing column c from the jsonb
// expression raw (the whole object). Migrate uses it to fill columns added by
// an upgrade; store.Upsert uses ConvertSQL on the field values, the same
// mapping. A value of an unexpected JSON type yields NULL, never an error.
func (c Column) ExtractSQL(raw string) string {
	return c.ConvertSQL(fmt.Sprintf("(%s -> %s)", raw, quoteLiteral(c.Field)))
}

// ConvertSQL is the SQL expression turning the jsonb expression j (the
// field's value; it is evaluated several times, so make it a column
// reference or a cheap lookup) into the column's value.
func (c Column) ConvertSQL(j string) string {
	switch c.Kind {
	case KindText:
		return fmt.Sprintf("CASE WHEN jsonb_typeof(%[1]s) = 'string' THEN %[1]s #>> '{}' END", j)
	case KindExpandable:
		return fmt.Sprintf("CASE jsonb_typeof(%[1]s) WHEN 'string' THEN %[1]s #>> '{}' WHEN 'object' THEN %[1]s ->> 'id' END", j)
	case KindInteger:
		// Only integral values that fit: anything else would fail the cast.
		return fmt.Sprintf("CASE WHEN jsonb_typeof(%[1]s) = 'number' AND %[1]s::numeric = trunc(%[1]s::numeric) AND abs(%[1]s::numeric) <= 9223372036854775807 THEN %[1]s::numeric::bigint END", j)
	case KindNumber:
		return fmt.Sprintf("CASE WHEN jsonb_typeof(%[1]s) = 'number' THEN %[1]s::numeric END", j)
	case KindBoolean:
		return fmt.Sprintf("CASE WHEN jsonb_typeof(%[1]s) = 'boolean' THEN %[1]s::boolean END", j)
	case KindTimestamp:
		// Beyond ±1e11 s (year 5138) to_timestamp would fail.
		return fmt.Sprintf("CASE WHEN jsonb_typeof(%[1]s) = 'number' AND abs(%[1]s::numeric) < 100000000000 THEN to_timestamp(%[1]s::numeric::double precision) END", j)
	default:
		return fmt.Sprintf("NULLIF(%s, 'null'::jsonb)", j)
	}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
