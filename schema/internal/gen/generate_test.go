package main

import (
	"bytes"
	"os"
	"testing"
)

// The checked-in tables_gen.go must be what the generator makes from the
// spec in go.mod's stripe-mock; run `go generate ./schema/...` when not.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	want, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("../../tables_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Fatal("schema/tables_gen.go is stale: run `go generate ./schema/...`")
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/customers/{customer}":                    "/v1/customers/{id}",
		"/v1/invoices/{invoice}/lines/{line_item_id}": "/v1/invoices/{parent}/lines/{id}",
		"/v1/subscriptions/{subscription_exposed_id}": "/v1/subscriptions/{id}",
		"/v1/customers":                               "/v1/customers",
		"/v1/payment_intents/{intent}/cancel":         "/v1/payment_intents/{id}/cancel",
	} {
		if got := normalize(in); got != want {
			t.Errorf("normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
