package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/stripe/stripe-mock/embedded"
	"github.com/stripe/stripe-mock/spec"
)

// apiSpec is the parsed OpenAPI spec and fixtures shipped with stripe-mock.
// It is loaded once per process: parsing 5.8 MB of JSON takes ~100 ms and the
// result is read-only.
type apiSpec struct {
	spec     *spec.Spec
	schemas  map[string]*spec.Schema
	fixtures map[string]map[string]any // resource id ("customer") -> decoded fixture
	routes   map[string][]*route       // verb -> routes, static-first
}

// route is one spec operation: the path template and its request schema.
type route struct {
	verb      string
	path      string   // template, e.g. /v1/customers/{customer}
	segs      []string // split template; "" marks a parameter
	params    []string // parameter names in order
	op        *spec.Operation
	reqSchema *spec.Schema
}

var (
	specOnce   sync.Once
	loadedSpec *apiSpec
	specErr    error
)

func getSpec() (*apiSpec, error) {
	specOnce.Do(func() { loadedSpec, specErr = loadSpec() })
	return loadedSpec, specErr
}

func loadSpec() (*apiSpec, error) {
	var sp spec.Spec
	if err := json.Unmarshal(embedded.OpenAPISpec, &sp); err != nil {
		return nil, fmt.Errorf("emulator: decode OpenAPI spec: %w", err)
	}
	var fx struct {
		Resources map[string]json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(embedded.OpenAPIFixtures, &fx); err != nil {
		return nil, fmt.Errorf("emulator: decode fixtures: %w", err)
	}
	a := &apiSpec{spec: &sp, schemas: sp.Components.Schemas, fixtures: map[string]map[string]any{}, routes: map[string][]*route{}}
	for name, raw := range fx.Resources {
		m, err := decodeObject(raw)
		if err != nil {
			return nil, fmt.Errorf("emulator: fixture %s: %w", name, err)
		}
		a.fixtures[name] = m
	}
	for path, verbs := range sp.Paths {
		for verb, op := range verbs {
			r := &route{verb: strings.ToUpper(string(verb)), path: string(path), op: op}
			for _, s := range strings.Split(strings.Trim(string(path), "/"), "/") {
				if strings.HasPrefix(s, "{") {
					r.segs = append(r.segs, "")
					r.params = append(r.params, strings.Trim(s, "{}"))
				} else {
					r.segs = append(r.segs, s)
				}
			}
			if r.verb == "GET" {
				r.reqSchema = spec.BuildQuerySchema(op)
			} else if op.RequestBody != nil {
				for _, mt := range op.RequestBody.Content {
					r.reqSchema = mt.Schema
					break
				}
			}
			a.routes[r.verb] = append(a.routes[r.verb], r)
		}
	}
	for _, rs := range a.routes {
		// Static segments win over parameters (/v1/invoices/upcoming before
		// /v1/invoices/{invoice}), as in stripe-mock.
		sort.Slice(rs, func(i, j int) bool {
			if len(rs[i].params) != len(rs[j].params) {
				return len(rs[i].params) < len(rs[j].params)
			}
			return rs[i].path < rs[j].path
		})
	}
	return a, nil
}

// match finds the route for a request path and returns its path parameters.
func (a *apiSpec) match(verb, path string) (*route, map[string]string) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for _, r := range a.routes[verb] {
		if len(r.segs) != len(segs) {
			continue
		}
		ok := true
		for i, s := range r.segs {
			if s != "" && s != segs[i] {
				ok = false
				break
			}
			if s == "" && segs[i] == "" {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		var pp map[string]string
		if len(r.params) > 0 {
			pp = make(map[string]string, len(r.params))
			k := 0
			for i, s := range r.segs {
				if s == "" {
					pp[r.params[k]] = segs[i]
					k++
				}
			}
		}
		return r, pp
	}
	return nil, nil
}

// find returns the route with this exact template.
func (a *apiSpec) find(verb, path string) *route {
	for _, r := range a.routes[verb] {
		if r.path == path {
			return r
		}
	}
	return nil
}

// resolve follows a $ref to its component schema.
func (a *apiSpec) resolve(s *spec.Schema) *spec.Schema {
	for s != nil && s.Ref != "" {
		s = a.schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	return s
}

// fixture returns a deep copy of the fixture for a resource.
func (a *apiSpec) fixture(name string) map[string]any {
	f, ok := a.fixtures[name]
	if !ok {
		return map[string]any{}
	}
	return deepCopy(f).(map[string]any)
}

func decodeObject(raw []byte) (map[string]any, error) {
	if m, ok := decodeFast(raw); ok {
		return m, nil
	}
	return decodeStd(raw)
}

// decodeStd is encoding/json's decoding of an object, numbers kept as
// written: what decodeFast does for plain JSON, and does nothing else.
func decodeStd(raw []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, vv := range x {
			m[k] = deepCopy(vv)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, vv := range x {
			s[i] = deepCopy(vv)
		}
		return s
	default:
		return v
	}
}
