package translate

import (
	"fmt"
	"sort"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgstripe/pgstripe/schema"
)

// Op is the kind of write.
type Op uint8

const (
	Insert Op = iota + 1
	Update
	Delete
)

func (o Op) String() string {
	switch o {
	case Insert:
		return "INSERT"
	case Update:
		return "UPDATE"
	case Delete:
		return "DELETE"
	}
	return "?"
}

// Statement is the plan of one write to a stripe table: everything that
// can be decided from the SQL text alone. Postgres evaluates the values
// (Eval, on the client's own connection, with the client's parameters);
// Build turns the evaluated rows into Stripe calls.
type Statement struct {
	SQL string

	// Resolve lists unqualified table names (quoted, as to_regclass takes
	// them) that must resolve to schema stripe with the client's
	// search_path for this to be a stripe write; if none does, the
	// statement passes through untouched. Empty: schema-qualified.
	Resolve []string
	// Prepared lists prepared statements (by name) that the statement runs
	// (SQL EXECUTE): it is ours if any of them is, which only the session
	// knows. A statement prepared through the protocol (Parse) is
	// intercepted at its protocol Execute, but SQL EXECUTE of it would run
	// it in Postgres alone. Set with Deferred.
	Prepared []string
	// Deferred, when set, is the answer once Resolve or Prepared says the
	// statement is ours: a rejection that had to wait for the session. Op
	// and the rest are then unset.
	Deferred *Error
	// Unrelayable: when Resolve says the statement is not ours, it cannot
	// be run through the extended protocol on the proxy's behalf (a
	// multi-statement Query, COPY FROM), so a proxy should pass it through
	// unseen rather than intercept it.
	Unrelayable bool
	// Transcode: the text is not valid UTF-8, which the parser here needs
	// (the client's client_encoding is another one), so whether it writes
	// to a stripe table could not be told. Postgres can convert the text:
	// see Classify. Everything else is unset.
	Transcode bool
	// Strings: the text has a backslash in an ordinary string literal, so
	// what it means depends on the session's standard_conforming_strings,
	// which only the session knows: Strings.Pick gives the classification
	// to use. Everything else is unset.
	Strings *Strings

	Op    Op
	Table *schema.Table
	Ops   *Ops

	// NParams is the highest $n the statement references.
	NParams int
	// Rows is the number of VALUES rows of an INSERT (UPDATE and DELETE
	// learn theirs from Eval).
	Rows int
	// Fields are the columns the statement assigns, in Eval's order.
	Fields []Field

	// Eval computes the values; it is the one evaluation of the
	// statement's VALUES, WHERE and SET (and of the WITH queries they
	// read), as Postgres evaluates them once. INSERT: one row per VALUES
	// row, one column per field (the value as JSON text, NULL for NULL).
	// UPDATE: the id, the row's version (RowCalls.Version), the parent's
	// id as JSON where the update path names it (invoice lines), then per
	// field the new value and the current value (JSON text). DELETE: the id,
	// then, with RETURNING, its target list over the row as it is before
	// the delete (Eval.Returns), so that RETURNING shows what WHERE and
	// the WITH queries picked in that same evaluation. UPDATE and DELETE
	// select at most MaxRows+1 rows. Empty SQL: one row without columns
	// (INSERT … DEFAULT VALUES).
	Eval Query
	// Recheck (UPDATE only) is Eval restricted to the ids in $IDs: what
	// Postgres does (EvalPlanQual) when a row it was about to update was
	// changed by another transaction in the meantime: WHERE and SET are
	// evaluated again over the new version of that row only.
	Recheck Query
	// Returning answers RETURNING from the local table once the writes are
	// applied; nil without RETURNING.
	Returning *Query
	// ReturningRows is the same target list over rows given as data: the
	// jsonb array of the applied rows in $IDs. It answers RETURNING on the
	// client's connection when the client's snapshot (REPEATABLE READ)
	// predates the apply, so that the client's expressions never run on
	// pgstripe's own, more privileged, connection.
	ReturningRows *Query
	// ReturningColumns are the table's columns RETURNING reads, and
	// ReturningAll says it reads all of them (*, a whole-row reference):
	// the client's role needs SELECT on each, which Postgres checks when
	// the statement starts, before it changes anything, while Returning
	// runs after the Stripe calls. ReturningPlain: the list is nothing
	// but such column references and constants, so they are all it needs;
	// otherwise (functions, operators, subqueries that may read other
	// tables) only Postgres can tell, by starting Returning over no rows.
	ReturningColumns []string
	ReturningAll     bool
	ReturningPlain   bool

	// Once lists the WITH queries (by name, in WITH order) that RETURNING
	// of an INSERT or UPDATE reads, directly or through other WITH
	// queries. RETURNING runs after the calls, in a query of its own: so
	// that it sees what Eval saw, as Postgres evaluates a WITH query once
	// per statement, these are evaluated first, alone (OnceQuery), and
	// every query of the statement then reads their rows as data
	// (WithOnce).
	Once []string

	// with is the statement's read-only WITH clause: every query above
	// carries it, since any of them may refer to its names.
	with *pg_query.WithClause
}

