package translate

import (
	"fmt"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgstripe/pgstripe/schema"
)

// planWith accepts the WITH clause of a write (ORMs' db.with(…).update(…),
// Kysely's .with(…).updateTable(…)) when it only reads: every query the
// statement is split into (Eval, Recheck, Returning, ReturningRows) carries it
// as the client wrote it, parameters included, so its names mean in each
// what they mean in the statement. A WITH query that writes anything is
// refused: it would run once per query we make, or not at all, never once
// as in Postgres. So are row locks taken in WITH: on a stripe table they
// would hold up our own apply until the client's transaction ends.
func (st *Statement) planWith(n *pg_query.Node) *Error {
	var (
		w    *pg_query.WithClause
		rv   **pg_query.RangeVar
		ret  []*pg_query.Node
		what string
		op   Op
	)
	t := st.Table.Name
	switch s := n.GetNode().(type) {
	case *pg_query.Node_InsertStmt:
		w, rv, ret, what = s.InsertStmt.WithClause, &s.InsertStmt.Relation, s.InsertStmt.ReturningList, "INSERT INTO stripe."+t
		op = Insert
	case *pg_query.Node_UpdateStmt:
		w, rv, ret, what = s.UpdateStmt.WithClause, &s.UpdateStmt.Relation, s.UpdateStmt.ReturningList, "UPDATE of stripe."+t
		op = Update
	case *pg_query.Node_DeleteStmt:
		w, rv, ret, what = s.DeleteStmt.WithClause, &s.DeleteStmt.Relation, s.DeleteStmt.ReturningList, "DELETE from stripe."+t
		op = Delete
	}
	ctes := map[string]*pg_query.CommonTableExpr{}
	if w != nil {
		for _, c := range w.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				ctes[cte.Ctename] = cte
			}
		}
	}
	// RETURNING of an INSERT or UPDATE runs once our apply has changed the
	// stripe tables; in Postgres a subquery or WITH query it reads sees the
	// tables as they were before the statement. DELETE's RETURNING runs
	// before the apply.
	if op != Delete && len(ret) > 0 {
		switch table, name := readsStripe(ret, w); {
		case table != "":
			return errorf(CodeFeatureNotSupported, "%s with RETURNING that reads stripe.%s is not supported: RETURNING would see it after the write, not before as in Postgres", what, table).
				withHint("return the columns of stripe.%s and read stripe.%s in a statement of its own", t, table)
		case name != "":
			return errorf(CodeFeatureNotSupported, "%s with RETURNING that reads WITH query %q is not supported: %q reads stripe tables, and RETURNING would see them after the write, not before as in Postgres", what, name, name).
				withHint("return the columns of stripe.%s and read %q in a statement of its own", t, name)
		}
	}
	if w == nil {
		return nil
	}
	var err *Error
	walk(w.ProtoReflect(), func(m protoreflect.Message) {
		if err != nil {
			return
		}
		switch x := m.Interface().(type) {
		case *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.MergeStmt:
			// Also nested in a WITH query's own WITH, which Postgres
			// refuses anyway ("must be at the top level").
			err = errorf(CodeFeatureNotSupported, "%s with a data-modifying WITH query is not supported", what).
				withHint("run the WITH query's write as a statement of its own; only SELECT queries may go in the WITH clause of a write to stripe.*")
		case *pg_query.SelectStmt:
			if len(x.LockingClause) > 0 {
				err = errorf(CodeFeatureNotSupported, "%s with FOR UPDATE/FOR SHARE in its WITH clause is not supported", what).
					withHint("drop the locking clause from the WITH query")
			}
		}
	})
	if err != nil {
		return err
	}

	// The target of a write is never a WITH query, whatever its name; in
	// our SELECTs an unqualified target would be. Once Resolve has found
	// it in schema stripe, stripe.<name> is the same table.
	if r := *rv; r.Schemaname == "" && ctes[r.Relname] != nil {
		c := proto.Clone(r).(*pg_query.RangeVar)
		c.Schemaname = StripeSchema
		if c.Alias == nil {
			c.Alias = &pg_query.Alias{Aliasname: r.Relname}
		}
		*rv = c
	}
	st.with = w
	if op != Delete && len(ret) > 0 {
		st.Once = withReads(ret, w)
	}
	return nil
}

