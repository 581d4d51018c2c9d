package writethrough

import (
	"strings"
	"testing"
)

// TestRowLockReturning is Sequelize's pessimistic lock: in a
// transaction, SELECT … FOR UPDATE, then UPDATE … RETURNING. The client
// holds the row lock, so the apply can't write the row; RETURNING must
// still show what the UPDATE did (Stripe's answer), not the row as it was.
func TestRowLockReturning(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('lock@b.co', 'before') RETURNING id`).rows[0][0]
	if _, err := e.conn.Exec(e.ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	defer e.conn.Exec(e.ctx, `ROLLBACK`)
	if _, err := e.conn.Exec(e.ctx, `SELECT "id", "email", "name" FROM "stripe"."customers" AS "C" WHERE "C"."id" = '`+id+`' FOR UPDATE;`); err != nil {
		t.Fatal(err)
	}
	r := e.ok(`UPDATE "stripe"."customers" SET "name"=$1,"balance"="balance"+7 WHERE "id" = $2 RETURNING "id","email","name","balance",upper("name") AS up`, "after", id)
	if r.tag != "UPDATE 1" || len(r.notices) != 2 || !strings.Contains(r.notices[1], "catch up from Stripe's events") {
		t.Fatalf("reply %+v", r)
	}
	if len(r.rows) != 1 || strings.Join(r.rows[0], "|") != id+"|lock@b.co|after|7|AFTER" {
		t.Fatalf("RETURNING %v, want the updated row", r.rows)
	}
	if strings.Join(r.fields, ",") != "id,email,name,balance,up" {
		t.Fatalf("fields %v", r.fields)
	}
}