// Query is SQL to run on the client's connection with the client's
// parameters ($1…$NParams).
type Query struct {
	SQL string
	// Uses[i] says whether $i+1 appears in SQL: a parameter the query does
	// not reference needs an explicit type when the client left it to
	// Postgres to infer.
	Uses []bool
	// IDs is the $n (> NParams) that carries the object ids as text[]
	// (Returning, Recheck; ReturningRows: the rows themselves, a jsonb
	// array).
	IDs int
	// Returns: the columns after the first Lead ones are the statement's
	// RETURNING target list, to be sent in the client's result formats.
	Returns bool
	Lead    int

	// sel is the query's tree, kept when Once is set (WithOnce deparses it
	// again with other WITH queries).
	sel *pg_query.SelectStmt
}

// Role is what a field does.
type Role uint8

const (
	// RoleParam: sent to Stripe as the parameter of the same name.
	RoleParam Role = iota + 1
	// RoleReadOnly: not a Stripe parameter of this operation. NULL or
	// DEFAULT (or, in UPDATE, the current value) is ignored, so ORMs that
	// list every column work; anything else is an error before any call.
	RoleReadOnly
	// RoleStatus: a status transition with an endpoint of its own.
	RoleStatus
	// RoleAttach: attach (a value) or detach (NULL) through endpoints of
	// their own.
	RoleAttach
	// RoleExtra: the _params column, a jsonb object of further Stripe
	// parameters that have no column (payment_behavior, proration_behavior,
	// cancellation_reason, …). Never stored: it reads as NULL.
	RoleExtra
)

// ParamsColumn is the optional jsonb column that carries Stripe parameters
// without a column of their own.
const ParamsColumn = "_params"

func (r Role) String() string {
	switch r {
	case RoleParam:
		return "param"
	case RoleReadOnly:
		return "read-only"
	case RoleStatus:
		return "status"
	case RoleAttach:
		return "attach"
	case RoleExtra:
		return "extra params"
	}
	return "?"
}

// Field is one assigned column.
type Field struct {
	Column string
	Kind   schema.Kind
	PGType string
	Role   Role
	Param  schema.Param // RoleParam
	// Owner: sent as owner[type]=Column, owner[Column]=value (Ops.OwnerColumn).
	Owner bool
}

// planWrite builds the plan of an INSERT, UPDATE or DELETE, or returns
// nil, nil when its target is not a stripe table.
func planWrite(sql string, n *pg_query.Node) (*Statement, *Error) {
	var rv *pg_query.RangeVar
	switch s := n.GetNode().(type) {
	case *pg_query.Node_InsertStmt:
		rv = s.InsertStmt.Relation
	case *pg_query.Node_UpdateStmt:
		rv = s.UpdateStmt.Relation
	case *pg_query.Node_DeleteStmt:
		rv = s.DeleteStmt.Relation
	}
	tg, t := targetOf(rv)
	if tg == notStripe {
		return nil, nil
	}
	st, err := buildPlan(sql, n, rv, t)
	if err != nil {
		return verdict(sql, tg, rv, err)
	}
	if tg == maybeStripe {
		st.Resolve = []string{quotedName(rv)}
	}
	return st, nil
}

