package schema

import "time"

// SetMigrateLockWait shortens Migrate's lock waits for a test.
func SetMigrateLockWait(timeout time.Duration, attempts int) (restore func()) {
	t, a := migrateLockTimeout, migrateAttempts
	migrateLockTimeout, migrateAttempts = timeout, attempts
	return func() { migrateLockTimeout, migrateAttempts = t, a }
}
