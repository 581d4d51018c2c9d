package proxy_test

// A seeded, randomized differential test: random sequences of frontend
// messages (simple and extended protocol, pipelines, transactions, COPY,
// LISTEN/NOTIFY, SET, writes the proxy intercepts) go to Postgres directly
// and through the proxy, each on its own copy of the same database, and the
// backend message transcripts must be the same.
//
//	go test ./proxy/ -run TestDifferential                    # CI: seeds 1-64
//	PGSTRIPE_DIFF_ITER=5000 PGSTRIPE_DIFF_SEED=1000 go test ./proxy/ -run TestDifferential -timeout 1h
//	PGSTRIPE_DIFF_SEED=1234 PGSTRIPE_DIFF_ITER=1 go test ./proxy/ -run 'TestDifferential/relay$' -v
//
// (PGSTRIPE_DIFF_WORKERS sets the parallelism.) A mismatch is reported with
// its seed and the sequence reduced to the actions that still show it.
//
// Two proxies are tested:
//
//   - relay: a test interceptor takes every write to stripe.w and
//     stripe.wf. It runs writes to stripe.w on the client's connection as they
//     are (call.Upstream, like writethrough's relay of statements that turn
//     out not to be its own) and forwards the result; it hands multi-statement
//     queries and statements marked /*fwd*/ back (call.Forward); it refuses
//     writes to stripe.wf with the error Postgres itself gives for them (a
//     statement trigger), without touching upstream. So every reply must be
//     exactly Postgres's, and the interception machinery (barrier, failure
//     state, row limits, portals, pipelines) is compared with Postgres.
//   - writethrough: the real write-through (emulator behind it) in front of
//     a migrated database. Reads of stripe.* pass through and must be exact.
//     Writes are only ones the write-through refuses before calling Stripe;
//     on the direct side a statement trigger on every stripe table refuses
//     them (SQLSTATE ZZ001): that error must line up with the proxy's refusal
//     (0A000, 42703, …), and everything else (transaction state, the rest of
//     the pipeline, later statements) must be exact. Unqualified names
//     (INSERT INTO customers …) go to public.customers or stripe.customers
//     depending on a search_path the sequence changes: the first is relayed
//     or forwarded by the write-through and must be exact. No Stripe call may
//     be made.
//
// Normalised, as they legitimately differ: the backend PID of notifications,
// OIDs of tables created during the sequence (temporary tables), and in
// writethrough mode the File/Line/Routine/Position of errors the
// write-through composes itself (they are not Postgres's), and its reason
// for refusing a write in a read-only transaction (Postgres says 25006
// first).
//
// Known differences the generator stays clear of: an Execute or Describe of
// the unnamed portal left by a simple Query that failed in a transaction
// block (Postgres: 25P02; through the proxy, when the Query was intercepted
// and never reached upstream: 34000); FETCH or MOVE by SQL on a portal the
// client bound to an intercepted statement (the proxy refuses it, 0A000:
// TestFetchOfInterceptedPortalRefused); and the interceptor's own queries on the
// client's connection advance the command counter, which a later statement
// in the same implicit transaction can notice (an Execute with a row limit
// that the interceptor ran to completion, then a Query, no Sync between).

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/proxy"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/writethrough"
)

// diffSeedsCI is the number of seeds per mode when PGSTRIPE_DIFF_ITER is not
// set: a few seconds in all.
const diffSeedsCI = 64

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil {
			return n
		}
	}
	return def
}