func buildPlan(sql string, n *pg_query.Node, rv *pg_query.RangeVar, t *schema.Table) (*Statement, *Error) {
	o := OpsFor(t.Name)
	if o == nil {
		return nil, readOnlyTable(t.Name)
	}
	st := &Statement{SQL: sql, Table: t, Ops: o, NParams: maxParam(n)}
	if err := st.planWith(n); err != nil {
		return nil, err
	}
	pinTarget(n)
	var err *Error
	switch s := n.GetNode().(type) {
	case *pg_query.Node_InsertStmt:
		err = st.planInsert(s.InsertStmt)
	case *pg_query.Node_UpdateStmt:
		err = st.planUpdate(s.UpdateStmt)
	case *pg_query.Node_DeleteStmt:
		err = st.planDelete(s.DeleteStmt)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// pinTarget qualifies an unqualified target: the statement is ours only
// once Resolve has found it in schema stripe, and then it is
// stripe.<name> in every query run for it. Each of those is parsed anew,
// and the statement's own expressions may change search_path between them
// (set_config), where Postgres resolves the target once: the RETURNING run
// over the table, which checks the role's column privileges before the
// applied rows (read on pgstripe's own connection) reach the target list
// as data, must not read some other table of that name. Without an alias,
// references to it read as they do in the statement (customers.email,
// stripe.customers.email).
func pinTarget(n *pg_query.Node) {
	var rv **pg_query.RangeVar
	switch s := n.GetNode().(type) {
	case *pg_query.Node_InsertStmt:
		rv = &s.InsertStmt.Relation
	case *pg_query.Node_UpdateStmt:
		rv = &s.UpdateStmt.Relation
	case *pg_query.Node_DeleteStmt:
		rv = &s.DeleteStmt.Relation
	default:
		return
	}
	if r := *rv; r != nil && r.Schemaname == "" {
		c := proto.Clone(r).(*pg_query.RangeVar)
		c.Schemaname = StripeSchema
		*rv = c
	}
}

func (st *Statement) planInsert(s *pg_query.InsertStmt) *Error {
	st.Op = Insert
	t := st.Table
	if !st.Ops.Create {
		msg := st.Ops.NoCreate
		if msg == "" {
			msg = st.Ops.possible(t.Name)
		}
		return errorf(CodeFeatureNotSupported, "Stripe cannot create %s through pgstripe", t.Name).withHint("%s", msg)
	}
	if s.OnConflictClause != nil {
		return errorf(CodeFeatureNotSupported, "INSERT … ON CONFLICT into stripe.%s is not supported: Stripe has no upsert", t.Name).
			withHint("INSERT new objects and UPDATE existing ones")
	}
	var rows [][]*pg_query.Node
	if s.SelectStmt == nil { // DEFAULT VALUES
		if len(s.Cols) > 0 {
			return errorf(CodeSyntaxError, "DEFAULT VALUES with a column list")
		}
		rows = [][]*pg_query.Node{nil}
	} else {
		sel := s.SelectStmt.GetSelectStmt()
		if sel == nil || len(sel.ValuesLists) == 0 || sel.WithClause != nil || len(sel.SortClause) > 0 ||
			sel.LimitCount != nil || sel.LimitOffset != nil || sel.Op != pg_query.SetOperation_SETOP_NONE {
			return errorf(CodeFeatureNotSupported, "INSERT … SELECT into stripe.%s is not supported", t.Name).
				withHint("use INSERT INTO stripe.%s (…) VALUES (…), (…) with at most %d rows", t.Name, MaxRows)
		}
		if len(s.Cols) == 0 {
			return errorf(CodeFeatureNotSupported, "INSERT INTO stripe.%s must name its columns", t.Name).
				withHint("INSERT INTO stripe.%s (col, …) VALUES (…)", t.Name)
		}
		for _, l := range sel.ValuesLists {
			items := l.GetList().GetItems()
			if len(items) != len(s.Cols) {
				if len(items) > len(s.Cols) {
					return errorf(CodeSyntaxError, "INSERT has more expressions than target columns")
				}
				return errorf(CodeSyntaxError, "INSERT has more target columns than expressions")
			}
			rows = append(rows, items)
		}
	}
	if len(rows) > MaxRows {
		return tooMany(len(rows))
	}
	st.Rows = len(rows)
	seen := map[string]bool{}
	for _, c := range s.Cols {
		rt := c.GetResTarget()
		if len(rt.Indirection) > 0 {
			return errorf(CodeFeatureNotSupported, "INSERT into a part of column %q of stripe.%s is not supported", rt.Name, t.Name).
				withHint("give the whole value, e.g. a jsonb object")
		}
		if seen[rt.Name] {
			return errorf(CodeDuplicateColumn, "column %q specified more than once", rt.Name)
		}
		seen[rt.Name] = true
		f, err := st.field(rt.Name, t.CreateParams, false)
		if err != nil {
			return err
		}
		st.Fields = append(st.Fields, f)
	}
	if o := st.Ops.OwnerColumn; o != "" && seen[o] && seen["owner"] {
		return errorf(CodeDuplicateColumn, "give either %s or owner, not both", o)
	}
	for i, f := range st.Fields {
		for _, r := range rows {
			if err := staticCheck(t, f, r[i], "create"); err != nil {
				return err
			}
		}
	}
	if len(st.Fields) > 0 {
		sel := &pg_query.SelectStmt{LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT, Op: pg_query.SetOperation_SETOP_NONE}
		for _, r := range rows {
			items := make([]*pg_query.Node, len(r))
			for i, e := range r {
				items[i] = jsonOf(valueExpr(e), st.Fields[i])
			}
			sel.ValuesLists = append(sel.ValuesLists, pg_query.MakeListNode(items))
		}
		q, err := st.query(sel)
		if err != nil {
			return err
		}
		st.Eval = q
	}
	return st.returning(s.Relation, s.ReturningList)
}

func (st *Statement) planUpdate(s *pg_query.UpdateStmt) *Error {
	st.Op = Update
	t := st.Table
	o := st.Ops
	if !o.Update && o.Status == nil && o.Attach == "" {
		msg := o.NoUpdate
		if msg == "" {
			msg = o.possible(t.Name)
		}
		return errorf(CodeFeatureNotSupported, "Stripe cannot update %s", t.Name).withHint("%s", msg)
	}
	if cur := s.WhereClause.GetCurrentOfExpr(); cur != nil {
		return errorf(CodeFeatureNotSupported, "UPDATE … WHERE CURRENT OF on stripe.%s is not supported", t.Name).
			withHint("select the ids and UPDATE … WHERE id = …")
	}
	if len(s.FromClause) > 0 && len(s.ReturningList) > 0 {
		return errorf(CodeFeatureNotSupported, "UPDATE … FROM … RETURNING on stripe.%s is not supported", t.Name).
			withHint("drop RETURNING, or use a subquery in WHERE instead of FROM")
	}
	seen := map[string]bool{}
	var vals []*pg_query.Node
	for _, tn := range s.TargetList {
		rt := tn.GetResTarget()
		if len(rt.Indirection) > 0 {
			return errorf(CodeFeatureNotSupported, "assigning to a part of column %q of stripe.%s is not supported", rt.Name, t.Name).
				withHint("set the whole column, e.g. metadata = metadata || '{\"key\": \"value\"}'")
		}
		if seen[rt.Name] {
			return errorf(CodeDuplicateColumn, "multiple assignments to same column %q", rt.Name)
		}
		seen[rt.Name] = true
		v := rt.Val
		if _, ok := v.GetNode().(*pg_query.Node_SetToDefault); ok {
			// A Stripe object has no column defaults: DEFAULT leaves the
			// field as it is.
			continue
		}
		if m := v.GetMultiAssignRef(); m != nil {
			row := m.Source.GetRowExpr()
			if row == nil || int(m.Colno) > len(row.Args) {
				return errorf(CodeFeatureNotSupported, "SET (…) = (SELECT …) on stripe.%s is not supported", t.Name).
					withHint("assign each column its own expression")
			}
			v = row.Args[m.Colno-1]
		}
		f, err := st.field(rt.Name, t.UpdateParams, true)
		if err != nil {
			return err
		}
		if err := staticCheck(t, f, v, "update"); err != nil {
			return err
		}
		st.Fields = append(st.Fields, f)
		vals = append(vals, v)
	}
	ref := refName(s.Relation)
	lead := []*pg_query.Node{resTarget(colRef(ref, "id")), resTarget(versionOf(ref))}
	if st.parentInPath() {
		lead = append(lead, resTarget(funcCall("to_jsonb", colRef(ref, t.Parent.Column))))
	}
	sel := &pg_query.SelectStmt{
		TargetList:  lead,
		FromClause:  append([]*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: s.Relation}}}, s.FromClause...),
		WhereClause: s.WhereClause,
		LimitCount:  pg_query.MakeAConstIntNode(MaxRows+1, -1),
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_COUNT,
		Op:          pg_query.SetOperation_SETOP_NONE,
	}
	for i, f := range st.Fields {
		old := colRef(ref, f.Column)
		if f.Role == RoleExtra {
			// Always "changed"; and the column need not exist for the
			// simple protocol.
			old = &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Isnull: true, Location: -1}}}
		}
		sel.TargetList = append(sel.TargetList,
			resTarget(jsonOf(valueExpr(vals[i]), f)),
			resTarget(jsonOf(old, f)))
	}
	distinctIDs(sel, ref)
	q, err := st.query(sel)
	if err != nil {
		return err
	}
	st.Eval = q
	ids := int32(st.NParams + 1)
	byID := pg_query.MakeAExprNode(pg_query.A_Expr_Kind_AEXPR_OP_ANY, []*pg_query.Node{pg_query.MakeStrNode("=")},
		colRef(ref, "id"), typeCast(pg_query.MakeParamRefNode(ids, -1), "text", true), -1)
	if s.WhereClause == nil {
		sel.WhereClause = byID
	} else {
		sel.WhereClause = pg_query.MakeBoolExprNode(pg_query.BoolExprType_AND_EXPR, []*pg_query.Node{s.WhereClause, byID}, -1)
	}
	if q, err = st.query(sel); err != nil {
		return err
	}
	q.IDs = int(ids)
	st.Recheck = q
	return st.returning(s.Relation, s.ReturningList)
}

