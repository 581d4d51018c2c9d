package proxy

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/pgcluster"
)

// TestAuthRelay checks that trust, cleartext password, md5 and SCRAM
// authentication all pass through the proxy, and that a wrong password gets
// Postgres's own error.
func TestAuthRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{HBA: `
local all all trust
host all postgres 127.0.0.1/32 trust
host all pwuser 127.0.0.1/32 password
host all md5user 127.0.0.1/32 md5
host all scramuser 127.0.0.1/32 scram-sha-256
`})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	admin, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`SET password_encryption = 'md5'`,
		`CREATE ROLE md5user LOGIN PASSWORD 'md5secret'`,
		`CREATE ROLE pwuser LOGIN PASSWORD 'pwsecret'`,
		`SET password_encryption = 'scram-sha-256'`,
		`CREATE ROLE scramuser LOGIN PASSWORD 'scramsecret'`,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close(ctx)
	tp := startProxy(t, Config{Upstream: c.Addr()})

	cases := []struct{ user, password string }{
		{"postgres", ""},
		{"pwuser", "pwsecret"},
		{"md5user", "md5secret"},
		{"scramuser", "scramsecret"},
	}
	for _, tc := range cases {
		t.Run(tc.user, func(t *testing.T) {
			url := fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable", tc.user, tc.password, tp.addr)
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatalf("connect through proxy: %v", err)
			}
			defer conn.Close(ctx)
			var user string
			if err := conn.QueryRow(ctx, `SELECT current_user`).Scan(&user); err != nil || user != tc.user {
				t.Fatalf("current_user = %q, %v", user, err)
			}
			if tc.password == "" {
				return
			}
			bad := fmt.Sprintf("postgres://%s:wrong@%s/postgres?sslmode=disable", tc.user, tp.addr)
			_, err = pgx.Connect(ctx, bad)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "28P01" {
				t.Fatalf("wrong password: got %v, want SQLSTATE 28P01", err)
			}
		})
	}
	tp.waitSessions(t, 0)
}
