package translate

import (
	"strings"
	"testing"
)

// TestOnce: RETURNING of an UPDATE that reads a WITH query (through
// another one) names both in Once, in WITH order; the WITH query only SET
// reads is not among them. OnceQuery and WithOnce give those as data in
// parameters after the ids, and leave the others as written.
func TestOnce(t *testing.T) {
	c := Classify(`WITH a AS (SELECT random() AS r), b AS (SELECT r FROM a), s AS (SELECT 'x' AS v) UPDATE stripe.customers SET description = (SELECT v FROM s) WHERE id = $1 RETURNING (SELECT r FROM b)`)
	if c.Action != Write {
		t.Fatalf("classify: %+v", c)
	}
	st := c.Stmt
	if strings.Join(st.Once, ",") != "a,b" || st.OnceParam(0) != 3 || st.OnceParam(1) != 4 {
		t.Fatalf("once %v, params %d %d", st.Once, st.OnceParam(0), st.OnceParam(1))
	}
	a := OnceData{Columns: []string{`r"x`}, Types: []string{"double precision"}, Rows: 1, Param: st.OnceParam(0)}
	q, err := st.OnceQuery(1, []OnceData{a})
	if err != nil {
		t.Fatal(err)
	}
	if want := `WITH a AS (SELECT ($3::pg_catalog.text[])[g.i][1]::double precision AS "r""x" FROM pg_catalog.generate_subscripts($3::pg_catalog.text[], 1) g(i)), b AS (SELECT r FROM a), s AS (SELECT 'x' AS v) SELECT * FROM b`; q.SQL != want {
		t.Fatalf("once query\n%s\nwant\n%s", q.SQL, want)
	}
	b := OnceData{Rows: 2, Param: st.OnceParam(1)}
	w, err := st.WithOnce([]OnceData{a, b})
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{w.Eval.SQL, w.Recheck.SQL, w.Returning.SQL, w.ReturningRows.SQL} {
		if !strings.HasPrefix(sql, `WITH a AS (SELECT ($3::pg_catalog.text[])[g.i][1]::double precision AS "r""x" FROM pg_catalog.generate_subscripts($3::pg_catalog.text[], 1) g(i)), b AS (SELECT FROM pg_catalog.generate_series(1, 2)), s AS (SELECT 'x' AS v) SELECT `) {
			t.Fatalf("with data: %s", sql)
		}
	}
	if w.Recheck.IDs != 2 || w.Returning.IDs != 2 || !w.Returning.Returns || st.Returning.SQL == w.Returning.SQL || strings.Contains(st.Eval.SQL, "generate_subscripts") {
		t.Fatalf("rewritten queries: %+v; original %+v", w, st)
	}
}