func (st *Statement) planDelete(s *pg_query.DeleteStmt) *Error {
	st.Op = Delete
	t := st.Table
	o := st.Ops
	if !o.Delete {
		msg := o.NoDelete
		if msg == "" {
			msg = o.possible(t.Name)
		}
		return errorf(CodeFeatureNotSupported, "Stripe cannot delete %s", t.Name).withHint("%s", msg)
	}
	if cur := s.WhereClause.GetCurrentOfExpr(); cur != nil {
		return errorf(CodeFeatureNotSupported, "DELETE … WHERE CURRENT OF on stripe.%s is not supported", t.Name).
			withHint("select the ids and DELETE … WHERE id = …")
	}
	if len(s.UsingClause) > 0 && len(s.ReturningList) > 0 {
		return errorf(CodeFeatureNotSupported, "DELETE … USING … RETURNING on stripe.%s is not supported", t.Name).
			withHint("drop RETURNING, or use a subquery in WHERE instead of USING")
	}
	if err := st.returning(s.Relation, s.ReturningList); err != nil {
		return err
	}
	sel := matchIDs(s.Relation, s.UsingClause, s.WhereClause)
	if len(s.ReturningList) > 0 {
		// No USING here (refused above with RETURNING): the target list
		// means over the row what it means in the statement.
		sel.TargetList = append(sel.TargetList, s.ReturningList...)
	}
	q, err := st.query(sel)
	if err != nil {
		return err
	}
	if len(s.ReturningList) > 0 {
		q.Returns, q.Lead = true, 1
	}
	st.Eval = q
	return nil
}