func TestDifferential(t *testing.T) {
	iter := envInt("PGSTRIPE_DIFF_ITER", diffSeedsCI)
	first := envInt("PGSTRIPE_DIFF_SEED", 1)
	workers := envInt("PGSTRIPE_DIFF_WORKERS", min(4, max(2, runtime.GOMAXPROCS(0))))
	for _, m := range []*diffMode{relayMode(), writethroughMode()} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			env := newDiffEnv(t, m)
			ws := make([]*diffWorker, min(workers, iter))
			for i := range ws {
				ws[i] = env.newWorker(t)
			}
			seeds := make(chan uint64)
			var failures atomic.Int32
			var wg sync.WaitGroup
			for _, w := range ws {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for seed := range seeds {
						w.check(t, seed, &failures)
					}
				}()
			}
			start := time.Now()
			for i := range iter {
				if failures.Load() >= 5 {
					t.Logf("stopping after 5 mismatches")
					break
				}
				seeds <- uint64(first + i)
			}
			close(seeds)
			wg.Wait()
			t.Logf("%d seeds from %d in %v", iter, first, time.Since(start).Round(time.Millisecond))
			if calls := env.stripeCalls.Load(); calls != 0 {
				t.Errorf("%d Stripe calls: only refused writes were sent", calls)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Statements and sequences

type paramKind uint8

const (
	pInt paramKind = iota
	pText
	pTS
	pCus
)

var paramOID = map[paramKind]uint32{pInt: 23, pText: 25, pTS: 1184, pCus: 25}

// stmt is one statement the generator may send.
type stmt struct {
	sql    string
	params []paramKind
	w      int  // weight
	simple bool // may be sent as a simple Query (no $n)
	ext    bool // may be sent with Parse (a single statement)
	multi  bool // may be joined with others into one Query
}

// st: a statement usable everywhere; with params only in the extended
// protocol.
func st(sql string, w int, params ...paramKind) stmt {
	s := stmt{sql: sql, params: params, w: w, ext: true}
	if len(params) == 0 {
		s.simple, s.multi = true, true
	}
	return s
}

// simpleOnly: a statement (or several) only a simple Query can carry.
func simpleOnly(sql string, w int) stmt { return stmt{sql: sql, w: w, simple: true} }

// alone: a statement that must not be joined with others.
func alone(s stmt) stmt { s.multi = false; return s }

var commonStmts = []stmt{
	st("SELECT 1", 3),
	st("SELECT $1::int + 1 AS n", 3, pInt),
	st("SELECT id, s, n FROM t ORDER BY id", 3),
	st("SELECT id, s FROM t WHERE id > $1 ORDER BY id", 2, pInt),
	st("SELECT g, 'row ' || g AS r FROM generate_series(1, 5) g", 2),
	st("SELECT g FROM generate_series(1, $1::int) g", 2, pInt),
	st("VALUES (1, 'a'), (2, 'b'), (3, NULL)", 1),
	st("SELECT 1/0", 2),
	st("SELECT nosuchcol FROM t", 1),
	st("SELEC 1", 1),
	alone(st("", 1)),
	st("SELECT $1::text AS a, $2::text AS b", 1, pText, pText),
	st("INSERT INTO t (id, s, n) VALUES ($1, $2, $3)", 3, pInt, pText, pInt),
	st("INSERT INTO t (id, s) VALUES (20, 'x'), (21, 'y') RETURNING id, s", 2),
	st("UPDATE t SET n = coalesce(n, 0) + 1 WHERE id <= $1 RETURNING id, n", 2, pInt),
	st("UPDATE t SET s = 'upd' WHERE id = 2", 1),
	st("DELETE FROM t WHERE id = $1 RETURNING id, s", 2, pInt),
	st("SELECT count(*) FROM t", 1),
	st("SELECT * FROM t WHERE id = 1 FOR UPDATE", 1),
	st("TRUNCATE t", 1),
	st("LOCK TABLE t IN SHARE MODE", 1),
	st("SHOW application_name", 1),
	st("SHOW DateStyle", 1),
	st("SET application_name = 'app1'", 2),
	st("SET application_name = 'app2'", 1),
	st("SET SESSION application_name TO DEFAULT", 1),
	st("SET DateStyle = 'SQL, DMY'", 1),
	st("SET DateStyle = 'ISO, MDY'", 1),
	st("SET TimeZone = 'America/New_York'", 1),
	st("SET TimeZone = 'UTC'", 1),
	st("SET LOCAL application_name = 'local'", 2),
	st("SET LOCAL TimeZone = 'Asia/Tokyo'", 1),
	st("SET IntervalStyle = 'postgres_verbose'", 1),
	st("RESET ALL", 1),
	st("SELECT '2024-01-02 03:04:05+00'::timestamptz AS ts, interval '1 day 2 hours' AS iv, '2024-03-04'::date AS d", 2),
	st("BEGIN", 6),
	st("BEGIN ISOLATION LEVEL REPEATABLE READ", 1),
	st("START TRANSACTION READ ONLY", 1),
	st("COMMIT", 4),
	st("ROLLBACK", 4),
	st("END", 1),
	st("ABORT", 1),
	st("COMMIT AND CHAIN", 1),
	st("ROLLBACK AND CHAIN", 1),
	st("SAVEPOINT a", 3),
	st("SAVEPOINT b", 1),
	st("ROLLBACK TO SAVEPOINT a", 3),
	st("ROLLBACK TO b", 1),
	st("RELEASE SAVEPOINT a", 1),
	st("LISTEN ch", 2),
	st("LISTEN other", 1),
	st("UNLISTEN ch", 1),
	st("UNLISTEN *", 1),
	st("NOTIFY ch, 'hello'", 2),
	st("NOTIFY other", 1),
	st("SELECT pg_notify('ch', $1)", 1, pText),
	st("DO $$BEGIN RAISE NOTICE 'note %', 42; END$$", 1),
	st("DO $$BEGIN RAISE WARNING 'careful'; END$$", 1),
	st("DO $$BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = 'P0001', DETAIL = 'det', HINT = 'hint'; END$$", 1),
	st("CREATE TEMP TABLE tt (a int)", 1),
	st("INSERT INTO tt VALUES (1), (2)", 1),
	st("SELECT a FROM tt ORDER BY a", 1),
	st("DROP TABLE tt", 1),
	st("DECLARE cur CURSOR FOR SELECT g FROM generate_series(1, 5) g", 1),
	st("DECLARE p1 CURSOR FOR SELECT g FROM generate_series(1, 3) g", 1),
	st("FETCH 2 FROM cur", 1),
	st("FETCH ALL FROM cur", 1),
	st("CLOSE cur", 1),
	st("CLOSE p1", 1),
	st("CLOSE ALL", 1),
	st("PREPARE ps AS SELECT $1::int * 2", 1),
	st("EXECUTE ps(21)", 1),
	st("DEALLOCATE ps", 1),
	st("PREPARE s1 AS SELECT 'sql-prepared' AS x", 1),
	st("DEALLOCATE s1", 1),
	st("DEALLOCATE ALL", 1),
	st("DISCARD ALL", 1),
	st("SELECT pg_sleep(0)", 1),
	// Longer than the proxy's read buffer (32 kB).
	st("SELECT length('"+strings.Repeat("big ", 9000)+"') AS big", 1),
	st("COPY t TO STDOUT", 1),
	st("COPY (SELECT g, 'x' FROM generate_series(1, 3) g) TO STDOUT (FORMAT csv, HEADER)", 1),
	st("COPY t (id, s) TO STDOUT (FORMAT binary)", 1),
	simpleOnly("SELECT 1; SELECT 1/0; SELECT 2", 1),
	simpleOnly("BEGIN; INSERT INTO t (id, s) VALUES (30, 'thirty'); COMMIT", 1),
}

// diffMode is one proxy configuration under test.
type diffMode struct {
	name    string
	migrate bool
	setup   string // on the template database
	reset   string // before each run, on both copies
	// proxied is run on the proxied copy only: there the statement
	// triggers that stand for the interceptor's refusals say the write
	// reached Postgres, which it must not through the proxy.
	proxied string
	final   []string // after each run, on both copies: the effects
	stmts   []stmt
	copyIn  []string // COPY … FROM STDIN statements
	// refused: the direct side's trigger error (ZZ001) stands for a
	// write-through refusal with one of these codes.
	refused map[string]bool
}

const tSetup = `
CREATE TABLE t (id int PRIMARY KEY, s text, n int) WITH (autovacuum_enabled = false);
`

const tReset = `INSERT INTO t (id, s, n) VALUES (1, 'one', 1), (2, 'two', NULL), (3, 'three', 3), (4, NULL, 4);`

func relayMode() *diffMode {
	m := &diffMode{
		name: "relay",
		setup: tSetup + `
CREATE SCHEMA stripe;
CREATE TABLE stripe.w (id serial PRIMARY KEY, v text, n int) WITH (autovacuum_enabled = false);
CREATE TABLE stripe.wf (id serial PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
CREATE FUNCTION wf_refuse() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN RAISE EXCEPTION 'stripe said no' USING ERRCODE = 'P0001', DETAIL = 'request req_123'; END$$;
CREATE TRIGGER wf_refuse BEFORE INSERT OR UPDATE OR DELETE ON stripe.wf FOR EACH STATEMENT EXECUTE FUNCTION wf_refuse();
CREATE FUNCTION w_notice() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN RAISE NOTICE 'w: % done', TG_OP; RETURN NULL; END$$;
CREATE TRIGGER w_notice AFTER INSERT OR UPDATE OR DELETE ON stripe.w FOR EACH STATEMENT EXECUTE FUNCTION w_notice();
`,
		proxied: `CREATE OR REPLACE FUNCTION wf_refuse() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN RAISE EXCEPTION 'a write to stripe.wf reached Postgres through the proxy' USING ERRCODE = 'ZZ999'; END$$;`,
		reset: `TRUNCATE t, stripe.w, stripe.wf RESTART IDENTITY; ` + tReset + `
INSERT INTO stripe.w (v, n) VALUES ('seed', 1), ('seed2', 2);`,
		final: []string{
			"SELECT id, s, n FROM t ORDER BY id",
			"SELECT id, v, n FROM stripe.w ORDER BY id",
			"SELECT count(*) FROM stripe.wf",
			"SELECT last_value, is_called FROM stripe.w_id_seq",
		},
		copyIn: []string{"COPY t FROM STDIN", "COPY t (id, s) FROM STDIN (FORMAT csv)", "COPY stripe.w (v, n) FROM STDIN"},
	}
	m.stmts = append(append([]stmt(nil), commonStmts...),
		st("INSERT INTO stripe.w (v, n) VALUES ($1, $2) RETURNING id, v, n", 4, pText, pInt),
		st("INSERT INTO stripe.w (v) VALUES ('a'), ('b'), ('c') RETURNING id, v", 4),
		st("UPDATE stripe.w SET n = coalesce(n, 0) + 1 RETURNING id, n", 2),
		st("UPDATE stripe.w SET v = $1 WHERE id = $2", 2, pText, pInt),
		st("DELETE FROM stripe.w WHERE id = $1 RETURNING id, v", 2, pInt),
		st("DELETE FROM stripe.w WHERE v = 'a'", 1),
		st("INSERT INTO stripe.w (id, v) VALUES (1, 'dup')", 2),
		st("INSERT INTO stripe.w (v) VALUES ('fwd') RETURNING id /*fwd*/", 2),
		simpleOnly("INSERT INTO stripe.w (v) VALUES ('m1'); SELECT count(*) FROM stripe.w", 2),
		alone(st("INSERT INTO stripe.wf (v) VALUES ($1) RETURNING id", 2, pText)),
		alone(st("UPDATE stripe.wf SET v = 'x'", 1)),
		alone(st("DELETE FROM stripe.wf", 1)),
		st("SELECT id, v, n FROM stripe.w ORDER BY id", 3),
		st("COPY stripe.w TO STDOUT", 1),
	)
	return m
}

func writethroughMode() *diffMode {
	m := &diffMode{
		name:    "writethrough",
		migrate: true,
		setup: tSetup + `
CREATE TABLE public.customers (id serial PRIMARY KEY, email text, name text, created text, metadata jsonb) WITH (autovacuum_enabled = false);
CREATE TABLE public.prices (id text PRIMARY KEY, active boolean) WITH (autovacuum_enabled = false);
INSERT INTO stripe.customers (id, email, name, created, metadata, _raw, _synced_at, _as_of) VALUES
  ('cus_1', 'a@x.co', 'Ann', '2024-01-01T00:00:00Z', '{"tier": "gold"}', '{}', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z'),
  ('cus_2', 'b@x.co', NULL, '2024-01-02T00:00:00Z', '{}', '{}', '2024-01-02T00:00:00Z', '2024-01-02T00:00:00Z'),
  ('cus_3', NULL, 'Cy', '2024-01-03T00:00:00Z', NULL, '{}', '2024-01-03T00:00:00Z', '2024-01-03T00:00:00Z');
INSERT INTO stripe.prices (id, active, unit_amount, currency, _raw, _synced_at, _as_of) VALUES
  ('price_1', true, 500, 'usd', '{}', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z');
INSERT INTO stripe.tax_ids (id, value, customer, _raw, _synced_at, _as_of) VALUES
  ('txi_1', 'DE123', 'cus_1', '{}', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z');
CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN RAISE EXCEPTION 'write to a stripe table' USING ERRCODE = 'ZZ001'; END$$;
DO $$DECLARE r record; BEGIN
  FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = 'stripe' LOOP
    EXECUTE format('CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON stripe.%I FOR EACH STATEMENT EXECUTE FUNCTION public.refuse()', r.tablename);
  END LOOP;
END$$;
`,
		proxied: `CREATE OR REPLACE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN RAISE EXCEPTION 'a write to a stripe table reached Postgres through the proxy' USING ERRCODE = 'ZZ999'; END$$;`,
		reset: `TRUNCATE t, public.customers, public.prices RESTART IDENTITY; ` + tReset + `
INSERT INTO public.customers (email, name, created) VALUES ('p@x.co', 'Pat', 'yesterday');
INSERT INTO public.prices VALUES ('price_1', true);`,
		final: []string{
			"SELECT id, s, n FROM t ORDER BY id",
			"SELECT id, email, name, created, metadata FROM public.customers ORDER BY id",
			"SELECT id, active FROM public.prices ORDER BY id",
			"SELECT id, email, name, metadata FROM stripe.customers ORDER BY id",
			"SELECT last_value, is_called FROM public.customers_id_seq",
		},
		copyIn:  []string{"COPY t FROM STDIN", "COPY t (id, s) FROM STDIN (FORMAT csv)"},
		refused: map[string]bool{"0A000": true, "42703": true},
	}
	m.stmts = append(append([]stmt(nil), commonStmts...),
		// Reads of stripe tables pass through.
		st("SELECT id, email, name, created, metadata FROM stripe.customers ORDER BY id", 3),
		st("SELECT * FROM stripe.customers WHERE id = $1", 2, pCus),
		st("SELECT count(*) FROM stripe.prices", 1),
		st("SELECT id, email FROM customers ORDER BY id", 2),
		st("SELECT id FROM stripe.customers ORDER BY id FOR UPDATE", 1),
		st("COPY stripe.customers (id, email) TO STDOUT", 1),
		st("SET search_path = stripe, public", 3),
		st("SET search_path = public", 1),
		st("RESET search_path", 1),
		st("SET LOCAL search_path = stripe", 1),
		// Writes the write-through refuses before any Stripe call.
		alone(st("INSERT INTO stripe.customers (email, created) VALUES ('a@b.co', '2024-01-01')", 2)),
		alone(st("INSERT INTO stripe.customers (email, created) VALUES ($1, $2) RETURNING id, email", 2, pText, pTS)),
		alone(st("INSERT INTO stripe.customers VALUES ('cus_x')", 1)),
		alone(st("INSERT INTO stripe.customers (email, shoe_size) VALUES ('a@b.co', 42)", 1)),
		alone(st(`UPDATE stripe.customers SET metadata['plan'] = '"pro"' WHERE id = 'cus_1'`, 1)),
		alone(st("UPDATE stripe.customers SET (name, phone) = (SELECT 'a', 'b') WHERE id = 'cus_1'", 1)),
		alone(st("UPDATE stripe.tax_ids SET value = 'x' WHERE id = 'txi_1'", 1)),
		alone(st("DELETE FROM stripe.prices WHERE id = 'price_1'", 1)),
		alone(st("DELETE FROM stripe.prices WHERE id = $1", 1, pText)),
		alone(st("TRUNCATE stripe.customers", 1)),
		alone(st("WITH n AS (INSERT INTO stripe.customers (email) VALUES ('a') RETURNING id) SELECT * FROM n", 1)),
		alone(st("MERGE INTO stripe.customers c USING (SELECT 'cus_1' AS id) s ON c.id = s.id WHEN MATCHED THEN UPDATE SET name = 'm'", 1)),
		alone(st("EXPLAIN ANALYZE DELETE FROM stripe.customers WHERE id = 'nope'", 1)),
		// Unqualified: public.customers (relayed, forwarded) or
		// stripe.customers (refused), by search_path.
		alone(st("INSERT INTO customers (email, created) VALUES ('u@b.co', '2024-01-01')", 2)),
		alone(st("INSERT INTO customers (email, created) VALUES ($1, $2) RETURNING email", 2, pText, pTS)),
		alone(st("DELETE FROM prices WHERE id = 'price_1'", 1)),
		alone(st("TRUNCATE customers", 1)),
		alone(st(`UPDATE customers SET metadata['plan'] = '"pro"' WHERE email = 'p@x.co'`, 1)),
		simpleOnly("INSERT INTO customers (email) VALUES ('m@b.co'); SELECT count(*) FROM customers", 2),
	)
	return m
}

// phase is messages sent together, then (drain) replies read until every
// request has been answered or the server waits for COPY data.
type phase struct {
	msgs  []pgproto3.FrontendMessage
	drain bool
}

// action is the unit the generator makes and the minimizer removes.
type action struct {
	what   string
	phases []phase
}

type program []action

func (p program) String() string {
	var b strings.Builder
	for _, a := range p {
		fmt.Fprintf(&b, "# %s\n", a.what)
		for _, ph := range a.phases {
			for _, m := range ph.msgs {
				fmt.Fprintf(&b, "F %s\n", shorten(m))
			}
			if ph.drain {
				b.WriteString("R\n")
			}
		}
	}
	return b.String()
}

// shorten is m as JSON, long strings cut.
func shorten(m pgproto3.FrontendMessage) string {
	j, _ := json.Marshal(m)
	return longString.ReplaceAllStringFunc(string(j), func(s string) string {
		return fmt.Sprintf("%s…(%d bytes)", s[:40], len(s))
	})
}

var longString = regexp.MustCompile(`[^"]{300,}`)

type generator struct {
	r      *rand.Rand
	m      *diffMode
	total  int
	parsed map[string]stmt // statement name → what was last parsed under it
}

func (g *generator) chance(p float64) bool { return g.r.Float64() < p }

func pick[T any](g *generator, xs ...T) T { return xs[g.r.IntN(len(xs))] }

func (g *generator) stmt(ok func(stmt) bool) stmt {
	if g.total == 0 {
		for _, s := range g.m.stmts {
			g.total += s.w
		}
	}
	for {
		n := g.r.IntN(g.total)
		for _, s := range g.m.stmts {
			if n < s.w {
				if ok(s) {
					return s
				}
				break
			}
			n -= s.w
		}
	}
}

func (g *generator) paramValue(k paramKind) ([]byte, int16) {
	switch k {
	case pInt:
		switch {
		case g.chance(0.05):
			return []byte("abc"), 0
		case g.chance(0.05):
			return nil, 0
		case g.chance(0.1):
			return binary.BigEndian.AppendUint32(nil, uint32(1+g.r.IntN(6))), 1
		}
		return []byte(strconv.Itoa(1 + g.r.IntN(6))), 0
	case pTS:
		return []byte(pick(g, "2024-01-01", "2024-02-03 04:05:06+00")), 0
	case pCus:
		return []byte(pick(g, "cus_1", "cus_2", "cus_3", "cus_9")), 0
	}
	if g.chance(0.05) {
		return nil, 0
	}
	return []byte(pick(g, "a", "hello", "fail", "two words")), 0
}

func (g *generator) bind(portal, name string, s stmt) *pgproto3.Bind {
	b := &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: name}
	binaryParam := false
	for _, k := range s.params {
		v, f := g.paramValue(k)
		b.Parameters = append(b.Parameters, v)
		b.ParameterFormatCodes = append(b.ParameterFormatCodes, f)
		binaryParam = binaryParam || f == 1
	}
	if !binaryParam && g.chance(0.7) {
		b.ParameterFormatCodes = nil
	}
	if len(b.Parameters) > 0 && g.chance(0.03) {
		b.Parameters = b.Parameters[:len(b.Parameters)-1] // wrong count
		if len(b.ParameterFormatCodes) > 1 {
			b.ParameterFormatCodes = b.ParameterFormatCodes[:len(b.Parameters)]
		}
	}
	if g.chance(0.1) {
		b.ResultFormatCodes = []int16{1}
	}
	return b
}

