package writethrough

import (
	"strings"
	"testing"
)

// Statements on a Latin-1 session whose text is not UTF-8 and that are no
// stripe writes reach Postgres as they are: a multi-statement read and a
// COPY FROM STDIN.
func TestLatin1PassThrough(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	c := e.latin1(u)
	if _, err := c.Exec(e.ctx, "CREATE TABLE public.notes (name text)").ReadAll(); err != nil {
		t.Fatal(err)
	}

	res, err := c.Exec(e.ctx, "SELECT 'caf\xe9' AS a; SELECT 'updated' AS b").ReadAll()
	if err != nil || len(res) != 2 || string(res[0].Rows[0][0]) != "caf\xe9" || string(res[1].Rows[0][0]) != "updated" {
		t.Errorf("multi-statement read: %v %v", res, err)
	}

	tag, err := c.CopyFrom(e.ctx, strings.NewReader("x\xe9\n"), "COPY public.notes (name) FROM STDIN WITH (FORMAT csv, NULL 'n\xe9ant')")
	if err != nil || tag.RowsAffected() != 1 {
		t.Errorf("COPY FROM STDIN: %v %v", tag, err)
	}

	if got := e.local(`SELECT string_agg(name, ',') FROM public.notes`); got != "xé" {
		t.Errorf("public.notes has %q, want xé", got)
	}
}
