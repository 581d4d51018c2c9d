package emulator

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/stripe/stripe-mock/spec"
)

// validateParams checks coerced request params against the operation's
// schema and answers the way Stripe does: the first unknown parameter, then
// missing required ones, then badly typed values, each with its bracketed
// parameter name in `param`.
//
// stripe-mock validates with a JSON-schema library whose messages don't name
// the parameter; Stripe's errors do, and clients (the proxy's error mapping)
// rely on `code` and `param`, so the walk is done here.
func (e *Emulator) validateParams(s *spec.Schema, params map[string]any) *apiError {
	return e.validateValue(s, params, "")
}

func paramName(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "[" + key + "]"
}

func (e *Emulator) validateValue(s *spec.Schema, v any, name string) *apiError {
	return e.validateAt(s, v, name, false)
}

// validateAt is validateValue for a value that is an array's element when
// elem is set.
func (e *Emulator) validateAt(s *spec.Schema, v any, name string, elem bool) *apiError {
	s = e.api.resolve(s)
	if s == nil {
		return nil
	}
	// The empty string is Stripe's "unset", whatever the parameter's
	// type: taken where the schema takes it, refused with
	// parameter_invalid_empty (param: the form key) anywhere else, at
	// every depth, before any type check.
	if str, ok := v.(string); ok && str == "" {
		if e.takesEmpty(s, elem) {
			return nil
		}
		return emptyNotAllowed(name)
	}
	if len(s.AnyOf) > 0 {
		var first *apiError
		for _, sub := range s.AnyOf {
			ae := e.validateAt(sub, v, name, elem)
			if ae == nil {
				return nil
			}
			// Prefer the error of the branch whose shape matches (an object
			// branch for a map value) so the message points at the real
			// problem rather than "expected a string".
			if first == nil || (isMap(v) && e.api.resolve(sub) != nil && e.api.resolve(sub).Type == spec.TypeObject) {
				first = ae
			}
		}
		return first
	}
	if v == nil {
		return nil
	}
	switch s.Type {
	case spec.TypeObject, "":
		m, ok := v.(map[string]any)
		if !ok {
			if s.Type == "" {
				return nil
			}
			return invalid("parameter_invalid_type", name, "Invalid object: %s must be an object (use bracketed form, e.g. %s[key]=value)", name, name)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if isMetadataParam(name) && s.AdditionalProperties != nil {
			if ae := checkMetadata(name, m, keys); ae != nil {
				return ae
			}
		}
		// Request schemas often omit additionalProperties on nested hashes,
		// yet Stripe rejects unknown keys in them: a hash with declared
		// properties is closed unless it declares a schema for the rest
		// (metadata does).
		closed := !s.AdditionalPropertiesAllowed || (len(s.Properties) > 0 && s.AdditionalProperties == nil)
		if closed {
			for _, k := range keys {
				if _, known := s.Properties[k]; !known {
					return invalid("parameter_unknown", paramName(name, k), "Received unknown parameter: %s", paramName(name, k))
				}
			}
		}
		for _, req := range s.Required {
			v, ok := m[req]
			if !ok {
				return invalid("parameter_missing", paramName(name, req), "Missing required param: %s.", paramName(name, req))
			}
			// An empty string is Stripe's "unset", which a required
			// parameter can't be (a product's name): refused unless the
			// schema itself allows "" (an anyOf with the empty enum).
			if str, isStr := v.(string); isStr && str == "" && !e.allowsEmpty(s.Properties[req]) {
				return emptyNotAllowed(paramName(name, req))
			}
		}
		for _, k := range keys {
			sub := s.Properties[k]
			if sub == nil {
				sub = s.AdditionalProperties
			}
			if sub == nil {
				continue
			}
			if ae := e.validateValue(sub, m[k], paramName(name, k)); ae != nil {
				return ae
			}
		}
		return nil
	case spec.TypeArray:
		arr, ok := v.([]any)
		if !ok {
			return invalid("parameter_invalid_type", name, "Invalid array: %s must be an array (e.g. %s[]=value)", name, name)
		}
		for i, it := range arr {
			if s.Items == nil {
				break
			}
			if ae := e.validateAt(s.Items, it, fmt.Sprintf("%s[%d]", name, i), true); ae != nil {
				return ae
			}
		}
		return nil
	case spec.TypeString:
		str, ok := v.(string)
		if !ok {
			return invalid("parameter_invalid_string", name, "Invalid string: %v", v)
		}
		if len(s.Enum) > 0 {
			for _, allowed := range s.Enum {
				if fmt.Sprint(allowed) == str {
					return nil
				}
			}
			opts := make([]string, 0, len(s.Enum))
			for _, a := range s.Enum {
				// "" in an enum means the field can be unset; it is not a
				// value to offer ("must be one of , exempt, none").
				if o := fmt.Sprint(a); o != "" {
					opts = append(opts, o)
				}
			}
			return invalid("parameter_invalid_string", name, "Invalid %s: must be one of %s", name, strings.Join(opts, ", "))
		}
		if s.MaxLength > 0 && len(str) > s.MaxLength {
			return invalid("parameter_invalid_string", name, "Invalid string: %s...; must be at most %d characters", truncate(str, 20), s.MaxLength)
		}
		// Decimal amounts (unit_amount_decimal, ...) are typed as strings;
		// Stripe takes them as numbers with at most 12 decimal places.
		if s.Format == "decimal" && str != "" {
			if _, ok := parseDecimal(str); !ok {
				return invalid("parameter_invalid_number", name, "Invalid decimal: %s", truncate(str, 20))
			}
		}
		// The spec types currencies as plain strings; Stripe refuses
		// anything that isn't a three-letter code.
		if (name == "currency" || strings.HasSuffix(name, "[currency]")) && str != "" && !isCurrencyCode(str) {
			return invalid("", name, "Invalid currency: %s. Stripe currently supports three-letter ISO currency codes, e.g. usd, eur.", truncate(str, 20))
		}
		return nil
	case spec.TypeInteger:
		switch v.(type) {
		case int, int64, json.Number:
			return nil
		}
		return invalid("parameter_invalid_integer", name, "Invalid integer: %v", v)
	case spec.TypeNumber:
		switch x := v.(type) {
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return invalid("parameter_invalid_number", name, "Invalid decimal: %v", v)
			}
			return nil
		case int, int64, json.Number:
			return nil
		}
		return invalid("parameter_invalid_number", name, "Invalid decimal: %v", v)
	case spec.TypeBoolean:
		if b, ok := v.(bool); ok {
			if len(s.Enum) > 0 && fmt.Sprint(s.Enum[0]) != fmt.Sprint(b) {
				return invalid("parameter_invalid_boolean", name, "Invalid %s: must be %v", name, s.Enum[0])
			}
			return nil
		}
		return invalid("parameter_invalid_boolean", name, "Invalid boolean: %v", v)
	}
	return nil
}

func isCurrencyCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

func isMap(v any) bool { _, ok := v.(map[string]any); return ok }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// On a character boundary: cut inside one, the message would carry
	// an invalid byte (é of a long metadata value became U+FFFD).
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// emptyNotAllowed is Stripe's answer to "" for a parameter that can't be
// unset.
func emptyNotAllowed(name string) *apiError {
	return invalid("parameter_invalid_empty", name, "You passed an empty string for '%s'. We assume empty values are an attempt to unset a parameter; however '%s' cannot be unset. You should remove '%s' from your request or supply a non-empty value.", name, name, name)
}

// allowsEmpty says whether a parameter schema accepts "" as a value of its
// own: Stripe's spec marks unsettable parameters with an anyOf branch
// `enum: [""]`.
func (e *Emulator) allowsEmpty(s *spec.Schema) bool {
	s = e.api.resolve(s)
	if s == nil {
		return true
	}
	for _, sub := range s.AnyOf {
		if e.allowsEmpty(sub) {
			return true
		}
	}
	for _, v := range s.Enum {
		if fmt.Sprint(v) == "" {
			return true
		}
	}
	return false
}

// takesEmpty says whether Stripe takes "" for a value of schema s: where
// the spec says so (an enum with "" among its values, the unset
// alternative anyOf [..., enum [""]] included), or for a string without
// an enum, which "" is one of and which Stripe reads as an unset
// (address[line2]=, a customer's name= or email=; a required one is
// refused by its object); not for an array's element string, which
// nothing can unset (default_tax_rates[0]= is refused). An untyped schema
// takes anything. Objects, arrays, integers, numbers and booleans take ""
// only through the alternative.
func (e *Emulator) takesEmpty(s *spec.Schema, elem bool) bool {
	s = e.api.resolve(s)
	if s == nil {
		return true
	}
	if len(s.AnyOf) > 0 {
		for _, sub := range s.AnyOf {
			if e.takesEmpty(sub, elem) {
				return true
			}
		}
		return false
	}
	for _, v := range s.Enum {
		if fmt.Sprint(v) == "" {
			return true
		}
	}
	switch s.Type {
	case spec.TypeString:
		return len(s.Enum) == 0 && !elem
	case "":
		return len(s.Properties) == 0
	}
	return false
}

