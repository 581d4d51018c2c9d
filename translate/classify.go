package translate

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pganalyze/pg_query_go/v5/parser"

	"github.com/pgstripe/pgstripe/schema"
)

// Action says what the proxy does with a statement.
type Action uint8

const (
	// Pass: not a write to a stripe table; forward it unchanged.
	Pass Action = iota
	// Write: a write to a stripe table, or one that may be (an unqualified
	// table name that search_path resolves at execution time). Hand it to
	// writethrough with Class.Stmt.
	Write
	// Reject: refuse with Class.Err; forward nothing, call nothing.
	Reject
)

func (a Action) String() string {
	switch a {
	case Write:
		return "write"
	case Reject:
		return "reject"
	}
	return "pass"
}

// Class is the classification of one statement text. It depends on the
// text alone (never on a session), so the proxy may cache it by text.
type Class struct {
	Action Action
	Err    *Error     // Reject
	Stmt   *Statement // Write; immutable and shared between sessions
}

// StripeSchema is the schema whose tables write through to Stripe.
const StripeSchema = schema.DataSchema

// Classify decides what to do with sql (one Query message or one Parse).
// It is cheap for statements that can't write: a keyword pre-check skips
// the parser for plain reads. A text that reads differently with
// standard_conforming_strings off is a Write whose Statement holds both
// readings (Statement.Strings).
func Classify(sql string) Class {
	if !mayWrite(sql) {
		return Class{}
	}
	c := classify(sql)
	if strings.IndexByte(sql, '\\') >= 0 && namesStripeTable(sql) {
		return byStrings(sql, c)
	}
	return c
}

// classify is Classify of the text as the parser here reads it
// (standard_conforming_strings on).
func classify(sql string) (class Class) {
	if !mayWrite(sql) {
		return Class{}
	}
	defer func() {
		// A planning bug must cost one statement, never the proxy.
		if r := recover(); r != nil {
			class = Class{Action: Reject, Err: errorf("XX000", "pgstripe: internal error planning this statement: %v", r)}
		}
	}()
	tree, err := pg_query.Parse(sql)
	if err != nil {
		if !utf8.ValidString(sql) && namesStripeTable(sql) {
			// The parse tree can't carry text that is not UTF-8, but
			// Postgres reads it in the session's client_encoding (LATIN1,
			// WIN1252 …), where it may well be a write to a stripe table:
			// passing it through would change the local copy only.
			return Class{Action: Write, Stmt: &Statement{SQL: sql, Transcode: true}}
		}
		if tooDeep(err) && namesStripeTable(sql) {
			// Postgres may well run what the parser here gave up on (Go's
			// protobuf decoding stops at 10,000 levels of nesting, well
			// before Postgres's own parser or stack does): passed on, a
			// write to a stripe table would change the local copy only.
			return Class{Action: Reject, Err: errorf(CodeStatementTooComplex, "statement is too deeply nested for pgstripe to read: %v", err).
				withHint("simplify the expression, or send the deep part as a parameter")}
		}
		// Postgres reports syntax errors better than we could.
		return Class{}
	}
	var found []*Statement
	var rejected *Error
	for _, raw := range tree.Stmts {
		st, rej := classifyStmt(sql, raw.Stmt)
		if rej != nil && rejected == nil {
			rejected = rej
		}
		if st != nil {
			found = append(found, st)
		}
	}
	if rejected != nil {
		return Class{Action: Reject, Err: rejected}
	}
	if len(found) == 0 {
		return Class{}
	}
	if len(tree.Stmts) > 1 {
		// Each write is its own set of Stripe calls with its own reply; in
		// a multi-statement Query the replies and the implicit transaction
		// can't be kept straight. An unqualified name may still turn out
		// not to be ours, so that case is decided at execution.
		err := errorf(CodeFeatureNotSupported, "a write to a stripe table must be sent as a statement of its own, not in a multi-statement query").
			withHint("send each INSERT/UPDATE/DELETE on stripe.* as a separate query")
		if st := definite(found); st != nil {
			return Class{Action: Reject, Err: err}
		}
		return Class{Action: Write, Stmt: &Statement{SQL: sql, Resolve: resolveNames(found), Prepared: preparedNames(found), Deferred: err, Unrelayable: true}}
	}
	return Class{Action: Write, Stmt: found[0]}
}

