package config

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// An unreachable database with the default sslmode (prefer) fails both of
// pgx's attempts in the same words: the error line names it once.
func TestConnErrorTextOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := pgx.Connect(ctx, "postgres://nobody:pw@127.0.0.1:1/x")
	if err == nil {
		t.Fatal("connected to port 1")
	}
	got := ConnErrorText(err)
	if strings.Contains(got, "\n") {
		t.Errorf("ConnErrorText has a newline: %q", got)
	}
	if n := strings.Count(got, "connection refused"); n != 1 {
		t.Errorf("ConnErrorText names the refusal %d times: %q", n, got)
	}
	if strings.Contains(got, "pw") {
		t.Errorf("ConnErrorText shows the password: %q", got)
	}
}

// A DATABASE_URL that does not parse is refused in one line that says what
// is wrong in it (CONTRACT §2) and never names a value of the string: where
// pgx can't tell the password apart to mask it (the "password=" keyword
// left out, or a keyword's value left empty by a template whose variable
// was unset, so that the value runs on to the next "password=…"), pgx's own
// descriptions would show it.
func TestBadDatabaseURLSaysWhyNotWhat(t *testing.T) {
	const pw = "S3cretPw"
	cases := []struct{ url, want string }{
		{"postgres://app:" + pw + "@db:5432/app?sslmode=requir", "sslmode is invalid"},
		{"postgres://app:" + pw + "@db:notaport/app", "invalid port"},
		{"postgres://app:" + pw + "@db/app?connect_timeout=soon", "invalid connect_timeout"},
		{"postgres://app:" + pw + "@db/app?target_session_attrs=writable", "unknown target_session_attrs value"},
		{"postgres://app:" + pw + "%zz@db/app", "invalid percent-encoded token in password"},
		{"postgres://app:" + pw + "@[::1/app", "failed to parse as URL"},
		// "password=" left out: pgx quotes the password as a key without "=".
		{"host=db user=app " + pw + " sslmode=disable", "failed to parse as keyword/value"},
		{"host=db password='" + pw, "failed to parse as keyword/value"},
		{"not a url " + pw, "failed to parse as keyword/value"},
		{"host=db password=" + pw + "`: port=abc", "invalid port"},
		// A keyword's value left empty.
		{"host=db user=app target_session_attrs= password=" + pw, "unknown target_session_attrs value"},
		{"host=db user=app channel_binding= password=" + pw, "unknown channel_binding value"},
		{"host=db user=app min_protocol_version= password=" + pw, "invalid min_protocol_version"},
		{"host=db user=app max_protocol_version= password=" + pw, "invalid max_protocol_version"},
		{"host=db user=app sslcertmode= password=" + pw, "invalid sslcertmode: unknown sslcertmode value"},
		{"host=db user=app sslrootcert= password=" + pw + " sslmode=verify-full", "failed to configure TLS: unable to read CA file: no such file or directory"},
		{"host=db user=app sslkey= password=" + pw + " sslcert=/x sslmode=require", "failed to configure TLS: unable to read sslkey"},
		{"host=db user=app servicefile= password=" + pw + " service=x", "failed to read service: failed to read service file"},
		{"postgres://app:" + pw + "@db/app?sslmode=verify-full&sslrootcert=/nonexistent/" + pw, "failed to configure TLS: unable to read CA file: no such file or directory"},
		// "`: " in the value, where the string's own end was looked for.
		{"host=db user=app target_session_attrs='x`: " + pw + "' password=" + pw, "unknown target_session_attrs value"},
	}
	for _, c := range cases {
		_, err := load(t, all, map[string]string{"DATABASE_URL": c.url, "STRIPE_API_KEY": "sk_test_x"})
		if err == nil {
			t.Errorf("%q: no error", c.url)
			continue
		}
		msg := err.Error()
		const prefix = "DATABASE_URL (--database-url) is not a valid Postgres connection string: "
		if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg[len(prefix):], c.want) {
			t.Errorf("%q: %q, want the reason %q", c.url, msg, c.want)
		}
		if strings.Contains(msg, pw) || strings.Contains(msg, "\n") {
			t.Errorf("%q: %q is not one line without the password", c.url, msg)
		}
	}
}