// matchIDs selects the ids of the rows of rel (joined with from) that
// where matches, at most MaxRows+1: the objects an UPDATE or DELETE
// changes, with WHERE alone.
func matchIDs(rel *pg_query.RangeVar, from []*pg_query.Node, where *pg_query.Node) *pg_query.SelectStmt {
	ref := refName(rel)
	sel := &pg_query.SelectStmt{
		TargetList:  []*pg_query.Node{resTarget(colRef(ref, "id"))},
		FromClause:  append([]*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: rel}}}, from...),
		WhereClause: where,
		LimitCount:  pg_query.MakeAConstIntNode(MaxRows+1, -1),
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_COUNT,
		Op:          pg_query.SetOperation_SETOP_NONE,
	}
	distinctIDs(sel, ref)
	return sel
}

// distinctIDs makes a join (UPDATE … FROM, DELETE … USING) yield each target
// row once, as Postgres updates it once, so the row limit counts objects.
func distinctIDs(sel *pg_query.SelectStmt, ref string) {
	if len(sel.FromClause) < 2 {
		return
	}
	sel.DistinctClause = []*pg_query.Node{colRef(ref, "id")}
	sel.SortClause = []*pg_query.Node{pg_query.MakeSortByNode(colRef(ref, "id"),
		pg_query.SortByDir_SORTBY_DEFAULT, pg_query.SortByNulls_SORTBY_NULLS_DEFAULT, -1)}
}

// parentInPath says whether the update endpoint names the parent object
// too (/v1/invoices/{parent}/lines/{id}): Eval then gives the row's
// parent after its version.
func (st *Statement) parentInPath() bool {
	return st.Table.Parent != nil && strings.Contains(st.Table.UpdatePath, "{parent}")
}

// field classifies an assigned column.
func (st *Statement) field(name string, params map[string]schema.Param, update bool) (Field, *Error) {
	t := st.Table
	if name == ParamsColumn {
		return Field{Column: name, Kind: schema.KindJSON, PGType: "jsonb", Role: RoleExtra}, nil
	}
	if typ, ok := metaColumns[name]; ok {
		k := schema.KindJSON
		if typ == "timestamptz" {
			k = schema.KindTimestamp
		}
		return Field{Column: name, Kind: k, PGType: typ, Role: RoleReadOnly}, nil
	}
	c, ok := t.Column(name)
	if !ok {
		return Field{}, errorf(CodeUndefinedColumn, "column %q of relation \"%s\" does not exist", name, t.Name)
	}
	f := Field{Column: c.Name, Kind: c.Kind, PGType: c.PGType, Role: RoleReadOnly}
	if update {
		if st.Ops.Status != nil && name == "status" {
			f.Role = RoleStatus
			return f, nil
		}
		if st.Ops.Attach == name {
			f.Role = RoleAttach
			return f, nil
		}
		if !st.Ops.Update {
			return f, nil
		}
	}
	if p, ok := params[c.Field]; ok && takes(c, p) {
		f.Role = RoleParam
		f.Param = p
	} else if !update && st.Ops.OwnerColumn == name {
		if p, ok := params["owner"]; ok {
			f.Role, f.Param, f.Owner = RoleParam, p, true
		}
	}
	return f, nil
}

// staticCheck refuses a non-NULL constant in a read-only column at once.
func staticCheck(t *schema.Table, f Field, v *pg_query.Node, verb string) *Error {
	if f.Role != RoleReadOnly || v == nil {
		return nil
	}
	if _, ok := v.GetNode().(*pg_query.Node_SetToDefault); ok {
		return nil
	}
	if c := v.GetAConst(); c != nil && c.Isnull {
		return nil
	}
	// In an UPDATE the current value is allowed (ORMs such as GORM's Save
	// send every column back, pgx's simple protocol inlines them): that
	// is decided on the evaluated value, as for any expression.
	if !isConst(v) || verb == "update" {
		return nil
	}
	return readOnlyColumn(t, f.Column, verb)
}