func (g *generator) parse(name string, s stmt) *pgproto3.Parse {
	p := &pgproto3.Parse{Name: name, Query: s.sql}
	if g.chance(0.5) {
		for _, k := range s.params {
			p.ParameterOIDs = append(p.ParameterOIDs, paramOID[k])
		}
	}
	g.parsed[name] = s
	return p
}

func (g *generator) stmtName() string {
	if g.chance(0.6) {
		return ""
	}
	return pick(g, "s1", "s2", "s3")
}

func (g *generator) portalName() string {
	if g.chance(0.6) {
		return ""
	}
	return pick(g, "p1", "p2")
}

// end appends what closes a batch, and says whether to read.
func (g *generator) end(msgs []pgproto3.FrontendMessage) phase {
	switch x := g.r.Float64(); {
	case x < 0.55:
		return phase{append(msgs, &pgproto3.Sync{}), true}
	case x < 0.7:
		return phase{append(msgs, &pgproto3.Sync{}), false}
	case x < 0.8:
		return phase{append(msgs, &pgproto3.Flush{}), true}
	}
	return phase{msgs, false}
}

func (g *generator) copyData(sql string) []pgproto3.FrontendMessage {
	var rows []string
	for range 1 + g.r.IntN(3) {
		id := 30 + g.r.IntN(20)
		switch {
		case g.chance(0.08):
			rows = append(rows, "x\tbad\n")
		case strings.Contains(sql, "csv"):
			rows = append(rows, fmt.Sprintf("%d,csv %d\n", id, id))
		case strings.Contains(sql, "stripe.w"):
			rows = append(rows, fmt.Sprintf("copied %d\t%d\n", id, id))
		default:
			rows = append(rows, fmt.Sprintf("%d\tcopy %d\t\\N\n", id, id))
		}
	}
	var msgs []pgproto3.FrontendMessage
	if g.chance(0.5) {
		msgs = append(msgs, &pgproto3.CopyData{Data: []byte(strings.Join(rows, ""))})
	} else {
		for _, r := range rows {
			msgs = append(msgs, &pgproto3.CopyData{Data: []byte(r)})
		}
	}
	if g.chance(0.12) {
		return append(msgs, &pgproto3.CopyFail{Message: "client gave up"})
	}
	return append(msgs, &pgproto3.CopyDone{})
}

