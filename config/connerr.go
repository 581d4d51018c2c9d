package config

import (
	"errors"

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
			return u.Error()
		}
	}
	return err.Error()
}
