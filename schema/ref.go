package schema

import "encoding/json"

// RefID is the id a reference field holds: the string itself, or the id of
// the object Stripe expanded in its place ("" for null or anything else).
// Expandable columns store this id.
func RefID(v json.RawMessage) string {
	if len(v) == 0 {
		return ""
	}
	switch v[0] {
	case '"':
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	case '{':
		var o struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(v, &o) == nil {
			return o.ID
		}
	}
	return ""
}