func (g *generator) action() action {
	switch x := g.r.IntN(100); {
	case x < 30: // simple Query
		s := g.stmt(func(s stmt) bool { return s.simple })
		return action{"query", []phase{{[]pgproto3.FrontendMessage{&pgproto3.Query{String: s.sql}}, g.chance(0.85)}}}
	case x < 36: // several statements in one Query
		n := 2 + g.r.IntN(2)
		var parts []string
		for range n {
			parts = append(parts, g.stmt(func(s stmt) bool { return s.multi }).sql)
		}
		return action{"multi-statement query", []phase{{[]pgproto3.FrontendMessage{&pgproto3.Query{String: strings.Join(parts, "; ")}}, true}}}
	case x < 60: // Parse, Bind, [Describe], Execute…, then Sync/Flush/nothing
		s := g.stmt(func(s stmt) bool { return s.ext })
		name, portal := g.stmtName(), g.portalName()
		msgs := []pgproto3.FrontendMessage{g.parse(name, s), g.bind(portal, name, s)}
		if g.chance(0.4) {
			msgs = append(msgs, &pgproto3.Describe{ObjectType: 'P', Name: portal})
		} else if g.chance(0.15) {
			msgs = append(msgs, &pgproto3.Describe{ObjectType: 'S', Name: name})
		}
		maxRows := uint32(0)
		if g.chance(0.3) {
			maxRows = uint32(1 + g.r.IntN(3))
		}
		msgs = append(msgs, &pgproto3.Execute{Portal: portal, MaxRows: maxRows})
		if maxRows > 0 && g.chance(0.6) {
			msgs = append(msgs, &pgproto3.Execute{Portal: portal, MaxRows: pick(g, 0, maxRows)})
		}
		if maxRows > 0 && relayClassify(s.sql) == proxy.Intercept {
			// The relay runs the statement to completion, which lets a
			// later statement of the same implicit transaction see its
			// rows where Postgres's suspended portal would not (a known
			// difference, see the top): end the transaction.
			return action{"extended", []phase{{append(msgs, &pgproto3.Sync{}), g.chance(0.7)}}}
		}
		return action{"extended", []phase{g.end(msgs)}}
	case x < 64:
		s := g.stmt(func(s stmt) bool { return s.ext })
		return action{"parse", []phase{{[]pgproto3.FrontendMessage{g.parse(pick(g, "s1", "s2", "s3"), s)}, false}}}
	case x < 68:
		name := pick(g, "", "s1", "s2", "s3")
		s, ok := g.parsed[name]
		if !ok {
			s = g.stmt(func(s stmt) bool { return s.ext })
		}
		return action{"bind", []phase{{[]pgproto3.FrontendMessage{g.bind(pick(g, "", "p1", "p2"), name, s)}, false}}}
	case x < 72:
		// (Not the unnamed portal: after a simple Query, Postgres may
		// still have the one of a statement that failed in a transaction
		// block, which an intercepted Query never creates.)
		e := &pgproto3.Execute{Portal: pick(g, "p1", "p2")}
		if g.chance(0.4) {
			e.MaxRows = uint32(1 + g.r.IntN(2))
		}
		return action{"execute", []phase{g.end([]pgproto3.FrontendMessage{e})}}
	case x < 74:
		d := &pgproto3.Describe{ObjectType: 'S', Name: pick(g, "", "s1", "s2")}
		if g.chance(0.5) {
			d = &pgproto3.Describe{ObjectType: 'P', Name: pick(g, "p1", "p2")} // (not "": see execute)
		}
		return action{"describe", []phase{{[]pgproto3.FrontendMessage{d}, false}}}
	case x < 77:
		return action{"close", []phase{{[]pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: pick[byte](g, 'S', 'P'), Name: pick(g, "", "s1", "s2", "p1", "p2")}}, false}}}
	case x < 83:
		return action{"sync", []phase{{[]pgproto3.FrontendMessage{&pgproto3.Sync{}}, g.chance(0.7)}}}
	case x < 85:
		return action{"flush", []phase{{[]pgproto3.FrontendMessage{&pgproto3.Flush{}}, true}}}
	case x < 89: // COPY FROM STDIN, simple protocol
		sql := pick(g, g.m.copyIn...)
		if g.chance(0.15) {
			sql += "; SELECT count(*) FROM t"
		}
		q := &pgproto3.Query{String: sql}
		if g.chance(0.15) { // data sent without waiting for CopyInResponse
			return action{"copy in (simple, blind)", []phase{{append([]pgproto3.FrontendMessage{q}, g.copyData(sql)...), true}}}
		}
		return action{"copy in (simple)", []phase{{[]pgproto3.FrontendMessage{q}, true}, {g.copyData(sql), true}}}
	case x < 93: // COPY FROM STDIN, extended protocol
		sql := pick(g, g.m.copyIn...)
		msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}}
		if g.chance(0.3) {
			msgs = append(msgs, &pgproto3.Describe{ObjectType: 'P'})
		}
		msgs = append(msgs, &pgproto3.Execute{})
		if g.chance(0.7) {
			msgs = append(msgs, &pgproto3.Sync{}) // libpq sends Sync right away
		} else {
			msgs = append(msgs, &pgproto3.Flush{})
		}
		data := append(g.copyData(sql), &pgproto3.Sync{})
		if g.chance(0.15) {
			return action{"copy in (extended, blind)", []phase{{append(msgs, data...), true}}}
		}
		return action{"copy in (extended)", []phase{{msgs, true}, {data, true}}}
	case x < 95: // function call
		fc := &pgproto3.FunctionCall{Function: 177, Arguments: [][]byte{[]byte("1"), []byte("2")}} // int4pl
		if g.chance(0.3) {
			fc.Function = 1
		}
		return action{"function call", []phase{{[]pgproto3.FrontendMessage{fc}, true}}}
	default: // a statement group bound in one batch, executed in a later one
		s := g.stmt(func(s stmt) bool { return s.ext })
		name := pick(g, "s1", "s2")
		portal := pick(g, "p1", "p2")
		return action{"bind now, execute later", []phase{
			{[]pgproto3.FrontendMessage{g.parse(name, s), g.bind(portal, name, s), &pgproto3.Sync{}}, g.chance(0.7)},
			{[]pgproto3.FrontendMessage{g.stmtQuery(), &pgproto3.Execute{Portal: portal, MaxRows: uint32(g.r.IntN(2))}, &pgproto3.Sync{}}, true},
		}}
	}
}

