package translate

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden runs every case of testdata/*.sql and compares the plan (or
// the error, with its SQLSTATE) with the .golden file next to it.
//
// A case starts with a line "-- case: name", then the SQL. Lines
// "-- row: [...]" give rows as Eval would return them (a JSON array: the id
// as a plain string first for UPDATE and DELETE, then each value as JSON,
// null for NULL); the case then also shows the Stripe calls Build makes.
// Lines "-- stored: {...}" give a Stripe object as its table stores it
// (_raw), for the objects the rows give whole where Stripe takes an id
// (see Statement.Objects). Run with -update to rewrite the golden files.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			for _, c := range splitCases(t, string(src)) {
				fmt.Fprintf(&out, "== %s\n%s\n%s\n", c.name, c.sql, dump(t, c))
			}
			golden := strings.TrimSuffix(f, ".sql") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if got := out.String(); got != string(want) {
				t.Errorf("%s differs from the plans (run with -update and review the diff):\n%s", golden, firstDiff(string(want), got))
			}
		})
	}
}

type goldenCase struct {
	name   string
	sql    string
	rows   []string
	stored []string
}

func splitCases(t *testing.T, src string) []goldenCase {
	var cases []goldenCase
	var cur *goldenCase
	var sql []string
	flush := func() {
		if cur != nil {
			cur.sql = strings.TrimSpace(strings.Join(sql, "\n"))
			cases = append(cases, *cur)
		}
	}
	for _, line := range strings.Split(src, "\n") {
		switch {
		case strings.HasPrefix(line, "-- case:"):
			flush()
			cur = &goldenCase{name: strings.TrimSpace(strings.TrimPrefix(line, "-- case:"))}
			sql = nil
		case strings.HasPrefix(line, "-- row:"):
			if cur == nil {
				t.Fatal("row before the first case")
			}
			cur.rows = append(cur.rows, strings.TrimSpace(strings.TrimPrefix(line, "-- row:")))
		case strings.HasPrefix(line, "-- stored:"):
			if cur == nil {
				t.Fatal("stored object before the first case")
			}
			cur.stored = append(cur.stored, strings.TrimSpace(strings.TrimPrefix(line, "-- stored:")))
		case cur != nil:
			sql = append(sql, line)
		}
	}
	flush()
	return cases
}

func dump(t *testing.T, c goldenCase) string {
	cl := Classify(c.sql)
	var b strings.Builder
	switch cl.Action {
	case Pass:
		return "-> pass\n"
	case Reject:
		return "-> " + errText(cl.Err) + "\n"
	}
	st := cl.Stmt
	if len(st.Resolve) > 0 {
		fmt.Fprintf(&b, "-> resolve %s\n", strings.Join(st.Resolve, ", "))
	}
	if st.Deferred != nil {
		fmt.Fprintf(&b, "-> then %s\n", errText(st.Deferred))
		return b.String()
	}
	fmt.Fprintf(&b, "-> %s stripe.%s", st.Op, st.Table.Name)
	if st.Op == Insert {
		fmt.Fprintf(&b, " rows=%d", st.Rows)
	}
	fmt.Fprintf(&b, " nparams=%d\n", st.NParams)
	for _, f := range st.Fields {
		fmt.Fprintf(&b, "   field %s %s %s", f.Column, f.PGType, f.Role)
		if f.Param.Unset {
			b.WriteString(" (unset with '')")
		}
		if f.Owner {
			b.WriteString(" (as owner)")
		}
		b.WriteString("\n")
	}
	if st.Eval.SQL != "" {
		fmt.Fprintf(&b, "   eval: %s%s\n", st.Eval.SQL, uses(st.Eval))
		if st.Recheck.SQL != "" {
			fmt.Fprintf(&b, "   recheck: %s%s ids=$%d\n", st.Recheck.SQL, uses(st.Recheck), st.Recheck.IDs)
		}
	}
	if len(st.Once) > 0 {
		fmt.Fprintf(&b, "   once: %s\n", strings.Join(st.Once, ", "))
	}
	if st.Returning != nil {
		fmt.Fprintf(&b, "   returning: %s%s ids=$%d\n", st.Returning.SQL, uses(*st.Returning), st.Returning.IDs)
		if st.ReturningRows != nil {
			fmt.Fprintf(&b, "   returning rows: %s%s rows=$%d\n", st.ReturningRows.SQL, uses(*st.ReturningRows), st.ReturningRows.IDs)
		}
	}
	if len(c.rows) == 0 && !(st.Op == Insert && st.Eval.SQL == "") {
		return b.String()
	}
	var rows [][][]byte
	for _, r := range c.rows {
		var vals []json.RawMessage
		if err := json.Unmarshal([]byte(r), &vals); err != nil {
			t.Fatalf("%s: row %s: %v", c.name, r, err)
		}
		var row [][]byte
		for i, v := range vals {
			switch {
			case string(v) == "null":
				row = append(row, nil)
			case i == 0 && st.Op != Insert:
				var id string
				if err := json.Unmarshal(v, &id); err != nil {
					t.Fatalf("%s: id %s: %v", c.name, v, err)
				}
				row = append(row, []byte(id))
				if st.Op == Update {
					row = append(row, []byte("1700000000000000")) // version
				}
			default:
				row = append(row, []byte(v))
			}
		}
		rows = append(rows, row)
	}
	var stored Stored
	for _, o := range c.stored {
		var obj struct{ ID, Object string }
		if err := json.Unmarshal([]byte(o), &obj); err != nil {
			t.Fatalf("%s: stored %s: %v", c.name, o, err)
		}
		tb, ok := schema.ByObject(obj.Object)
		if !ok {
			t.Fatalf("%s: stored %s: no table", c.name, o)
		}
		if stored == nil {
			stored = Stored{}
		}
		stored[ObjectRef{Table: tb.Name, ID: obj.ID}] = []byte(o)
	}
	calls, err := st.BuildStored(NewRows(rows), stored)
	if err != nil {
		fmt.Fprintf(&b, "   build -> %s\n", errText(err))
		return b.String()
	}
	for i, rc := range calls {
		fmt.Fprintf(&b, "   row %d", i+1)
		if rc.ID != "" {
			fmt.Fprintf(&b, " %s", rc.ID)
		}
		if len(rc.Calls) == 0 {
			b.WriteString(": no call (unchanged)")
		}
		b.WriteString("\n")
		for _, c := range rc.Calls {
			fmt.Fprintf(&b, "     %s %s", c.Method, c.Path)
			if c.Create {
				b.WriteString(" [idempotent create]")
			}
			b.WriteString("\n")
			keys := make([]string, 0, len(c.Params))
			for k := range c.Params {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				for _, v := range c.Params[k] {
					fmt.Fprintf(&b, "       %s=%s\n", k, v)
				}
			}
		}
	}
	return b.String()
}

func uses(q Query) string {
	var s []string
	for i, u := range q.Uses {
		if u {
			s = append(s, fmt.Sprintf("$%d", i+1))
		}
	}
	if len(s) == 0 {
		return ""
	}
	return "  [uses " + strings.Join(s, " ") + "]"
}

func errText(e *Error) string {
	s := "error " + e.Code + ": " + e.Message
	if e.Detail != "" {
		s += "\n   detail: " + e.Detail
	}
	if e.Hint != "" {
		s += "\n   hint: " + e.Hint
	}
	return s
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, a, b)
		}
	}
	return "(no difference)"
}
