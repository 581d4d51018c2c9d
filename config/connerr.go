package config

import (
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ConnErrorText describes a database connection error without the
// connection string, which may hold a password: the server's message and
// SQLSTATE, or the network error.
func ConnErrorText(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		if u := errors.Unwrap(ce); u != nil {
			return distinctLines(u.Error())
		}
	}
	return distinctLines(err.Error())
}

// distinctLines puts pgx's one line per connection attempt on one line.
// With sslmode=prefer (the default) pgx dials twice, with and without TLS,
// and an unreachable server then fails twice in the very same words.
func distinctLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// SafeSearchPath is the search_path of pgstripe's own connections. pgstripe
// qualifies its own tables, but calls built-in functions and operators
// unqualified, and Postgres picks a better-matching one from any schema on
// the path: one that other roles may create in (public, before Postgres 15
// or on a database upgraded from one) would let them run code as
// pgstripe's role, on every apply of sync and write-through.
const SafeSearchPath = "pg_catalog, pg_temp"
