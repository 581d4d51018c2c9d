package config

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