// stmtQuery is a simple Query that may end a transaction or savepoint.
func (g *generator) stmtQuery() *pgproto3.Query {
	return &pgproto3.Query{String: pick(g, "SELECT 1", "COMMIT", "ROLLBACK", "ROLLBACK TO SAVEPOINT a", "BEGIN", "SELECT 1/0")}
}

// finish ends every program: the pipeline is closed and the session's state
// read back.
var finish = action{"end", []phase{
	{[]pgproto3.FrontendMessage{&pgproto3.Sync{}}, true},
	{[]pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT pg_catalog.current_setting('application_name') AS app, pg_catalog.current_setting('search_path') AS path, pg_catalog.current_setting('TimeZone') AS tz"}}, true},
	{[]pgproto3.FrontendMessage{&pgproto3.Query{String: "ROLLBACK"}}, true},
}}

func generate(m *diffMode, seed uint64) program {
	g := &generator{r: rand.New(rand.NewPCG(seed, 0x5eed)), m: m, parsed: map[string]stmt{}}
	n := 4 + g.r.IntN(30)
	p := make(program, 0, n)
	for range n {
		p = append(p, g.action())
	}
	return p
}

// ---------------------------------------------------------------------------
// Running a program

type expKind uint8

const (
	eParse expKind = iota + 1
	eBind
	eDescS
	eDescP
	eExec
	eClose
	eSync
	eQuery
	eFunc
)

func (k expKind) extended() bool { return k >= eParse && k <= eClose }

// expected is a request awaiting its reply. gen and ends count the copy
// messages and the CopyDone/CopyFail sent before it.
type expected struct {
	kind      expKind
	gen, ends int
}

// driver plays a program on one connection and records the transcript. It
// tracks the requests awaiting replies, the way Postgres answers them, to
// know when to stop reading.
type driver struct {
	conn  net.Conn
	fe    *pgproto3.Frontend
	q     []expected
	gen   int
	ends  int
	known map[uint32]bool   // table OIDs of the template
	oids  map[uint32]uint32 // other table OIDs → order of appearance
	out   []line
	dead  bool
	// skipping: an error in an extended-protocol batch was read and no
	// Sync has been sent since; Postgres ignores everything until one.
	skipping bool
}

type line struct {
	text string
	err  *pgproto3.ErrorResponse
}

func (d *driver) send(m pgproto3.FrontendMessage) {
	switch mt := m.(type) {
	case *pgproto3.Parse:
		d.push(eParse)
	case *pgproto3.Bind:
		d.push(eBind)
	case *pgproto3.Describe:
		if mt.ObjectType == 'S' {
			d.push(eDescS)
		} else {
			d.push(eDescP)
		}
	case *pgproto3.Execute:
		d.push(eExec)
	case *pgproto3.Close:
		d.push(eClose)
	case *pgproto3.Sync:
		d.push(eSync)
	case *pgproto3.Query:
		d.push(eQuery)
	case *pgproto3.FunctionCall:
		d.push(eFunc)
	case *pgproto3.CopyData:
		d.gen++
	case *pgproto3.CopyDone, *pgproto3.CopyFail:
		d.gen++
		d.ends++
	}
	d.out = append(d.out, line{text: "F " + shorten(m)})
	d.fe.Send(m)
}

func (d *driver) push(k expKind) {
	if d.skipping {
		if k != eSync {
			return
		}
		d.skipping = false
	}
	d.q = append(d.q, expected{kind: k, gen: d.gen, ends: d.ends})
}

func (d *driver) popIf(kinds ...expKind) {
	if len(d.q) == 0 {
		return
	}
	for _, k := range kinds {
		if d.q[0].kind == k {
			d.q = d.q[1:]
			return
		}
	}
}

// drain reads until every request sent has been answered, or the server
// waits for COPY data.
func (d *driver) drain(timeout time.Duration) {
	d.conn.SetReadDeadline(time.Now().Add(timeout))
	for len(d.q) > 0 {
		msg, err := d.fe.Receive()
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				d.out = append(d.out, line{text: fmt.Sprintf("B !timeout, waiting for %d replies", len(d.q))})
			default:
				d.out = append(d.out, line{text: "B !connection: " + err.Error()})
			}
			d.dead = true
			return
		}
		d.record(msg)
		head := d.q[0]
		switch m := msg.(type) {
		case *pgproto3.ParseComplete:
			d.popIf(eParse)
		case *pgproto3.BindComplete:
			d.popIf(eBind)
		case *pgproto3.CloseComplete:
			d.popIf(eClose)
		case *pgproto3.RowDescription, *pgproto3.NoData:
			d.popIf(eDescS, eDescP)
		case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse, *pgproto3.PortalSuspended:
			d.popIf(eExec)
		case *pgproto3.CopyInResponse:
			// Postgres ignores the Syncs sent after the Execute and before
			// the first copy message.
			q := d.q[:1]
			for _, e := range d.q[1:] {
				if !(e.kind == eSync && e.gen == head.gen) {
					q = append(q, e)
				}
			}
			d.q = q
			if head.ends == d.ends {
				return // the program sends the data next
			}
		case *pgproto3.ErrorResponse:
			if m.Severity == "FATAL" || m.Severity == "PANIC" {
				d.dead = true
				return
			}
			if head.kind.extended() {
				// Postgres skips everything up to Sync.
				for len(d.q) > 0 && d.q[0].kind != eSync {
					d.q = d.q[1:]
				}
				d.skipping = len(d.q) == 0
			}
		case *pgproto3.ReadyForQuery:
			for len(d.q) > 0 {
				k := d.q[0].kind
				d.q = d.q[1:]
				if k == eSync || k == eQuery || k == eFunc {
					break
				}
			}
		}
	}
}

