package schema

import "testing"

func TestDuplicateMigrationVersion(t *testing.T) {
	saved := registered
	t.Cleanup(func() { registered = saved })
	if _, err := Migrations(); err != nil {
		t.Fatal(err)
	}
	// Same number, other name: both run (two packages picked one block).
	Register(Migration{Version: 1, Name: "another package's step"})
	if _, err := Migrations(); err != nil {
		t.Error(err)
	}
	Register(Migration{Version: 1, Name: "another package's step"})
	if _, err := Migrations(); err == nil {
		t.Error("duplicate (version, name) accepted")
	}
}
