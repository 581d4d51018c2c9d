# psycopg2 (libpq, simple protocol with client-side interpolation) against
# the pgstripe proxy. Run by integration/drivers_test.go with Debian's
# /usr/bin/python3 (python3-psycopg2):
#
#   probe.py pass  DSN   statements that pass through untouched; the test
#                        runs it through the proxy and directly and compares
#   probe.py write DSN   writes to stripe.* (proxy only)
#
# One line per step, with nothing that changes from run to run.
import io
import json
import select
import sys
import threading
import time

import psycopg2
import psycopg2.extensions
import psycopg2.extras

mode, dsn = sys.argv[1], sys.argv[2]


def p(*a):
    print(*a, flush=True)


def first_line(e):
    return (e.pgerror or "").splitlines()[0] if e.pgerror else ""


def passthrough():
    c = psycopg2.connect(dsn)
    cur = c.cursor()
    cur.execute("DROP TABLE IF EXISTS psycopg2_t")
    cur.execute("CREATE TABLE psycopg2_t (id serial PRIMARY KEY, name text UNIQUE, n bigint, j jsonb)")
    c.commit()
    cur.executemany("INSERT INTO psycopg2_t (name, n, j) VALUES (%s, %s, %s)",
                    [("n%d" % i, i, json.dumps({"i": i})) for i in range(30)])
    p("executemany", cur.rowcount)
    psycopg2.extras.execute_values(cur, "INSERT INTO psycopg2_t (name, n) VALUES %s RETURNING id", [("v%d" % i, i) for i in range(5)])
    p("execute_values", cur.fetchall())
    psycopg2.extras.execute_batch(cur, "UPDATE psycopg2_t SET n = n + %s WHERE name = %s", [(100, "v%d" % i) for i in range(5)])
    c.commit()
    # Server-side (named) cursors: DECLARE, then FETCH FORWARD itersize.
    nc = c.cursor("named1")
    nc.itersize = 4
    nc.execute("SELECT name, n FROM psycopg2_t WHERE n > %s ORDER BY n", (20,))
    p("named cursor", [r for r in nc])
    nc.close()
    nc = c.cursor("named2", withhold=True)
    nc.execute("SELECT id FROM stripe.customers ORDER BY id")
    first = nc.fetchmany(2)
    c.commit()
    p("named cursor with hold", len(first), len(nc.fetchall()) > 0)
    nc.close()
    c.commit()
    cur.copy_expert("COPY psycopg2_t (name, n) FROM STDIN", io.StringIO("c1\t1\nc2\t2\n"))
    p("copy in", cur.rowcount)
    out = io.StringIO()
    cur.copy_expert("COPY (SELECT name, n FROM psycopg2_t WHERE name LIKE 'c%' ORDER BY 1) TO STDOUT WITH CSV HEADER", out)
    p("copy out", repr(out.getvalue()))
    try:
        cur.copy_expert("COPY psycopg2_t (name, n) FROM STDIN", io.StringIO("c3\tnotanumber\n"))
    except psycopg2.Error as e:
        p("copy error", e.pgcode)
    c.rollback()
    try:
        cur.execute("SELECT 1/0")
    except psycopg2.Error as e:
        p("error", e.pgcode, type(e).__name__, first_line(e))
    try:
        cur.execute("SELECT 1")
    except psycopg2.Error as e:
        p("in a failed transaction", e.pgcode)
    c.rollback()
    cur.execute("SELECT %s::text, %s, %s::jsonb", ("it's", 1.5, json.dumps({"a": [1, 2]})))
    p("interpolation", cur.fetchone())
    cur.execute("SAVEPOINT a")
    try:
        cur.execute("INSERT INTO psycopg2_t (name) VALUES ('n1')")
    except psycopg2.Error as e:
        p("savepoint", e.pgcode, e.diag.constraint_name, e.diag.table_name)
        cur.execute("ROLLBACK TO SAVEPOINT a")
    cur.execute("UPDATE psycopg2_t SET n = n + 100 WHERE name = 'n1'")
    c.commit()
    cur.execute("SELECT n FROM psycopg2_t WHERE name = 'n1'")
    p("savepoint then", cur.fetchone())
    c.commit()
    c.autocommit = True
    # LISTEN, NOTIFY from another session, conn.poll().
    other = psycopg2.connect(dsn)
    other.autocommit = True
    cur.execute("LISTEN psycopg2_channel")
    other.cursor().execute("NOTIFY psycopg2_channel, 'payload'")
    got, deadline = [], time.time() + 5
    while time.time() < deadline and not got:
        if select.select([c], [], [], 0.5) != ([], [], []):
            c.poll()
            while c.notifies:
                n = c.notifies.pop(0)
                got.append((n.channel, n.payload, n.pid == other.get_backend_pid()))
    p("notify", got)
    other.close()
    # conn.cancel(): a CancelRequest through the proxy.
    threading.Timer(0.3, c.cancel).start()
    t0 = time.time()
    try:
        cur.execute("SELECT pg_sleep(10)")
    except psycopg2.Error as e:
        p("cancel", e.pgcode, time.time() - t0 < 5)
    cur.execute("SELECT 'after the cancel'")
    p(cur.fetchone())
    cur.execute("DROP TABLE psycopg2_t")
    c.close()


