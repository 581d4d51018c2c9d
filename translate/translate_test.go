package translate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildRefusesMoreThanMaxRows(t *testing.T) {
	c := Classify(`UPDATE stripe.customers SET name = 'x'`)
	var rows [][][]byte
	for i := 0; i <= MaxRows; i++ {
		rows = append(rows, [][]byte{[]byte(fmt.Sprintf("cus_%d", i)), []byte("1"), []byte(`"x"`), []byte(`"y"`)})
	}
	if _, err := c.Stmt.Build(rows); err == nil || err.Code != CodeProgramLimitExceeded {
		t.Fatalf("want 54000, got %v", err)
	}
	if calls, err := c.Stmt.Build(rows[:MaxRows]); err != nil || len(calls) != MaxRows {
		t.Fatalf("100 rows: %v, %d calls", err, len(calls))
	}
}

func TestBuildReportsTheRow(t *testing.T) {
	c := Classify(`INSERT INTO stripe.customers (email, created) VALUES ($1, $2), ($3, $4)`)
	_, err := c.Stmt.Build([][][]byte{{[]byte(`"a"`), nil}, {[]byte(`"b"`), []byte(`1`)}})
	if err == nil || err.Code != CodeUndefinedColumn || !strings.Contains(err.Detail, "row 2 of 2") {
		t.Fatalf("got %v", err)
	}
}

func TestMayWriteSkipsReads(t *testing.T) {
	for _, s := range []string{"SELECT 1", "select * from stripe.customers where id = $1", "BEGIN", "SHOW search_path"} {
		if mayWrite(s) {
			t.Errorf("%q: pre-check would parse", s)
		}
	}
	for _, s := range []string{"insert into x values (1)", "UPDATE x SET a = 1", "With d AS (Delete FROM t) SELECT 1", "copy t from stdin", "TRUNCATE t", "merge into t"} {
		if !mayWrite(s) {
			t.Errorf("%q: pre-check misses a write", s)
		}
	}
}

func TestClassifyIsStable(t *testing.T) {
	// The proxy caches by text and shares the plan between sessions: the
	// plan must not depend on anything but the text.
	a := Classify(`UPDATE stripe.customers SET name = $1 WHERE id = $2`)
	b := Classify(`UPDATE stripe.customers SET name = $1 WHERE id = $2`)
	if a.Stmt.Eval.SQL != b.Stmt.Eval.SQL {
		t.Fatal("plans differ")
	}
}

func BenchmarkClassifyRead(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Classify("SELECT id, email FROM stripe.customers WHERE email = $1")
	}
}

func BenchmarkClassifyInsert(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Classify(`INSERT INTO stripe.customers (email, metadata) VALUES ($1, $2) RETURNING id`)
	}
}

// FuzzClassify: no statement text makes planning fail internally (go test
// -fuzz FuzzClassify ./translate to search; the seeds run with go test).
func FuzzClassify(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.sql")
	for _, file := range files {
		src, _ := os.ReadFile(file)
		for _, c := range strings.Split(string(src), "-- case:") {
			f.Add(c)
		}
	}
	f.Fuzz(func(t *testing.T, sql string) {
		c := Classify(sql)
		readings := []Class{c}
		if c.Action == Write && c.Stmt.Strings != nil {
			// Decided at execution by the session's
			// standard_conforming_strings: each reading must hold.
			readings = []Class{c.Stmt.Strings.On, c.Stmt.Strings.Off}
		}
		for _, c := range readings {
			if c.Action == Reject && c.Err.Code == "XX000" {
				t.Fatalf("%q: %v", sql, c.Err)
			}
			// Text that is not UTF-8 has no parse tree here: it is
			// decided at execution, after conversion (Transcode),
			// without a table.
			if c.Action == Write && c.Stmt.Deferred == nil && c.Stmt.Table == nil && !c.Stmt.Transcode {
				t.Fatalf("%q: write without a table", sql)
			}
		}
		if alt, changed := NonConforming(sql); !changed && alt != sql {
			t.Fatalf("%q: unchanged, but rewritten as %q", sql, alt)
		}
	})
}

// COPY (write) TO on an unqualified name is decided at execution, and can
// never be relayed to Postgres as a query of its own.
func TestCopyOfUnqualifiedWriteIsUnrelayable(t *testing.T) {
	c := Classify(`COPY (UPDATE customers SET name = 'x' RETURNING id) TO STDOUT`)
	if c.Action != Write || c.Stmt.Deferred == nil || len(c.Stmt.Resolve) != 1 || !c.Stmt.Unrelayable {
		t.Errorf("unqualified COPY (UPDATE …): %v %+v", c.Action, c.Stmt)
	}
}

// TestUpdateEmptiesNestedArray: emptying an array inside an object
// column is sent as an unset; without it the change was dropped and, as
// the only change, the UPDATE made no call at all.
func TestUpdateEmptiesNestedArray(t *testing.T) {
	c := Classify(`UPDATE stripe.customers SET invoice_settings = $1 WHERE id = 'cus_1'`)
	if c.Action != Write {
		t.Fatalf("%v %v", c.Action, c.Err)
	}
	old := `{"custom_fields": [{"name": "PO", "value": "1"}], "footer": "f"}`
	rows := [][][]byte{{[]byte("cus_1"), []byte("1"), []byte(`{"custom_fields": [], "footer": "f"}`), []byte(old)}}
	calls, err := c.Stmt.Build(rows)
	if err != nil || len(calls) != 1 || len(calls[0].Calls) != 1 {
		t.Fatalf("calls %+v, err %v", calls, err)
	}
	p := calls[0].Calls[0].Params
	if v, ok := p["invoice_settings[custom_fields]"]; !ok || len(v) != 1 || v[0] != "" {
		t.Fatalf("params %v: want invoice_settings[custom_fields] unset", p.Encode())
	}
	// Empty before and after: nothing to unset.
	rows = [][][]byte{{[]byte("cus_1"), []byte("1"), []byte(`{"custom_fields": [], "footer": "g"}`), []byte(`{"custom_fields": [], "footer": "f"}`)}}
	calls, err = c.Stmt.Build(rows)
	if err != nil || len(calls[0].Calls) != 1 {
		t.Fatalf("calls %+v, err %v", calls, err)
	}
	if _, ok := calls[0].Calls[0].Params["invoice_settings[custom_fields]"]; ok {
		t.Fatalf("params %v: unchanged empty array sent", calls[0].Calls[0].Params.Encode())
	}
}