func (d *driver) record(msg pgproto3.BackendMessage) {
	var er *pgproto3.ErrorResponse
	switch m := msg.(type) {
	case *pgproto3.NotificationResponse:
		m.PID = 0 // the backend's: another one through the proxy
	case *pgproto3.RowDescription:
		for i, f := range m.Fields {
			if f.TableOID != 0 && !d.known[f.TableOID] {
				n, ok := d.oids[f.TableOID]
				if !ok {
					n = uint32(len(d.oids) + 1)
					d.oids[f.TableOID] = n
				}
				m.Fields[i].TableOID = n
			}
		}
	case *pgproto3.ErrorResponse:
		c := *m
		er = &c
	}
	j, _ := json.Marshal(msg)
	d.out = append(d.out, line{text: "B " + string(j), err: er})
}

// play runs p on a new connection to url.
func play(ctx context.Context, url string, p program, known map[uint32]bool, timeout time.Duration) []line {
	pc, err := pgconn.Connect(ctx, url)
	if err != nil {
		return []line{{text: "! connect: " + err.Error()}}
	}
	hc, err := pc.Hijack()
	if err != nil {
		return []line{{text: "! hijack: " + err.Error()}}
	}
	defer hc.Conn.Close()
	d := &driver{conn: hc.Conn, fe: hc.Frontend, known: known, oids: map[uint32]uint32{}}
	keys := make([]string, 0, len(hc.ParameterStatuses))
	for k := range hc.ParameterStatuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d.out = append(d.out, line{text: fmt.Sprintf("startup ParameterStatus %s=%s", k, hc.ParameterStatuses[k])})
	}
	for _, a := range append(p[:len(p):len(p)], finish) {
		d.out = append(d.out, line{text: "# " + a.what})
		for _, ph := range a.phases {
			for _, m := range ph.msgs {
				d.send(m)
			}
			if err := d.fe.Flush(); err != nil {
				d.out = append(d.out, line{text: "! send: " + err.Error()})
				return d.out
			}
			if ph.drain {
				d.drain(timeout)
			}
			if d.dead {
				return d.out
			}
		}
	}
	return d.out
}

// ---------------------------------------------------------------------------
// Environment

