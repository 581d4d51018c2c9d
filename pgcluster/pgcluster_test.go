package pgcluster

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func query(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}

// Restart after a clean run, after Kill, and Stop after Kill: none may wait
// for an exit that was already seen.
func TestRestartAndKill(t *testing.T) {
	ctx := context.Background()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	query(t, c)
	port := c.Port
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	query(t, c)
	c.Kill()
	done := make(chan error, 1)
	go func() { done <- c.Restart(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Restart after Kill hangs")
	}
	if c.Port != port {
		t.Fatalf("port changed from %d to %d", port, c.Port)
	}
	query(t, c)
	c.Kill()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Fatalf("directory %s left after Stop", c.Dir)
	}
}
