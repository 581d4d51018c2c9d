package writethrough

import "testing"

// TestLatin1UnicodeEscapeName: a Latin-1 write that spells its
// stripe table with Unicode-escape identifiers (no "stripe", no table name
// in the text) must be refused like any other non-UTF-8 stripe write, not
// pass through and change the local copy behind Stripe's back.
func TestLatin1UnicodeEscapeName(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('uesc@b.co', 'Before') RETURNING id`).rows[0][0]
	c := e.latin1(u)
	before := e.calls()
	_, err := c.Exec(e.ctx, `UPDATE U&"\0073tripe".U&"\0063ustomers" SET name = 'K`+"\xf6"+`nig' WHERE id = '`+id+`'`).ReadAll()
	if sqlstate(err) != "0A000" {
		t.Errorf("UPDATE naming the table with U& escapes: %v, want 0A000", err)
	}
	if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, id); got != "Before" {
		t.Errorf("local name %q: the write went around Stripe", got)
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe calls", n)
	}
}