// readsStripe returns the table of schema stripe that list reads by name
// itself (a subquery of RETURNING), or else the name of a WITH query of w
// that list refers to, directly or through other WITH queries, and that
// reads one; "", "" when neither. A view or a function is not looked into.
// In a WITH query's own text, as in Postgres, only the WITH queries before
// it are in scope (all of them with RECURSIVE): the same name elsewhere,
// its own included, is a table.
func readsStripe(list []*pg_query.Node, w *pg_query.WithClause) (table, cte string) {
	ctes := map[string]*pg_query.CommonTableExpr{}
	order := map[string]int{}
	if w != nil {
		for i, c := range w.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				if _, dup := ctes[cte.Ctename]; !dup {
					ctes[cte.Ctename], order[cte.Ctename] = cte, i
				}
			}
		}
	}
	var queue []string
	seen := map[string]bool{}
	// refs walks n, in which the WITH queries before index before are in
	// scope.
	refs := func(n protoreflect.Message, before int) (stripe string) {
		walk(n, func(m protoreflect.Message) {
			r, ok := m.Interface().(*pg_query.RangeVar)
			if !ok {
				return
			}
			i, isCTE := order[r.Relname]
			switch {
			case r.Schemaname == "" && isCTE && i < before:
				if !seen[r.Relname] {
					seen[r.Relname] = true
					queue = append(queue, r.Relname)
				}
			case r.Schemaname == StripeSchema:
				stripe = r.Relname
			case r.Schemaname == "":
				if _, ok := schema.Lookup(r.Relname); ok {
					stripe = r.Relname // maybe: search_path decides
				}
			}
		})
		return stripe
	}
	all := len(order) + 1
	for _, n := range list {
		if t := refs(n.ProtoReflect(), all); t != "" {
			return t, ""
		}
	}
	for i := 0; i < len(queue); i++ {
		before := order[queue[i]]
		if w.GetRecursive() {
			before = all
		}
		if refs(ctes[queue[i]].Ctequery.ProtoReflect(), before) != "" {
			return "", queue[i]
		}
	}
	return "", ""
}

// withReads returns the WITH queries of w that list reads, directly or
// through other WITH queries, in WITH order (scoped as in readsStripe).
func withReads(list []*pg_query.Node, w *pg_query.WithClause) []string {
	if w == nil {
		return nil
	}
	order := map[string]int{}
	ctes := map[string]*pg_query.CommonTableExpr{}
	for i, c := range w.Ctes {
		if cte := c.GetCommonTableExpr(); cte != nil {
			if _, dup := order[cte.Ctename]; !dup {
				order[cte.Ctename], ctes[cte.Ctename] = i, cte
			}
		}
	}
	var queue []string
	seen := map[string]bool{}
	refs := func(n protoreflect.Message, before int) {
		walk(n, func(m protoreflect.Message) {
			if r, ok := m.Interface().(*pg_query.RangeVar); ok && r.Schemaname == "" {
				if i, isCTE := order[r.Relname]; isCTE && i < before && !seen[r.Relname] {
					seen[r.Relname] = true
					queue = append(queue, r.Relname)
				}
			}
		})
	}
	all := len(order) + 1
	for _, n := range list {
		refs(n.ProtoReflect(), all)
	}
	for i := 0; i < len(queue); i++ {
		before := order[queue[i]]
		if w.GetRecursive() {
			before = all
		}
		refs(ctes[queue[i]].Ctequery.ProtoReflect(), before)
	}
	slices.SortFunc(queue, func(a, b string) int { return order[a] - order[b] })
	return queue
}