// A DATABASE_URL of another form than pgx's two says which forms there
// are: pgx reads "mysql://…" or a misspelt scheme as keyword/value pairs
// and refuses it as such ("invalid keyword/value"), which sends users
// looking for a bad keyword. As every DATABASE_URL error, the line names
// no part of the string.
func TestBadDatabaseURLNamesTheForms(t *testing.T) {
	const pw = "S3cretPw"
	const scheme = "a URL must start with postgres:// or postgresql://"
	const forms = "give a URL (postgres://user:password@host:5432/database) or keyword=value pairs"
	cases := []struct{ url, want, not string }{
		{"mysql://app:" + pw + "@db:3306/app", scheme, forms},
		{"postgress://app:" + pw + "@db/app", scheme, forms},
		{"Postgres://app:" + pw + "@db/app", scheme, forms},
		{"db.example.com/" + pw, forms, scheme},
		// Forms pgx knows keep their own reason alone.
		{"postgres://app:" + pw + "@db:notaport/app", "invalid port", "must start with"},
		{"host=db user=app " + pw + " sslmode=disable", "failed to parse as keyword/value", "must start with"},
		{"host=db user=app target_session_attrs=x://y password=" + pw, "unknown target_session_attrs value", "must start with"},
	}
	for _, c := range cases {
		_, err := load(t, all, map[string]string{"DATABASE_URL": c.url, "STRIPE_API_KEY": "sk_test_x"})
		if err == nil {
			t.Errorf("%q: no error", c.url)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "DATABASE_URL (--database-url) is not a valid Postgres connection string: ") ||
			!strings.Contains(msg, c.want) || strings.Contains(msg, c.not) {
			t.Errorf("%q: %q, want %q and not %q", c.url, msg, c.want, c.not)
		}
		if strings.Contains(msg, pw) || strings.Contains(msg, "\n") {
			t.Errorf("%q: %q is not one line without the password", c.url, msg)
		}
	}
}

// refusedConnErr is pgx's error for a server that refuses connections,
// with sslmode=prefer: one line per attempt, the same line twice.
func refusedConnErr(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app:secret@127.0.0.1:%d/app?sslmode=prefer", addr.Port))
	if err == nil {
		c.Close(ctx)
		t.Fatal("connected to a closed port")
	}
	if !strings.Contains(err.Error(), "\n") {
		t.Fatalf("pgx's error is one line already, the test shows nothing: %q", err)
	}
	return err
}

// Run-time errors (heartbeat, election, /healthz) keep their context but
// come on one line, each attempt's line once, and without the password.
func TestErrorText(t *testing.T) {
	err := fmt.Errorf("fleet heartbeat: %w", refusedConnErr(t))
	got := ErrorText(err)
	if strings.ContainsAny(got, "\n\t") {
		t.Errorf("ErrorText spans lines: %q", got)
	}
	if !strings.HasPrefix(got, "fleet heartbeat: failed to connect to `user=app database=app`: 127.0.0.1:") {
		t.Errorf("context lost: %q", got)
	}
	if n := strings.Count(got, "connection refused"); n != 1 {
		t.Errorf("%d times connection refused: %q", n, got)
	}
	if strings.Contains(got, "secret") {
		t.Errorf("password in %q", got)
	}
	for _, s := range []string{"one line: as it is", "a:\n\tb\n\tb\n\tc"} {
		want := map[string]string{"one line: as it is": "one line: as it is", "a:\n\tb\n\tb\n\tc": "a: b; c"}[s]
		if got := ErrorText(fmt.Errorf("%s", s)); got != want {
			t.Errorf("ErrorText(%q) = %q, want %q", s, got, want)
		}
	}
	if ErrorText(nil) != "" {
		t.Error("ErrorText(nil) not empty")
	}
}