// tooDeep reports a parse failure that is about the parser's own limits,
// not the text: any failure outside the SQL parser proper (the protobuf
// decoding of its tree), or a stack depth limit, whose size here need not
// be the server's.
func tooDeep(err error) bool {
	var pe *parser.Error
	if !errors.As(err, &pe) {
		return true
	}
	return strings.Contains(pe.Message, "stack depth limit exceeded")
}

// PreparedText returns, of the text Postgres records for the prepared
// statement name (pg_prepared_statements.statement), the statement that
// prepared it: SQL PREPARE records the client's whole Query string, whose
// other statements are not what EXECUTE runs.
func PreparedText(text, name string) string {
	if !strings.Contains(text, ";") {
		return text
	}
	tree, err := pg_query.Parse(text)
	if err != nil || len(tree.Stmts) < 2 {
		return text
	}
	for _, raw := range tree.Stmts {
		p, ok := raw.Stmt.GetNode().(*pg_query.Node_PrepareStmt)
		if !ok || p.PrepareStmt.Name != name {
			continue
		}
		start, end := int(raw.StmtLocation), len(text)
		if raw.StmtLen > 0 {
			end = start + int(raw.StmtLen)
		}
		if 0 <= start && start <= end && end <= len(text) {
			return text[start:end]
		}
	}
	return text
}

func definite(sts []*Statement) *Statement {
	for _, s := range sts {
		if s.definite() {
			return s
		}
	}
	return nil
}

// definite: the statement writes a stripe table whatever the session.
func (st *Statement) definite() bool { return len(st.Resolve) == 0 && len(st.Prepared) == 0 }

func preparedNames(sts []*Statement) []string {
	var out []string
	for _, s := range sts {
		out = append(out, s.Prepared...)
	}
	return out
}

func resolveNames(sts []*Statement) []string {
	var out []string
	for _, s := range sts {
		out = append(out, s.Resolve...)
	}
	return out
}

// mayWrite is the pre-check: without one of these keywords (any case) a
// statement can't write a table.
func mayWrite(sql string) bool {
	for i := 0; i < len(sql); i++ {
		switch sql[i] | 0x20 {
		case 'i':
			if hasWordAt(sql, i, "insert") {
				return true
			}
		case 'u':
			if hasWordAt(sql, i, "update") {
				return true
			}
		case 'd':
			if hasWordAt(sql, i, "delete") {
				return true
			}
		case 'm':
			if hasWordAt(sql, i, "merge") {
				return true
			}
		case 'e':
			if hasWordAt(sql, i, "execute") {
				return true
			}
		case 't':
			if hasWordAt(sql, i, "truncate") {
				return true
			}
		case 'c':
			if hasWordAt(sql, i, "copy") {
				return true
			}
		}
	}
	return false
}

func hasWordAt(s string, i int, w string) bool {
	if len(s)-i < len(w) {
		return false
	}
	for j := 0; j < len(w); j++ {
		if s[i+j]|0x20 != w[j] {
			return false
		}
	}
	return true
}

// target tells whether rv names a stripe table: definitely (schema-
// qualified), maybe (unqualified name of a stripe table), or not.
type target uint8

const (
	notStripe target = iota
	maybeStripe
	isStripe
)

func targetOf(rv *pg_query.RangeVar) (target, *schema.Table) {
	if rv == nil {
		return notStripe, nil
	}
	t, known := schema.Lookup(rv.Relname)
	switch rv.Schemaname {
	case StripeSchema:
		if !known {
			// Not one of ours (a user's own table in schema stripe, or
			// nothing): Postgres decides.
			return notStripe, nil
		}
		return isStripe, t
	case "":
		if known {
			return maybeStripe, t
		}
	}
	return notStripe, nil
}

// quotedName is rv's name as to_regclass takes it.
func quotedName(rv *pg_query.RangeVar) string { return pgx.Identifier{rv.Relname}.Sanitize() }

