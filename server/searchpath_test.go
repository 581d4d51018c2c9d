package server

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/pgtest"
)

// A role that may create objects in public (every role, before Postgres 15
// and on databases upgraded from one) defines better-matching overloads of
// built-ins that pgstripe's SQL calls unqualified: an operator
// jsonb #>> text (the store's column conversion writes x #>> '{}', whose
// untyped literal prefers text to text[]) and unnest(text[]) (the
// polymorphic built-in loses to an exact match). Were they picked, they
// would run as pgstripe's role, on every apply.
func TestOwnConnectionsIgnoreOthersOverloads(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	ctx := context.Background()
	admin := pgtest.Connect(t, dbURL)
	role := fmt.Sprintf("evil_%d", time.Now().UnixNano())
	for _, q := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`GRANT CREATE, USAGE ON SCHEMA public TO ` + role,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		admin.Exec(ctx, `DROP OWNED BY `+role)
		admin.Exec(ctx, `DROP ROLE `+role)
	})
	u, _ := url.Parse(dbURL)
	u.User = url.User(role)
	evil, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close(ctx)
	for _, q := range []string{
		`CREATE TABLE public.seen (who text)`,
		`GRANT INSERT ON public.seen TO PUBLIC`,
		`CREATE FUNCTION public.evil_path(j jsonb, p text) RETURNS text LANGUAGE sql VOLATILE AS $$
		   INSERT INTO public.seen SELECT current_user;
		   SELECT j OPERATOR(pg_catalog.#>>) p::pg_catalog.text[] $$`,
		`CREATE OPERATOR public.#>> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.evil_path)`,
		`CREATE FUNCTION public.format(f text, a text) RETURNS text LANGUAGE sql VOLATILE AS $$
		   INSERT INTO public.seen SELECT current_user;
		   SELECT pg_catalog.format(f, a) $$`,
		`CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE sql VOLATILE AS $$
		   INSERT INTO public.seen SELECT current_user;
		   SELECT x FROM pg_catalog.unnest(a) AS x $$`,
	} {
		if _, err := evil.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	serve(t, dbURL, base, "review")
	deadline := time.Now().Add(60 * time.Second)
	for {
		var done bool
		admin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM stripe_sync.log WHERE kind = 'backfill_complete')`).Scan(&done)
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("backfill never completed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var rows int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM stripe.customers`).Scan(&rows); err != nil || rows == 0 {
		t.Fatalf("backfill stored %d customers: %v", rows, err)
	}
	// A reader of the status view (here a superuser, with the default
	// search_path) runs its row counts.
	if _, err := admin.Exec(ctx, `SELECT * FROM stripe_sync.status`); err != nil {
		t.Fatal(err)
	}
	var n int
	var who *string
	admin.QueryRow(ctx, `SELECT count(*), string_agg(DISTINCT who, ',') FROM public.seen`).Scan(&n, &who)
	if n != 0 {
		t.Errorf("another role's functions ran %d times, as %v, on pgstripe's connections", n, *who)
	}
}
