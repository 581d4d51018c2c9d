package schema

import "testing"

func TestDuplicateMigrationVersion(t *testing.T) {
	saved := registered
	t.Cleanup(func() { registered = saved })
	if _, err := Migrations(); err != nil {
		t.Fatal(err)
	}
	Register(Migration{Version: 1, Name: "clash"})
	if _, err := Migrations(); err == nil {
		t.Error("duplicate version accepted")
	}
}