// NotUTF8 is the answer to a write to a stripe table whose text is not
// valid UTF-8: its literals would reach Stripe as the session's
// client_encoding spells them.
func NotUTF8(encoding string) *Error {
	return errorf(CodeFeatureNotSupported, "pgstripe: the text of a write to a stripe table must be UTF-8, and this session's client_encoding is %s", encoding).
		withHint("SET client_encoding = 'UTF8' for the write, or send non-ASCII values as parameters")
}

// verdict wraps err as a rejection, deferred to execution when the target is
// only maybe a stripe table.
func verdict(sql string, tg target, rv *pg_query.RangeVar, err *Error) (*Statement, *Error) {
	if tg == isStripe {
		return nil, err
	}
	return &Statement{SQL: sql, Resolve: []string{quotedName(rv)}, Deferred: err}, nil
}

// classifyStmt returns a write statement, a rejection, or neither.
func classifyStmt(sql string, n *pg_query.Node) (*Statement, *Error) {
	switch s := n.GetNode().(type) {
	case *pg_query.Node_InsertStmt:
		if st, err := writableCTE(sql, s.InsertStmt.WithClause); st != nil || err != nil {
			return st, err
		}
		return planWrite(sql, n)
	case *pg_query.Node_UpdateStmt:
		if st, err := writableCTE(sql, s.UpdateStmt.WithClause); st != nil || err != nil {
			return st, err
		}
		return planWrite(sql, n)
	case *pg_query.Node_DeleteStmt:
		if st, err := writableCTE(sql, s.DeleteStmt.WithClause); st != nil || err != nil {
			return st, err
		}
		return planWrite(sql, n)
	case *pg_query.Node_SelectStmt:
		return writableCTE(sql, s.SelectStmt.WithClause)
	case *pg_query.Node_MergeStmt:
		if st, err := writableCTE(sql, s.MergeStmt.WithClause); st != nil || err != nil {
			return st, err
		}
		tg, t := targetOf(s.MergeStmt.Relation)
		if tg == notStripe {
			return nil, nil
		}
		return verdict(sql, tg, s.MergeStmt.Relation, errorf(CodeFeatureNotSupported,
			"MERGE into stripe.%s is not supported", t.Name).withHint("use INSERT, UPDATE or DELETE, one statement at a time"))
	case *pg_query.Node_TruncateStmt:
		for _, r := range s.TruncateStmt.Relations {
			rv := r.GetRangeVar()
			if tg, t := targetOf(rv); tg != notStripe {
				return verdict(sql, tg, rv, errorf(CodeFeatureNotSupported,
					"TRUNCATE of stripe.%s is not supported: it would not delete anything in Stripe", t.Name).
					withHint("use DELETE FROM stripe.%s WHERE … (at most %d rows per statement)", t.Name, MaxRows))
			}
		}
	case *pg_query.Node_CopyStmt:
		if !s.CopyStmt.IsFrom {
			if s.CopyStmt.Query == nil {
				return nil, nil
			}
			// COPY (INSERT/UPDATE/DELETE … RETURNING …) TO runs the write:
			// passed through, it would change the local table only.
			st, err := classifyStmt(sql, s.CopyStmt.Query)
			st, err = wrapInner(sql, st, err, "COPY (…) TO of a write to a stripe table is not supported: it would run the write locally only")
			if st != nil {
				st.Unrelayable = true // COPY can't be relayed as a query
			}
			return st, err
		}
		if tg, t := targetOf(s.CopyStmt.Relation); tg != notStripe {
			st, err := verdict(sql, tg, s.CopyStmt.Relation, errorf(CodeFeatureNotSupported,
				"COPY FROM into stripe.%s is not supported", t.Name).
				withHint("use INSERT INTO stripe.%s (…) VALUES (…), at most %d rows per statement", t.Name, MaxRows))
			if st != nil {
				st.Unrelayable = true
			}
			return st, err
		}
	case *pg_query.Node_ExplainStmt:
		if !explainAnalyze(s.ExplainStmt) {
			return nil, nil
		}
		st, err := classifyStmt(sql, s.ExplainStmt.Query)
		return wrapInner(sql, st, err, "EXPLAIN ANALYZE of a write to a stripe table is not supported: it would run the write locally only")
	case *pg_query.Node_CreateTableAsStmt:
		// CREATE TABLE … AS WITH d AS (DELETE FROM stripe.…) SELECT …
		// runs the CTE's write, which would change the local table only.
		return classifyStmt(sql, s.CreateTableAsStmt.Query)
	case *pg_query.Node_ExecuteStmt:
		// Which statement runs is the session's to say (see
		// Statement.Prepared); the client's message goes upstream as sent
		// when it is not a write to a stripe table.
		name := s.ExecuteStmt.Name
		return &Statement{SQL: sql, Prepared: []string{name}, Unrelayable: true,
			Deferred: errorf(CodeFeatureNotSupported, "EXECUTE of prepared statement %q, a write to a stripe table, is not supported: it would run the write locally only", name).
				withHint("execute it through the extended query protocol (Bind/Execute), as drivers do")}, nil
	case *pg_query.Node_PrepareStmt:
		st, err := classifyStmt(sql, s.PrepareStmt.Query)
		return wrapInner(sql, st, err, "PREPARE of a write to a stripe table is not supported; use the extended query protocol (Parse/Bind/Execute) instead")
	}
	return nil, nil
}

