// Command gen writes schema/tables_gen.go from Stripe's OpenAPI spec as
// embedded in stripe-mock (run through `go generate ./schema/...`).
//
// The set of tables and their endpoints' base paths are chosen here by hand
// (CONTRACT §3); everything else — columns, types, created filters, required
// list parameters, create/update parameters, expandable fields and the
// item/delete/cancel paths — is read from the spec.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
)

func main() {
	out := flag.String("o", "tables_gen.go", "output file")
	flag.Parse()
	src, err := Generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if old, err := os.ReadFile(*out); err == nil && bytes.Equal(old, src) {
		return
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
