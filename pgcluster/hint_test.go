package pgcluster

import (
	"strings"
	"testing"
)

// Without PostgreSQL, the demo's error is the user's instructions: a user
// who is not root and ran the bare "apt-get install -y postgresql" it named
// got "Permission denied" (and on a fresh image "Unable to locate package").
func TestNotFoundNamesRootAndUpdate(t *testing.T) {
	_, err := firstBinDir([]string{t.TempDir()})
	if err == nil {
		t.Fatal("an empty directory passed for PostgreSQL's bin directory")
	}
	for _, want := range []string{"as root", "apt-get update && apt-get install -y postgresql"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