type diffEnv struct {
	m           *diffMode
	tmpl        string
	known       map[uint32]bool
	canned      map[string]*pgconn.PgError // relay: Postgres's own errors
	stripeURL   string
	stripeCalls atomic.Int64
	admin       string // URL of the postgres database
}

func newDiffEnv(t *testing.T, m *diffMode) *diffEnv {
	ctx := ctxDiff(t)
	c := pgtest.Cluster(t)
	env := &diffEnv{m: m, admin: c.URL("postgres"), known: map[uint32]bool{}, canned: map[string]*pgconn.PgError{}}
	tmplURL := pgtest.NewDB(t)
	u, _ := url.Parse(tmplURL)
	env.tmpl = strings.TrimPrefix(u.Path, "/")
	conn, err := pgx.Connect(ctx, tmplURL)
	if err != nil {
		t.Fatal(err)
	}
	if m.migrate {
		if err := schema.Migrate(ctx, conn); err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	if _, err := conn.Exec(ctx, m.setup); err != nil {
		t.Fatalf("setup: %v", err)
	}
	rows, err := conn.Query(ctx, "SELECT oid FROM pg_catalog.pg_class")
	if err != nil {
		t.Fatal(err)
	}
	oids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range oids {
		env.known[o] = true
	}
	if m.name == "relay" {
		// The errors Postgres gives for a write to stripe.wf, and for a
		// simple Query in a failed transaction: the interceptor answers
		// with them.
		pc := conn.PgConn()
		_, err := pc.Exec(ctx, "INSERT INTO stripe.wf (v) VALUES ('x')").ReadAll()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Fatalf("stripe.wf insert: %v", err)
		}
		env.canned["wf"] = pe
		pc.Exec(ctx, "BEGIN; SELECT 1/0").ReadAll()
		_, err = pc.Exec(ctx, "SELECT 1").ReadAll()
		if !errors.As(err, &pe) || pe.Code != "25P02" {
			t.Fatalf("in failed transaction: %v", err)
		}
		env.canned["25P02"] = pe
		pc.Exec(ctx, "ROLLBACK").ReadAll()
		_, err = pc.Exec(ctx, "START TRANSACTION READ ONLY; INSERT INTO stripe.wf (v) VALUES ('x')").ReadAll()
		if !errors.As(err, &pe) || pe.Code != "25006" {
			t.Fatalf("in a read-only transaction: %v", err)
		}
		env.canned["25006"] = pe
		pc.Exec(ctx, "ROLLBACK").ReadAll()
	}
	conn.Close(ctx)
	if m.name == "writethrough" {
		emu, base := emulatortest.Start(t, emulator.Options{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			env.stripeCalls.Add(1)
			t.Logf("Stripe call: %s %s", r.Method, r.URL.Path)
			rp, _ := url.Parse(base)
			r.URL.Scheme, r.URL.Host = rp.Scheme, rp.Host
			emu.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		env.stripeURL = srv.URL
	}
	return env
}

func ctxDiff(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// diffWorker owns two copies of the template (direct and proxied) and a
// proxy in front of the second.
type diffWorker struct {
	env                   *diffEnv
	direct, proxied       string // URLs
	adminDirect, adminPrx *pgx.Conn
}

var diffDBSeq atomic.Int64

func (env *diffEnv) copyDB(t *testing.T) string {
	ctx := ctxDiff(t)
	name := fmt.Sprintf("diff_%s_%d", env.m.name, diffDBSeq.Add(1))
	admin, err := pgx.Connect(ctx, env.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, pgx.Identifier{env.tmpl}.Sanitize())); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if admin, err := pgx.Connect(ctx, env.admin); err == nil {
			admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			admin.Close(ctx)
		}
	})
	u, _ := url.Parse(env.admin)
	u.Path = "/" + name
	return u.String()
}