def write():
    tag = "psycopg2"
    c = psycopg2.connect(dsn)
    cur = c.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    # psycopg2 opens a transaction before the first statement.
    cur.execute("INSERT INTO stripe.customers (email, metadata, balance) VALUES (%s, %s, %s) RETURNING id, email, metadata, balance",
                (tag + "@example.test", json.dumps({"src": "py"}), -5))
    r = cur.fetchone()
    cid = r["id"]
    p("insert", cur.statusmessage, r["id"].startswith("cus_"), r["email"], r["metadata"], r["balance"])
    p("notices", [n.strip().splitlines()[0] for n in c.notices])
    c.rollback()
    cur.execute("SELECT count(*) AS n FROM stripe.customers WHERE id = %s", (cid,))
    p("after rollback", cur.fetchone()["n"])
    c.commit()
    cur.execute("UPDATE stripe.customers SET metadata = metadata || %s::jsonb, description = %s WHERE id = %s RETURNING metadata, description",
                (json.dumps({"plan": "pro"}), "it's psycopg2", cid))
    p("update", cur.statusmessage, dict(cur.fetchone()))
    c.commit()
    cur.executemany("INSERT INTO stripe.customers (email, name) VALUES (%s, %s)", [("%s-m%d@example.test" % (tag, i), "M%d" % i) for i in range(3)])
    p("executemany", cur.rowcount)
    c.commit()
    psycopg2.extras.execute_values(cur, "INSERT INTO stripe.customers (email) VALUES %s RETURNING email", [("%s-v%d@example.test" % (tag, i),) for i in range(3)])
    p("execute_values", sorted(r["email"] for r in cur.fetchall()))
    c.commit()
    # execute_batch joins the statements with ';': one multi-statement Query.
    try:
        psycopg2.extras.execute_batch(cur, "UPDATE stripe.customers SET name = %s WHERE email = %s", [("EB%d" % i, "%s-m%d@example.test" % (tag, i)) for i in range(3)])
        p("execute_batch", cur.rowcount)
    except psycopg2.Error as e:
        p("execute_batch", e.pgcode, first_line(e))
    c.rollback()
    nc = c.cursor("named_read")
    nc.execute("SELECT email FROM stripe.customers WHERE email LIKE %s ORDER BY email", (tag + "-%",))
    p("named cursor", [r[0] for r in nc.fetchall()])
    nc.close()
    c.rollback()
    # DECLARE … CURSOR FOR UPDATE …: Postgres's own syntax error.
    try:
        nc = c.cursor("named_write")
        nc.execute("UPDATE stripe.customers SET name = 'cursor' WHERE email LIKE %s RETURNING email", (tag + "-m%",))
        p("named cursor write", nc.fetchall())
    except psycopg2.Error as e:
        p("named cursor write", e.pgcode, first_line(e))
    c.rollback()
    for q, a in [("INSERT INTO stripe.customers (nonsense) VALUES (%s)", (1,)),
                 ("INSERT INTO stripe.customers (email, tax_exempt) VALUES (%s, %s)", (tag + "-x@example.test", "bogus")),
                 ("DELETE FROM stripe.prices WHERE id = %s", ("price_none",)),
                 ("UPDATE stripe.customers SET name = %s WHERE id = %s", ("x", "cus_none")),
                 ("INSERT INTO stripe.subscriptions (customer, items) VALUES (%s, %s)", ("cus_none", json.dumps([{"price": "price_none"}])))]:
        try:
            cur.execute(q, a)
            p("no error", cur.statusmessage)
        except psycopg2.Error as e:
            p("error", e.pgcode, type(e).__name__, "detail" if e.diag.message_detail else "no detail", e.diag.message_hint)
        c.rollback()
    out = io.StringIO()
    cur.copy_expert("COPY (SELECT email FROM stripe.customers WHERE email LIKE 'psycopg2-m%' ORDER BY 1) TO STDOUT", out)
    p("copy out", out.getvalue().split())
    try:
        cur.copy_expert("COPY stripe.customers (email) FROM STDIN", io.StringIO(tag + "-copy@example.test\n"))
        p("copy in: no error")
    except psycopg2.Error as e:
        p("copy in", e.pgcode)
    c.rollback()
    c.autocommit = True
    # client_encoding LATIN1 (psql on a Windows console, or this): values
    # reach Stripe as UTF-8; a literal Stripe would get in Latin-1 is refused.
    c.set_client_encoding("LATIN1")
    cur.execute("UPDATE stripe.customers SET name = 'M' || chr(252) || 'ller' WHERE id = %s RETURNING name", (cid,))
    p("latin1 expression", cur.fetchone()["name"])
    try:
        cur.execute("UPDATE stripe.customers SET name = %s WHERE id = %s", ("K\u00f6nig", cid))
        p("latin1 literal: no error")
    except psycopg2.Error as e:
        p("latin1 literal", e.pgcode, first_line(e))
    c.set_client_encoding("UTF8")
    cur.execute("SELECT name, _raw->>'name' AS raw FROM stripe.customers WHERE id = %s", (cid,))
    p("latin1 read", dict(cur.fetchone()))
    cur.execute("DELETE FROM stripe.customers WHERE email LIKE %s RETURNING email", (tag + "%",))
    p("delete", cur.statusmessage, len(cur.fetchall()))
    cur.execute("SELECT count(*) AS n FROM stripe.customers WHERE email LIKE %s", (tag + "%",))
    p("delete left", cur.fetchone()["n"])
    c.close()


passthrough() if mode == "pass" else write()