// OnceData is the result of a WITH query of Statement.Once, evaluated
// once, as the later queries read it.
type OnceData struct {
	// Columns are its column names; Types their types as
	// pg_catalog.format_type gives them.
	Columns, Types []string
	// Rows is the number of rows: with columns, the rows are in parameter
	// $Param, a two-dimensional text[] (one row per row, the values in
	// text form, NULL for NULL).
	Rows  int
	Param int
	// Keep: the WITH query stays as written (its rows can't be given as
	// data: a column of an anonymous record type), evaluated anew by each
	// query that reads it.
	Keep bool
}

// OnceParam is the $n that carries the rows of Once[i]: after the client's
// parameters and the ids ($NParams+1).
func (st *Statement) OnceParam(i int) int { return st.NParams + 2 + i }

// OnceQuery selects the rows of WITH query Once[i], reading the WITH
// queries Once[:i] from data.
func (st *Statement) OnceQuery(i int, data []OnceData) (Query, *Error) {
	w, err := st.withData(data)
	if err != nil {
		return Query{}, err
	}
	sel := &pg_query.SelectStmt{
		TargetList: []*pg_query.Node{pg_query.MakeResTargetNodeWithVal(pg_query.MakeColumnRefNode([]*pg_query.Node{{Node: &pg_query.Node_AStar{AStar: &pg_query.A_Star{}}}}, -1), -1)},
		FromClause: []*pg_query.Node{pg_query.MakeSimpleRangeVarNode(st.Once[i], -1)},
		WithClause: w, LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT, Op: pg_query.SetOperation_SETOP_NONE,
	}
	return st.deparse(sel)
}

// WithOnce returns the statement with its queries reading the WITH
// queries of Once from data, one entry per name of Once.
func (st *Statement) WithOnce(data []OnceData) (*Statement, *Error) {
	w, err := st.withData(data)
	if err != nil {
		return nil, err
	}
	out := *st
	if out.Returning != nil {
		// Copies: st is shared (the classification cache).
		r, rr := *out.Returning, *out.ReturningRows
		out.Returning, out.ReturningRows = &r, &rr
	}
	for _, q := range []*Query{&out.Eval, &out.Recheck, out.Returning, out.ReturningRows} {
		if q == nil || q.sel == nil {
			continue
		}
		sel := proto.Clone(q.sel).(*pg_query.SelectStmt)
		sel.WithClause = w
		nq, err := st.deparse(sel)
		if err != nil {
			return nil, err
		}
		nq.IDs, nq.Returns, nq.Lead = q.IDs, q.Returns, q.Lead
		*q = nq
	}
	return &out, nil
}

// withData is the statement's WITH clause with the WITH queries of
// Once[:len(data)] replaced by their rows.
func (st *Statement) withData(data []OnceData) (*pg_query.WithClause, *Error) {
	w := proto.Clone(st.with).(*pg_query.WithClause)
	for i, d := range data {
		if d.Keep {
			continue
		}
		var b strings.Builder
		if len(d.Columns) == 0 {
			fmt.Fprintf(&b, "SELECT FROM pg_catalog.generate_series(1, %d)", d.Rows)
		} else {
			b.WriteString("SELECT ")
			for j, c := range d.Columns {
				if j > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "($%d::pg_catalog.text[])[g.i][%d]::%s AS %s", d.Param, j+1, d.Types[j], quoteIdent(c))
			}
			fmt.Fprintf(&b, " FROM pg_catalog.generate_subscripts($%d::pg_catalog.text[], 1) AS g(i)", d.Param)
		}
		res, err := pg_query.Parse(b.String())
		if err != nil || len(res.Stmts) != 1 || res.Stmts[0].Stmt.GetSelectStmt() == nil {
			return nil, errorf(CodeFeatureNotSupported, "cannot give WITH query %q of this write to stripe.%s as data: %v", st.Once[i], st.Table.Name, err)
		}
		for _, c := range w.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil && cte.Ctename == st.Once[i] {
				cte.Ctequery = res.Stmts[0].Stmt
				cte.Aliascolnames = nil
				break
			}
		}
	}
	return w, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
