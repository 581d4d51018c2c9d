package config

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/schema"
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

// ErrorText is err on one line, for run-time logs and /healthz, where
// the wrapping context matters (unlike ConnErrorText, which start-up
// errors prefix with their own). pgx puts each connection attempt of a
// failed connect on a line of its own after "\n\t", with sslmode=prefer
// the same one twice: those lines are joined, each once, the first after
// the colon that introduces them.
func ErrorText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if !strings.Contains(s, "\n") {
		return s
	}
	var b strings.Builder
	var seen []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l == "" || slices.Contains(seen, l) {
			continue
		}
		if len(seen) > 0 {
			if strings.HasSuffix(seen[len(seen)-1], ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		seen = append(seen, l)
		b.WriteString(l)
	}
	return b.String()
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

// OwnSession makes every connection of cfg set the session of pgstripe's
// own connections, overriding what DATABASE_URL, the role or the database
// set: the search_path (see SafeSearchPath); client_encoding UTF8, because
// pgx sends and reads text as UTF-8 without converting: under a
// client_encoding of LATIN1 (ALTER DATABASE … SET client_encoding) every
// non-ASCII character Stripe sends would be stored double-encoded; and READ
// COMMITTED, which sync's transactions are written for: under a default of
// SERIALIZABLE or REPEATABLE READ the backfill's concurrent slices, which
// write the same tables and status rows, fail with 40001 again and again
// and the backfill never ends. (The tables mirror Stripe, whose objects
// change one at a time: there is no cross-object invariant for SERIALIZABLE
// to keep.) And no idle_in_transaction_session_timeout: between the
// statements of pgstripe's transactions the client is pgstripe itself,
// whose pauses (a migration's steps on a starved machine) are not an
// abandoned session; a role's 1 s ended the migration half-way. And
// pgstripe.local_write (schema.LocalWriteSetting) on: they are the writers
// of stripe.* that schema.LocalWriteGuardTrigger lets pass (sync's
// backfill, events loop and re-fetches, write-through's apply of Stripe's
// answer, which never runs on a client's session, and migrations).
//
// They are SET once connected rather than sent as startup parameters:
// PgBouncer refuses a startup parameter it does not track (search_path,
// default_transaction_isolation) and the connection with it.
func OwnSession(cfg *pgconn.Config) {
	prev := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, pc *pgconn.PgConn) error {
		if prev != nil {
			if err := prev(ctx, pc); err != nil {
				return err
			}
		}
		_, err := pc.Exec(ctx, ownSessionSQL).ReadAll()
		return err
	}
}

const ownSessionSQL = "SET search_path = " + SafeSearchPath + "; SET client_encoding = 'UTF8'; SET default_transaction_isolation = 'read committed'; SET idle_in_transaction_session_timeout = 0; SET " + schema.LocalWriteSetting + " = on"

// BadDatabaseURL is the error for a DATABASE_URL that pgx cannot parse. It
// says what is wrong, never the string itself: pgx masks the password only
// where it could parse the string, and both its description and the error
// under it may quote or name what they stumbled on, which may be the
// password: "host=db S3cret" (its "password=" left out) is the key S3cret
// without "=", and in "target_session_attrs= password=S3cret" (a template
// whose variable was empty) the value of target_session_attrs, or of
// sslrootcert (then a file that can't be opened), is "password=S3cret".
// So only pgx's own words are kept: each of the two texts up to its first
// ": " (what follows is a value or an error naming one), and none that
// quotes; an unreadable file adds the system's reason, not its name.
func BadDatabaseURL(err error) error {
	const msg = "DATABASE_URL (--database-url) is not a valid Postgres connection string"
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return errors.New(msg)
	}
	// The message without the string: pgx's text is "cannot parse
	// `<string>`: <description>[ (<error under it>)]", and the string may
	// hold "`: " or " (" itself.
	bare := *pe
	bare.ConnString = ""
	desc := strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
	inner := errors.Unwrap(pe)
	if inner != nil {
		desc = strings.TrimSuffix(desc, " ("+inner.Error()+")")
	}
	reason := ownWords(desc)
	if reason == "" {
		return errors.New(msg)
	}
	if inner != nil {
		if d := ownWords(inner.Error()); d != "" {
			reason += ": " + d
			var fe *fs.PathError
			if errors.As(inner, &fe) {
				reason += ": " + fe.Err.Error()
			}
		}
	}
	return errors.New(msg + ": " + reason + formHint(pe.ConnString))
}

// formHint says which forms a connection string may take when it has
// neither: one with another scheme ("mysql://…", "postgress://…", which
// pgx then reads as keyword/value pairs and refuses as such), or with no
// "=" at all. It names no part of the string.
func formHint(conn string) string {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		return ""
	}
	if scheme, _, ok := strings.Cut(conn, "://"); ok && !strings.ContainsAny(scheme, "= \t") {
		return "; a URL must start with postgres:// or postgresql://"
	}
	if !strings.Contains(conn, "=") {
		return "; give a URL (postgres://user:password@host:5432/database) or keyword=value pairs (host=… dbname=…)"
	}
	return ""
}

// ownWords is s up to its first ": ", or "" if that quotes anything.
func ownWords(s string) string {
	if i := strings.Index(s, ": "); i >= 0 {
		s = s[:i]
	}
	if strings.ContainsAny(s, "\"'`\n") {
		return ""
	}
	return s
}