// takes says whether Stripe's parameter p accepts the column's values as
// Build encodes them. The column and the parameter share a name but not
// always a type: subscriptions' update takes billing_cycle_anchor only as
// "now" or "unchanged", never as the timestamp the column holds, so sending
// the column would always be refused by Stripe.
func takes(c schema.Column, p schema.Param) bool {
	if c.Field == "expand" {
		return false
	}
	var want []string
	switch c.Kind {
	case schema.KindInteger, schema.KindTimestamp:
		want = []string{"integer"}
	case schema.KindNumber:
		want = []string{"number", "integer"}
	case schema.KindBoolean:
		want = []string{"boolean"}
	case schema.KindText, schema.KindExpandable:
		want = []string{"string"}
	default:
		return true // jsonb: any shape; Stripe checks what is inside
	}
	for _, t := range p.Types {
		for _, w := range want {
			if t == w {
				return true
			}
		}
	}
	return false
}

func isConst(v *pg_query.Node) bool {
	if v.GetAConst() != nil {
		return true
	}
	if tc := v.GetTypeCast(); tc != nil {
		return isConst(tc.Arg)
	}
	return false
}

// readOnlyColumn is the error for a value in a column Stripe's verb doesn't
// take.
func readOnlyColumn(t *schema.Table, col, verb string) *Error {
	params := t.CreateParams
	if verb == "update" {
		params = t.UpdateParams
	}
	var ok []string
	for _, c := range t.Columns {
		if p, is := params[c.Field]; is && takes(c, p) {
			ok = append(ok, c.Name)
		}
	}
	sort.Strings(ok)
	e := errorf(CodeUndefinedColumn, "column %q of stripe.%s cannot be set: it is not a parameter of Stripe's %s %s", col, t.Name, verb, t.Object).
		withHint("leave it out or set it to NULL/DEFAULT")
	if c, is := t.Column(col); is {
		if p, is := params[c.Field]; is && !takes(c, p) {
			e = errorf(CodeUndefinedColumn, "column %q of stripe.%s cannot be set: Stripe's %s %s takes %s only as a %s, not as a %s", col, t.Name, verb, t.Object, c.Field, strings.Join(p.Types, " or "), c.PGType).
				withHint("leave it out, or give Stripe's value in %s", ParamsColumn)
			if c.Kind == schema.KindTimestamp {
				e.Hint += fmt.Sprintf(", e.g. %s = '{\"%s\": \"now\"}'", ParamsColumn, c.Field)
			}
		}
	}
	if len(ok) > 0 {
		e.Hint += "; columns Stripe takes here: " + strings.Join(ok, ", ")
	}
	return e
}

func tooMany(n int) *Error {
	return errorf(CodeProgramLimitExceeded, "a write to a stripe table may change at most %d rows per statement; this one has %d", MaxRows, n).
		withHint("split it into smaller statements (each row is one Stripe API call)")
}

// TooManyRows is the error for a statement whose WHERE matched more than
// MaxRows rows.
func TooManyRows() *Error {
	return errorf(CodeProgramLimitExceeded, "a write to a stripe table may change at most %d rows per statement; this one matches more", MaxRows).
		withHint("narrow the WHERE clause or split the statement (each row is one Stripe API call)")
}

// returning plans the RETURNING query: the same target list over the
// freshly applied local rows, in the order of the ids parameter.
func (st *Statement) returning(rv *pg_query.RangeVar, list []*pg_query.Node) *Error {
	if len(list) == 0 {
		return nil
	}
	ref := refName(rv)
	ids := int32(st.NParams + 1)
	sel := &pg_query.SelectStmt{
		TargetList: list,
		FromClause: []*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: rv}}},
		WhereClause: pg_query.MakeAExprNode(pg_query.A_Expr_Kind_AEXPR_OP_ANY, []*pg_query.Node{pg_query.MakeStrNode("=")},
			colRef(ref, "id"), typeCast(pg_query.MakeParamRefNode(ids, -1), "text", true), -1),
		SortClause: []*pg_query.Node{pg_query.MakeSortByNode(
			pg_query.MakeFuncCallNode([]*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode("array_position")},
				[]*pg_query.Node{typeCast(pg_query.MakeParamRefNode(ids, -1), "text", true), colRef(ref, "id")}, -1),
			pg_query.SortByDir_SORTBY_DEFAULT, pg_query.SortByNulls_SORTBY_NULLS_DEFAULT, -1)},
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT,
		Op:          pg_query.SetOperation_SETOP_NONE,
	}
	q, err := st.query(sel)
	if err != nil {
		return err
	}
	q.IDs, q.Returns = int(ids), true
	st.Returning = &q

	// The type of the rows is the stripe table's, whatever name the
	// statement used (an unqualified one resolves there, or the statement
	// passes through); the alias keeps the statement's references valid.
	rowType := &pg_query.TypeName{Names: []*pg_query.Node{pg_query.MakeStrNode(schema.DataSchema), pg_query.MakeStrNode(st.Table.Name)}, Typemod: -1, Location: -1}
	rows := &pg_query.SelectStmt{
		TargetList: overData(list, rv),
		FromClause: []*pg_query.Node{{Node: &pg_query.Node_RangeFunction{RangeFunction: &pg_query.RangeFunction{
			Functions: []*pg_query.Node{pg_query.MakeListNode([]*pg_query.Node{
				funcCall("jsonb_populate_recordset",
					&pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{
						Arg:      &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Isnull: true, Location: -1}}},
						TypeName: rowType, Location: -1}}},
					typeCast(pg_query.MakeParamRefNode(ids, -1), "jsonb", false)),
				{},
			})},
			Alias: &pg_query.Alias{Aliasname: ref},
		}}}},
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT,
		Op:          pg_query.SetOperation_SETOP_NONE,
	}
	rq, err := st.query(rows)
	if err != nil {
		return err
	}
	rq.IDs, rq.Returns = int(ids), true
	st.ReturningRows = &rq
	st.ReturningColumns, st.ReturningAll, st.ReturningPlain = returningReads(st.Table, rv, list)
	return nil
}