func (env *diffEnv) newWorker(t *testing.T) *diffWorker {
	ctx := ctxDiff(t)
	w := &diffWorker{env: env, direct: env.copyDB(t), proxied: env.copyDB(t)}
	cfg := proxy.Config{Upstream: pgtest.Cluster(t).Addr()}
	switch env.m.name {
	case "relay":
		cfg.Classify = relayClassify
		cfg.Interceptor = &relayInterceptor{canned: env.canned}
	case "writethrough":
		pool, err := pgxpool.New(ctx, w.proxied)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		api, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_differential", BaseURL: env.stripeURL, RateLimit: 1e6, MaxRetries: 1})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Classify = writethrough.ProxyClassify
		cfg.Interceptor = writethrough.New(writethrough.Config{Stripe: api, Pool: pool, Timeout: 10 * time.Second})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	p := proxy.New(cfg)
	go func() { done <- p.Serve(pctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("proxy did not stop")
		}
	})
	u, _ := url.Parse(w.proxied)
	u.Host = ln.Addr().String()
	prx := u.String()
	// Resets wait this long for what a session left behind.
	w.adminDirect, err = pgx.Connect(ctx, w.direct+"&options=-c%20lock_timeout%3D5s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.adminDirect.Close(context.Background()) })
	w.adminPrx, err = pgx.Connect(ctx, w.proxied+"&options=-c%20lock_timeout%3D5s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.adminPrx.Close(context.Background()) })
	w.proxied = prx
	if _, err := w.adminPrx.Exec(ctx, env.m.proxied); err != nil {
		t.Fatal(err)
	}
	return w
}

// effects resets a copy, or reads its tables back after a run.
func effects(ctx context.Context, c *pgx.Conn, queries []string) []line {
	var out []line
	for _, q := range queries {
		rows, err := c.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			out = append(out, line{text: fmt.Sprintf("effects %s: %v", q, err)})
			continue
		}
		for rows.Next() {
			vals, _ := rows.Values()
			out = append(out, line{text: fmt.Sprintf("effects %s: %v", q, vals)})
		}
		if err := rows.Err(); err != nil {
			out = append(out, line{text: fmt.Sprintf("effects %s: %v", q, err)})
		}
	}
	return out
}

// result of running one program both ways.
type result struct {
	direct, proxied []line
	diff            int // first differing line, -1 if none
	invalid         string
}

func (w *diffWorker) run(p program, timeout time.Duration) result {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := result{diff: -1}
	for _, c := range []*pgx.Conn{w.adminDirect, w.adminPrx} {
		if _, err := c.Exec(ctx, w.env.m.reset); err != nil {
			res.invalid = "reset: " + err.Error() + "; sessions: " + sessions(ctx, c)
			return res
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res.direct = play(ctx, w.direct, p, w.env.known, timeout)
	}()
	res.proxied = play(ctx, w.proxied, p, w.env.known, timeout)
	wg.Wait()
	// The sessions are closed: what they committed is visible.
	res.direct = append(res.direct, effects(ctx, w.adminDirect, w.env.m.final)...)
	res.proxied = append(res.proxied, effects(ctx, w.adminPrx, w.env.m.final)...)
	for _, l := range res.direct {
		if strings.HasPrefix(l.text, "B !timeout") || strings.HasPrefix(l.text, "! ") {
			res.invalid = "direct: " + l.text
		}
	}
	res.diff = w.env.m.firstDiff(res.direct, res.proxied)
	return res
}

// sessions lists the other sessions of c's database, to explain a reset
// that could not get its locks.
func sessions(ctx context.Context, c *pgx.Conn) string {
	rows, err := c.Query(ctx, `SELECT pid, state, xact_start IS NOT NULL, query FROM pg_catalog.pg_stat_activity
		WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()`)
	if err != nil {
		return err.Error()
	}
	var out []string
	for rows.Next() {
		v, _ := rows.Values()
		out = append(out, fmt.Sprint(v))
	}
	return strings.Join(out, "; ")
}

var errFields = regexp.MustCompile(`"(File|Line|Routine|Position)":("[^"]*"|\d+),?`)

// firstDiff compares transcripts; -1 if they match.
func (m *diffMode) firstDiff(direct, proxied []line) int {
	for i := 0; i < max(len(direct), len(proxied)); i++ {
		if i >= len(direct) || i >= len(proxied) {
			return i
		}
		a, b := direct[i], proxied[i]
		if a.text == b.text {
			continue
		}
		if a.err != nil && b.err != nil && m.refused != nil {
			// A write the direct side's trigger refused: the proxy must
			// have refused it (before Postgres saw it).
			if a.err.Code == "ZZ001" && m.refused[b.err.Code] && a.err.Severity == b.err.Severity {
				continue
			}
			// In a read-only transaction Postgres refuses the write for
			// that first; the write-through may give its own reason.
			if a.err.Code == "25006" && (m.refused[b.err.Code] || b.err.Code == "25006") && b.err.File == "" {
				continue
			}
			// An error the write-through composed itself has no source
			// location, nor a cursor position.
			if b.err.File == "" && errFields.ReplaceAllString(a.text, "") == errFields.ReplaceAllString(b.text, "") {
				continue
			}
		}
		return i
	}
	return -1
}

func (w *diffWorker) check(t *testing.T, seed uint64, failures *atomic.Int32) {
	p := generate(w.env.m, seed)
	start := time.Now()
	res := w.run(p, 3*time.Second)
	if d := time.Since(start); d > 10*time.Second {
		t.Logf("seed %d: slow run: %v", seed, d)
	}
	if strings.HasPrefix(res.invalid, "reset") {
		t.Errorf("seed %d: %s", seed, res.invalid)
		failures.Add(1)
		return
	}
	if res.invalid != "" {
		var tail []string
		for _, l := range res.direct[max(0, len(res.direct)-40):] {
			tail = append(tail, l.text)
		}
		t.Errorf("seed %d: the direct run did not complete (a bug in the test's model?): %s\n%s\ntranscript ends:\n%s", seed, res.invalid, p, strings.Join(tail, "\n"))
		failures.Add(1)
		return
	}
	if res.diff < 0 {
		return
	}
	failures.Add(1)
	again := w.run(p, 3*time.Second)
	flaky := ""
	if again.invalid != "" {
		flaky = " (second run invalid: " + again.invalid + ")"
	} else if again.diff < 0 {
		flaky = " (did NOT reproduce on a second run: flaky)"
	}
	small, runs := p, 0
	if flaky == "" {
		small, runs = w.minimize(p)
		res = w.run(small, 3*time.Second)
		if res.diff < 0 { // should not happen
			small, res = p, w.run(p, 3*time.Second)
		}
	}
	t.Errorf("seed %d: proxy differs from Postgres%s.\nreproduce: PGSTRIPE_DIFF_SEED=%d PGSTRIPE_DIFF_ITER=1 go test ./proxy/ -run 'TestDifferential/%s$' -v\nminimal sequence (%d of %d actions, %d runs to minimize):\n%s\n%s",
		seed, flaky, seed, w.env.m.name, len(small), len(p), runs, small, describeDiff(res))
}

// minimize removes actions while the mismatch persists.
func (w *diffWorker) minimize(p program) (program, int) {
	runs := 0
	deadline := time.Now().Add(90 * time.Second)
	fails := func(c program) bool {
		runs++
		r := w.run(c, time.Second)
		return r.invalid == "" && r.diff >= 0
	}
	cur := p
	for chunk := max(1, len(cur)/2); chunk >= 1 && time.Now().Before(deadline); {
		removed := false
		for i := 0; i < len(cur) && time.Now().Before(deadline); {
			end := min(len(cur), i+chunk)
			cand := append(append(program{}, cur[:i]...), cur[end:]...)
			if fails(cand) {
				cur, removed = cand, true
			} else {
				i += chunk
			}
		}
		if !removed {
			if chunk == 1 {
				break
			}
			chunk /= 2
		}
	}
	return cur, runs
}

func describeDiff(r result) string {
	var b strings.Builder
	from := 0
	for i := r.diff - 1; i >= 0; i-- { // from the start of the action
		if strings.HasPrefix(r.direct[i].text, "# ") {
			from = i
			break
		}
	}
	show := func(name string, ls []line) {
		fmt.Fprintf(&b, "--- %s (from line %d):\n", name, from)
		for i := from; i < len(ls) && i < r.diff+8; i++ {
			mark := "  "
			if i == r.diff {
				mark = "> "
			}
			b.WriteString(mark + ls[i].text + "\n")
		}
	}
	show("Postgres", r.direct)
	show("proxy", r.proxied)
	return b.String()
}

// ---------------------------------------------------------------------------
// The relay interceptor

func relayClassify(sql string) proxy.Class {
	for _, p := range []string{"INSERT INTO stripe.w", "UPDATE stripe.w", "DELETE FROM stripe.w"} {
		if strings.HasPrefix(sql, p) {
			return proxy.Intercept
		}
	}
	return proxy.Passthrough
}

type relayInterceptor struct{ canned map[string]*pgconn.PgError }

func (ri *relayInterceptor) Intercept(ctx context.Context, call *proxy.Call) error {
	if strings.Contains(call.SQL, ";") || strings.Contains(call.SQL, "/*fwd*/") {
		return call.Forward()
	}
	if call.TxStatus == 'E' {
		// As Postgres answers a simple Query in a failed transaction (the
		// extended protocol never gets here: Bind fails).
		return ri.canned["25P02"]
	}
	if strings.Contains(call.SQL, "stripe.wf") {
		// As Postgres: a read-only transaction refuses the write before
		// the statement trigger does.
		res, err := call.Upstream().Query(ctx, "SELECT pg_catalog.current_setting('transaction_read_only')")
		if err != nil {
			return err
		}
		if string(res.Rows[0][0]) == "on" {
			e := *ri.canned["25006"] // cannot execute INSERT in …
			verb, _, _ := strings.Cut(call.SQL, " ")
			e.Message = strings.Replace(e.Message, "INSERT", verb, 1)
			return &e
		}
		return ri.canned["wf"]
	}
	return call.Relay(ctx)
}
