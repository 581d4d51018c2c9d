package emulator

import (
	"encoding/json"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/stripe/stripe-mock/spec"
)

// TestObjectsMatchSpec validates every kind of stored object (a seeded
// dataset plus the API flows of the seed) against the spec's schema for
// that object, the way stripe-mock validates requests.
func TestObjectsMatchSpec(t *testing.T) {
	e, err := New(Options{Seed: 40})
	if err != nil {
		t.Fatal(err)
	}
	// A few changes through the API, so that events exist.
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/v1/customers", "email=x%40y.z"},
		{"POST", "/v1/products", "name=p"},
	} {
		r := httptest.NewRequest(req.method, req.path, strings.NewReader(req.body))
		r.Header.Set("Authorization", "Bearer sk_test_x")
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("%s %s: %d %s", req.method, req.path, w.Code, w.Body)
		}
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		r = httptest.NewRequest("DELETE", req.path+"/"+m["id"].(string), nil)
		r.Header.Set("Authorization", "Bearer sk_test_x")
		w = httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"deleted":true`) {
			t.Fatalf("delete: %d %s", w.Code, w.Body)
		}
	}
	// Test clocks aren't seeded: one, with a customer on it, through the
	// API.
	post := func(path, body string) map[string]any {
		r := httptest.NewRequest("POST", path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer sk_test_x")
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("POST %s: %d %s", path, w.Code, w.Body)
		}
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		return m
	}
	clock := post("/v1/test_helpers/test_clocks", "frozen_time=1577836800&name=c")
	post("/v1/customers", "test_clock="+clock["id"].(string))
	comps := spec.GetComponentsForValidation(&e.api.spec.Components)
	for _, k := range kinds {
		objs := e.Objects(k.table)
		if len(objs) == 0 {
			t.Errorf("%s: seed made no objects", k.table)
			continue
		}
		v, err := spec.GetValidatorForOpenAPI3Schema(e.api.schemas[k.schema], comps)
		if err != nil {
			t.Fatalf("%s: validator: %v", k.table, err)
		}
		ids := make([]string, 0, len(objs))
		for id := range objs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for i, id := range ids {
			if i >= 25 {
				break
			}
			var m any
			if err := json.Unmarshal(objs[id], &m); err != nil {
				t.Fatal(err)
			}
			if err := v.Validate(m); err != nil {
				t.Errorf("%s %s does not match the spec: %v\n%s", k.table, id, err, objs[id])
				break
			}
		}
	}
	// Deleted stubs match the spec's deleted_<object> schemas.
	for id, stub := range e.tombstones {
		var m map[string]any
		json.Unmarshal(stub, &m)
		name := "deleted_" + m["object"].(string)
		v, err := spec.GetValidatorForOpenAPI3Schema(e.api.schemas[name], comps)
		if err != nil || e.api.schemas[name] == nil {
			t.Fatalf("%s: no schema %s", id, name)
		}
		if err := v.Validate(m); err != nil {
			t.Errorf("stub %s: %v", stub, err)
		}
	}
	if len(e.tombstones) != 2 {
		t.Errorf("%d tombstones, want 2", len(e.tombstones))
	}
	// The virtual upcoming invoice too.
	v, _ := spec.GetValidatorForOpenAPI3Schema(e.api.schemas["invoice"], comps)
	for id, raw := range e.Objects("customers") {
		e.mu.RLock()
		inv, _ := e.upcoming(e.Now().Unix(), id, "")
		e.mu.RUnlock()
		if inv == nil {
			continue
		}
		b, _ := json.Marshal(inv)
		var m any
		json.Unmarshal(b, &m)
		if err := v.Validate(m); err != nil {
			t.Errorf("upcoming invoice of %s: %v\n%s\n%s", id, err, b, raw)
		}
		break
	}
}