// wrapInner turns a write found inside another statement into a rejection.
func wrapInner(sql string, st *Statement, err *Error, msg string) (*Statement, *Error) {
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, nil
	}
	e := errorf(CodeFeatureNotSupported, "%s", msg)
	if st.definite() {
		return nil, e
	}
	return &Statement{SQL: sql, Resolve: st.Resolve, Prepared: st.Prepared, Deferred: e, Unrelayable: st.Unrelayable}, nil
}

func explainAnalyze(e *pg_query.ExplainStmt) bool {
	for _, o := range e.Options {
		d := o.GetDefElem()
		if d == nil || d.Defname != "analyze" {
			continue
		}
		if d.Arg == nil {
			return true
		}
		if b := d.Arg.GetBoolean(); b != nil {
			return b.Boolval
		}
		if s := d.Arg.GetString_(); s != nil {
			return s.Sval != "false" && s.Sval != "off" && s.Sval != "0"
		}
		return true
	}
	return false
}

// writableCTE rejects a WITH clause holding a write to a stripe table:
// Stripe calls can't take part in a query plan. (A write to a stripe table
// may carry a read-only WITH clause: planWith.)
func writableCTE(sql string, w *pg_query.WithClause) (*Statement, *Error) {
	if w == nil {
		return nil, nil
	}
	for _, c := range w.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		rv := dmlTarget(cte.Ctequery)
		if rv == nil {
			continue
		}
		if tg, t := targetOf(rv); tg != notStripe {
			return verdict(sql, tg, rv, errorf(CodeFeatureNotSupported,
				"a WITH query that writes stripe.%s is not supported", t.Name).
				withHint("run the write to stripe.%s as a statement of its own", t.Name))
		}
	}
	return nil, nil
}

func dmlTarget(n *pg_query.Node) *pg_query.RangeVar {
	switch s := n.GetNode().(type) {
	case *pg_query.Node_InsertStmt:
		return s.InsertStmt.Relation
	case *pg_query.Node_UpdateStmt:
		return s.UpdateStmt.Relation
	case *pg_query.Node_DeleteStmt:
		return s.DeleteStmt.Relation
	case *pg_query.Node_MergeStmt:
		return s.MergeStmt.Relation
	}
	return nil
}

// namesStripeTable reports whether sql may name a table of schema stripe:
// "stripe" or a table's name appears in it, ASCII case folded (unquoted
// names fold so in Postgres; the names are ASCII, and every encoding
// Postgres takes from clients keeps ASCII bytes as they are, or uses them
// only as second bytes, which can only add matches). Text that names none
// cannot write to one, and passes through as it is, also in a failed
// transaction, where Postgres could not convert it for a closer look.
// A Unicode-escape identifier (U&"\0063ustomers") can spell any name
// without it appearing, so text with "U&" counts as naming one.
func namesStripeTable(sql string) bool {
	lower := strings.ToLower(sql) // ASCII letters fold; invalid bytes become U+FFFD
	if strings.Contains(lower, StripeSchema) || strings.Contains(lower, "u&") {
		return true
	}
	for _, n := range schema.Names() {
		if strings.Contains(lower, n) {
			return true
		}
	}
	return false
}