// overData is RETURNING's target list for ReturningRows, where the rows
// are data under the target's reference name: a column named with the
// target's schema (stripe.customers.name, as Prisma writes it, valid in
// Postgres for an unaliased target) would name nothing there, and is
// named by the reference name instead. RETURNING of an INSERT or UPDATE
// reads no stripe table of its own (planWith), so such a name can only
// be the target's.
func overData(list []*pg_query.Node, rv *pg_query.RangeVar) []*pg_query.Node {
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		return list
	}
	out := make([]*pg_query.Node, len(list))
	for i, n := range list {
		out[i] = proto.Clone(n).(*pg_query.Node)
		walk(out[i].ProtoReflect(), func(m protoreflect.Message) {
			c, ok := m.Interface().(*pg_query.ColumnRef)
			if !ok || len(c.Fields) < 3 || len(c.Fields) > 4 {
				return
			}
			k := len(c.Fields) - 3 // schema.table.column, or catalog.schema.table.column
			if c.Fields[k].GetString_().GetSval() == StripeSchema && c.Fields[k+1].GetString_().GetSval() == rv.Relname {
				c.Fields = c.Fields[k+1:]
			}
		})
	}
	return out
}

// returningReads tells which columns of t a RETURNING list over rv reads
// (all: every column), and whether that is all it needs privileges for
// (plain: column references and constants only). The statement has been
// through Postgres's analysis before it is run (Describe), so a reference
// is one Postgres accepted; one read any other way here is left to
// Postgres (plain false) rather than guessed.
func returningReads(t *schema.Table, rv *pg_query.RangeVar, list []*pg_query.Node) (cols []string, all, plain bool) {
	ref := refName(rv)
	isColumn := func(name string) bool {
		_, ok := t.Column(name)
		return ok || metaColumns[name] != "" || name == ParamsColumn
	}
	// How a reference may name the target: its alias, else its name,
	// optionally with the schema (and the database).
	qualifies := func(q []string) bool {
		if rv.Alias != nil && rv.Alias.Aliasname != "" {
			return len(q) == 1 && q[0] == ref
		}
		switch len(q) {
		case 1:
			return q[0] == rv.Relname
		case 2, 3:
			return q[len(q)-1] == rv.Relname && q[len(q)-2] == schema.DataSchema
		}
		return false
	}
	plain = true
	seen := map[string]bool{}
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil || len(rt.Indirection) > 0 || rt.Val == nil {
			plain = false
			continue
		}
		if rt.Val.GetAConst() != nil {
			continue
		}
		cr := rt.Val.GetColumnRef()
		if cr == nil || len(cr.Fields) == 0 {
			plain = false
			continue
		}
		var names []string
		star := false
		for i, f := range cr.Fields {
			switch {
			case f.GetString_() != nil:
				names = append(names, f.GetString_().Sval)
			case f.GetAStar() != nil && i == len(cr.Fields)-1:
				star = true
			default:
				plain = false
			}
		}
		if !plain {
			continue
		}
		switch {
		case star && (len(names) == 0 || qualifies(names)):
			all = true // * or t.*
		case star:
			plain = false
		case len(names) == 1 && isColumn(names[0]):
			if !seen[names[0]] {
				seen[names[0]] = true
				cols = append(cols, names[0])
			}
		case len(names) == 1 && qualifies(names):
			all = true // the row itself: RETURNING customers
		case len(names) > 1 && qualifies(names[:len(names)-1]) && isColumn(names[len(names)-1]):
			if c := names[len(names)-1]; !seen[c] {
				seen[c] = true
				cols = append(cols, c)
			}
		default:
			plain = false // a field of a composite value, …: Postgres decides
		}
	}
	return cols, all, plain
}