// Stripe's metadata limits (https://docs.stripe.com/api/metadata): at most
// 50 keys, keys up to 40 characters without square brackets, values up to
// 500 characters.
const (
	maxMetadataKeys     = 50
	maxMetadataKeyLen   = 40
	maxMetadataValueLen = 500
)

func isMetadataParam(name string) bool {
	return name == "metadata" || strings.HasSuffix(name, "[metadata]")
}

// checkMetadata applies the limits to the keys a request sets (an empty
// value unsets its key, so it doesn't count). The 50 keys are a limit of the
// object, checked again after an update merges (checkMetadataCount).
func checkMetadata(name string, m map[string]any, keys []string) *apiError {
	set := 0
	for _, k := range keys {
		if utf8.RuneCountInString(k) > maxMetadataKeyLen {
			return invalid("", name, "Invalid key: %s must be a string under %d characters", truncate(k, 60), maxMetadataKeyLen)
		}
		if strings.ContainsAny(k, "[]") {
			return invalid("", name, "Invalid key: %s; metadata keys can't contain square brackets ([ and ])", truncate(k, 60))
		}
		str, ok := m[k].(string)
		if !ok {
			continue // typed check below: "Invalid string"
		}
		if utf8.RuneCountInString(str) > maxMetadataValueLen {
			return invalid("", name, "Invalid val: %s... must be a string under %d characters", truncate(str, 40), maxMetadataValueLen)
		}
		if str != "" {
			set++
		}
	}
	if set > maxMetadataKeys {
		return tooManyMetadataKeys(name, set)
	}
	return nil
}

// tooManyMetadataKeys is Stripe's refusal as recorded in the wild
// (github.com/FlowFuse/flowfuse/issues/1948: "Metadata can have up to 50
// keys, but you've set 51. Email us at support+metadata@stripe.com for
// more information."); n is the number of keys the object would have.
func tooManyMetadataKeys(name string, n int) *apiError {
	return invalid("", name, "Metadata can have up to %d keys, but you've set %d. Email us at support+metadata@stripe.com for more information.", maxMetadataKeys, n)
}

// checkMetadataCount checks the object's metadata after an update merged
// the request's keys into it.
func checkMetadataCount(obj map[string]any) *apiError {
	if md, ok := obj["metadata"].(map[string]any); ok && len(md) > maxMetadataKeys {
		return tooManyMetadataKeys("metadata", len(md))
	}
	return nil
}

// requiredUnset names a parameter that an update tries to unset ("") although
// the create requires it (a product's name), or "". Update schemas type such
// fields as plain strings, like fields that can be unset (a customer's
// email), so the create's required list is what tells them apart.
func (e *Emulator) requiredUnset(rt *route, params map[string]any) string {
	if rt.verb != "POST" {
		return ""
	}
	for _, k := range kinds {
		if k.base == "" || k.idParam == "" || rt.path != k.base+"/{"+k.idParam+"}" {
			continue
		}
		create := e.api.find("POST", k.base)
		if create == nil {
			return ""
		}
		cs := e.api.resolve(create.reqSchema)
		us := e.api.resolve(rt.reqSchema)
		if cs == nil || us == nil {
			return ""
		}
		for _, req := range cs.Required {
			if v, ok := params[req].(string); ok && v == "" && !e.allowsEmpty(us.Properties[req]) {
				return req
			}
		}
		return ""
	}
	return ""
}