// query deparses sel, with the statement's WITH clause, and records which
// parameters it uses.
func (st *Statement) query(sel *pg_query.SelectStmt) (Query, *Error) {
	if st.with != nil {
		sel.WithClause = st.with
	}
	return st.deparse(sel)
}

// deparse deparses sel and records which parameters it uses.
func (st *Statement) deparse(sel *pg_query.SelectStmt) (Query, *Error) {
	node := &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}}
	sql, err := pg_query.Deparse(&pg_query.ParseResult{Stmts: []*pg_query.RawStmt{{Stmt: node}}})
	if err != nil {
		return Query{}, errorf(CodeFeatureNotSupported, "cannot plan this write to stripe.%s: %v", st.Table.Name, err)
	}
	q := Query{SQL: sql, Uses: make([]bool, st.NParams)}
	if len(st.Once) > 0 {
		q.sel = proto.Clone(sel).(*pg_query.SelectStmt)
	}
	walk(node.ProtoReflect(), func(m protoreflect.Message) {
		if p, ok := m.Interface().(*pg_query.ParamRef); ok && int(p.Number) >= 1 && int(p.Number) <= st.NParams {
			q.Uses[p.Number-1] = true
		}
	})
	return q, nil
}

// maxParam is the highest $n in n.
func maxParam(n *pg_query.Node) int {
	max := 0
	walk(n.ProtoReflect(), func(m protoreflect.Message) {
		if p, ok := m.Interface().(*pg_query.ParamRef); ok && int(p.Number) > max {
			max = int(p.Number)
		}
	})
	return max
}

// walk visits every message of a parse tree.
func walk(m protoreflect.Message, fn func(protoreflect.Message)) {
	fn(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fn)
			}
			return true
		}
		walk(v.Message(), fn)
		return true
	})
}

// refName is how the statement's expressions refer to the target table.
func refName(rv *pg_query.RangeVar) string {
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		return rv.Alias.Aliasname
	}
	return rv.Relname
}

func colRef(fields ...string) *pg_query.Node {
	nodes := make([]*pg_query.Node, len(fields))
	for i, f := range fields {
		nodes[i] = pg_query.MakeStrNode(f)
	}
	return pg_query.MakeColumnRefNode(nodes, -1)
}

func resTarget(v *pg_query.Node) *pg_query.Node { return pg_query.MakeResTargetNodeWithVal(v, -1) }

func typeCast(arg *pg_query.Node, typ string, array bool) *pg_query.Node {
	tn := &pg_query.TypeName{Names: []*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode(typ)}, Typemod: -1, Location: -1}
	if array {
		tn.ArrayBounds = []*pg_query.Node{pg_query.MakeIntNode(-1)}
	}
	return &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{Arg: arg, TypeName: tn, Location: -1}}}
}

func funcCall(name string, args ...*pg_query.Node) *pg_query.Node {
	return pg_query.MakeFuncCallNode([]*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode(name)}, args, -1)
}

// versionOf identifies the stored state of a row: its _synced_at in
// microseconds since the epoch (our own clock, unique enough per write).
// Writethrough uses it to tell that the row did not change between
// evaluation and apply.
func versionOf(ref string) *pg_query.Node {
	us := pg_query.MakeAExprNode(pg_query.A_Expr_Kind_AEXPR_OP, []*pg_query.Node{pg_query.MakeStrNode("*")},
		funcCall("date_part", pg_query.MakeAConstStrNode("epoch", -1), colRef(ref, schema.ColSyncedAt)),
		pg_query.MakeAConstIntNode(1000000, -1), -1)
	return typeCast(funcCall("round", us), "int8", false)
}

// valueExpr turns DEFAULT into NULL: for Stripe, "not given".
func valueExpr(v *pg_query.Node) *pg_query.Node {
	if _, ok := v.GetNode().(*pg_query.Node_SetToDefault); ok {
		return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Isnull: true, Location: -1}}}
	}
	return v
}

// pgTypes are the catalog names of the column types.
var pgTypes = map[string]string{
	"text": "text", "bigint": "int8", "numeric": "numeric", "boolean": "bool",
	"timestamptz": "timestamptz", "jsonb": "jsonb",
}

// jsonOf wraps an expression so Postgres hands back its value, cast to the
// column's type as the INSERT or UPDATE would (which also gives $n the
// type the client's statement gave it), as JSON; timestamps become Unix
// seconds, as Stripe takes them.
func jsonOf(e *pg_query.Node, f Field) *pg_query.Node {
	typ := pgTypes[f.PGType]
	if typ == "" {
		panic(fmt.Sprintf("translate: column %s has unknown type %q", f.Column, f.PGType))
	}
	v := typeCast(e, typ, false)
	if f.Kind == schema.KindTimestamp {
		v = typeCast(funcCall("floor", funcCall("date_part", pg_query.MakeAConstStrNode("epoch", -1), v)), "int8", false)
	}
	return funcCall("to_jsonb", v)
}
