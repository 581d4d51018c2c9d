package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/stripe/stripe-mock/spec"
)

// Objects are built generically: start from the spec's fixture for the
// resource, scrub what belongs to the fixture (timestamps, references to
// fixture objects, nested lists), then copy every request parameter that is
// also a property of the object. Hand-written hooks (kinds.go) add only the
// behaviour that matters (statuses, totals, children, side effects).

// newObject starts a fresh object of kind k.
func (e *Emulator) newObject(k *kind, now int64, live bool) map[string]any {
	obj := e.api.fixture(k.fixture)
	sch := e.api.schemas[k.schema]
	fixtureID, _ := obj["id"].(string)
	id := e.newID(k.prefix)
	if sch != nil {
		for name, prop := range sch.Properties {
			p := e.api.resolve(prop)
			switch {
			case name == "id" || name == "object" || name == "livemode" || name == "created":
			case prop.Format == "unix-time" || (p != nil && p.Format == "unix-time"):
				if prop.Nullable {
					obj[name] = nil
				} else {
					obj[name] = now
				}
			case prop.XExpansionResources != nil && prop.Nullable:
				obj[name] = nil
			}
		}
	}
	for name, v := range obj {
		if m, ok := v.(map[string]any); ok && m["object"] == "list" {
			m["data"] = []any{}
			m["has_more"] = false
			if u, ok := m["url"].(string); ok && fixtureID != "" {
				m["url"] = strings.ReplaceAll(u, fixtureID, id)
			}
			obj[name] = m
		}
	}
	for _, f := range k.blank {
		if _, ok := obj[f]; ok {
			obj[f] = nil
		}
	}
	obj["id"] = id
	if _, ok := obj["created"]; ok || sch == nil || sch.Properties["created"] != nil {
		obj["created"] = now
	}
	if _, ok := obj["livemode"]; ok {
		obj["livemode"] = live
	}
	if _, ok := obj["metadata"]; ok {
		obj["metadata"] = map[string]any{}
	}
	return obj
}

// newID returns a fresh id with Stripe's prefix and a 24-character tail.
func (e *Emulator) newID(prefix string) string {
	for {
		id := prefix + randAlnum(e.idRand, 24)
		taken := false
		for _, t := range e.tables {
			if _, ok := t.byID[id]; ok {
				taken = true
				break
			}
		}
		if !taken {
			return id
		}
	}
}

// applyParams copies request params onto obj wherever the object schema has
// a property of the same name and a compatible shape. Keys in skip are left
// to hooks.
func (e *Emulator) applyParams(schemaName string, obj map[string]any, params map[string]any, skip ...string) {
	sch := e.api.schemas[schemaName]
	if sch == nil {
		return
	}
outer:
	for k, v := range params {
		if k == "expand" || k == "id" || k == "object" || k == "created" || k == "livemode" {
			continue
		}
		for _, s := range skip {
			if s == k {
				continue outer
			}
		}
		prop := sch.Properties[k]
		if prop == nil {
			continue
		}
		if k == "metadata" {
			obj[k] = mergeMetadata(obj[k], v)
			continue
		}
		if nv, ok := e.assign(prop, obj[k], v, 0); ok {
			obj[k] = nv
		}
	}
}

func mergeMetadata(cur, v any) any {
	m, _ := cur.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	switch x := v.(type) {
	case string:
		if x == "" {
			return map[string]any{}
		}
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && s == "" {
				delete(m, k)
			} else {
				m[k] = fmt.Sprint(val)
			}
		}
	}
	return m
}

// assign converts a param value to the shape of a property. ok is false when
// the shapes don't match (then a hook must handle the param).
func (e *Emulator) assign(prop *spec.Schema, cur any, v any, depth int) (any, bool) {
	// Each anyOf counts as a level: a subscription's payment_settings
	// [payment_method_options][us_bank_account][financial_connections]
	// [permissions][0] is 8 deep, and was dropped at 6; 16 leaves room
	// for Stripe's deepest request params and still bounds recursion.
	if depth > 16 {
		return nil, false
	}
	if s, ok := v.(string); ok && s == "" && prop.Nullable {
		return nil, true
	}
	p := e.api.resolve(prop)
	if p == nil {
		return nil, false
	}
	if len(p.AnyOf) > 0 {
		for _, sub := range p.AnyOf {
			if nv, ok := e.assign(sub, cur, v, depth+1); ok {
				return nv, true
			}
		}
		return nil, false
	}
	switch p.Type {
	case spec.TypeString:
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		if len(p.Enum) > 0 {
			found := false
			for _, a := range p.Enum {
				if fmt.Sprint(a) == s {
					found = true
				}
			}
			if !found {
				return nil, false
			}
		}
		return s, true
	case spec.TypeInteger:
		n, ok := toInt(v)
		return n, ok
	case spec.TypeNumber:
		switch x := v.(type) {
		case float64:
			return x, true
		case int:
			return x, true
		}
		return nil, false
	case spec.TypeBoolean:
		b, ok := v.(bool)
		return b, ok
	case spec.TypeArray:
		arr, ok := v.([]any)
		if !ok || p.Items == nil {
			return nil, false
		}
		out := make([]any, 0, len(arr))
		for _, it := range arr {
			nv, ok := e.assign(p.Items, nil, it, depth+1)
			if !ok {
				return nil, false
			}
			out = append(out, nv)
		}
		return out, true
	case spec.TypeObject:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		base, _ := cur.(map[string]any)
		if base == nil {
			if len(p.Properties) == 0 {
				base = map[string]any{}
			} else {
				base, _ = e.zero(p, depth+1).(map[string]any)
			}
			if base == nil {
				// zero gives up below its depth limit (payment_settings.
				// payment_method_options.us_bank_account.
				// financial_connections): the given keys still apply.
				base = map[string]any{}
			}
		} else {
			base = deepCopy(base).(map[string]any)
		}
		for k2, v2 := range m {
			sub := p.Properties[k2]
			if sub == nil {
				if p.AdditionalProperties != nil || len(p.Properties) == 0 {
					base[k2] = v2
				}
				continue
			}
			if nv, ok := e.assign(sub, base[k2], v2, depth+1); ok {
				base[k2] = nv
			}
		}
		return base, true
	}
	return nil, false
}

// zero builds the smallest valid value of a schema: nullable -> null, else
// an empty value of the type, objects with all their properties.
func (e *Emulator) zero(prop *spec.Schema, depth int) any {
	if prop.Nullable || depth > 5 {
		return nil
	}
	p := e.api.resolve(prop)
	if p == nil {
		return nil
	}
	if len(p.AnyOf) > 0 {
		return e.zero(p.AnyOf[0], depth+1)
	}
	switch p.Type {
	case spec.TypeString:
		if len(p.Enum) > 0 {
			return fmt.Sprint(p.Enum[0])
		}
		return ""
	case spec.TypeInteger:
		return int64(0)
	case spec.TypeNumber:
		return 0.0
	case spec.TypeBoolean:
		return false
	case spec.TypeArray:
		return []any{}
	case spec.TypeObject:
		m := map[string]any{}
		for k, sub := range p.Properties {
			m[k] = e.zero(sub, depth+1)
		}
		return m
	}
	return nil
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		return int64(x), true
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func getInt(m map[string]any, k string) int64 {
	n, _ := toInt(m[k])
	return n
}

func getStr(m map[string]any, k string) string { return idOfAny(m[k]) }

func getBool(m map[string]any, k string) bool {
	b, _ := m[k].(bool)
	return b
}

// encode stores obj in its table (insert or replace) and returns the record.
func (e *Emulator) store(k *kind, obj map[string]any) *record {
	e.stampClock(k, obj)
	e.clean(k.schema, obj)
	t := e.tables[k.table]
	// Encode into a reused scratch buffer and keep an exact-size copy:
	// append growth would otherwise leave up to half of each stored
	// object's capacity unused.
	buf, err := appendJSON(e.scratch[:0], obj)
	if err != nil {
		panic(fmt.Sprintf("emulator: encode %s: %v", k.table, err))
	}
	e.scratch = buf
	raw := bytes.Clone(buf)
	id, _ := obj["id"].(string)
	r := &record{id: id, created: getInt(obj, "created"), raw: raw, keys: t.extractKeys(obj)}
	if k.parent != "" {
		r.parent = getStr(obj, k.parent)
	}
	if _, ok := t.byID[id]; !ok {
		e.seq++
		r.seq = e.seq
	}
	r = t.put(r)
	if k == kInvoice {
		e.scheduleOverdue(r)
	}
	return r
}

// clean drops null fields that the schema does not allow to be null: Stripe
// omits such optional fields instead (line_item.invoice_item,
// refund.failure_balance_transaction).
func (e *Emulator) clean(schemaName string, obj map[string]any) {
	sch := e.api.schemas[schemaName]
	if sch == nil {
		return
	}
	for k, v := range obj {
		if v != nil {
			continue
		}
		if p := sch.Properties[k]; p != nil && !p.Nullable {
			delete(obj, k)
		}
	}
}

// load decodes the current state of an object, or nil.
func (e *Emulator) load(k *kind, id string) map[string]any {
	r := e.tables[k.table].byID[id]
	if r == nil {
		return nil
	}
	m, err := decodeObject(r.raw)
	if err != nil {
		return nil
	}
	return m
}

// findAny looks an id up in every table (for expansion: ids of coupons and
// plans are free-form, so prefixes can't be trusted).
func (e *Emulator) findAny(id string, prefer string) *record {
	if prefer != "" {
		if t := e.tables[prefer]; t != nil {
			if r := t.byID[id]; r != nil {
				return r
			}
		}
	}
	// In kinds' order, not the map's: an id in two tables (a coupon and a
	// plan may share one) resolves the same way every time.
	for _, k := range kinds {
		if k.table == "events" || k.table == "upcoming_invoices" {
			continue
		}
		if r := e.tables[k.table].byID[id]; r != nil {
			return r
		}
	}
	return nil
}

// childList renders the embedded first page of a nested list.
func (e *Emulator) childList(k *kind, parentID, url string) map[string]any {
	ch := e.tables[k.table].children[parentID]
	n := min(len(ch), 10)
	data := make([]any, n)
	for i := 0; i < n; i++ {
		data[i] = json.RawMessage(ch[i].raw)
	}
	return map[string]any{"object": "list", "data": data, "has_more": len(ch) > 10, "url": url}
}

// expandObject applies expand paths to obj.
func (e *Emulator) expandObject(obj map[string]any, paths []string, schemaName string, topLevel bool) *apiError {
	sch := e.api.schemas[schemaName]
	for _, p := range paths {
		segs := strings.Split(p, ".")
		if topLevel && sch != nil && sch.XExpandableFields != nil {
			ok := false
			for _, f := range *sch.XExpandableFields {
				if f == segs[0] {
					ok = true
				}
			}
			if !ok {
				return invalid("", "expand", "This property cannot be expanded (%s).", segs[0])
			}
		}
		e.expandPath(obj, segs, 0)
	}
	return nil
}

func (e *Emulator) expandPath(obj map[string]any, segs []string, depth int) {
	if len(segs) == 0 || depth > 4 {
		return
	}
	f := segs[0]
	v, ok := obj[f]
	if !ok {
		if ex := e.virtualField(obj, f); ex != nil {
			obj[f] = ex
			v = ex
		} else {
			return
		}
	}
	switch x := v.(type) {
	case string:
		r := e.findAny(x, "")
		if r == nil {
			// Deleted objects expand to their stub.
			if stub := e.tombstones[x]; stub != nil {
				if m, err := decodeObject(stub); err == nil {
					obj[f] = m
				}
			}
			return
		}
		m, err := decodeObject(r.raw)
		if err != nil {
			return
		}
		obj[f] = m
		e.expandPath(m, segs[1:], depth+1)
	case map[string]any:
		if x["object"] == "list" && len(segs) > 1 && segs[1] == "data" {
			data, _ := x["data"].([]any)
			for i, it := range data {
				var m map[string]any
				switch y := it.(type) {
				case map[string]any:
					m = y
				case json.RawMessage:
					m, _ = decodeObject(y)
				}
				if m != nil {
					e.expandPath(m, segs[2:], depth+1)
					data[i] = m
				}
			}
			return
		}
		e.expandPath(x, segs[1:], depth+1)
	case []any:
		for i, it := range x {
			switch y := it.(type) {
			case string:
				if r := e.findAny(y, ""); r != nil {
					if m, err := decodeObject(r.raw); err == nil {
						x[i] = m
						e.expandPath(m, segs[1:], depth+1)
					}
				}
			case map[string]any:
				e.expandPath(y, segs[1:], depth+1)
			}
		}
	}
}

// virtualField renders includable lists that are absent unless expanded
// (customer.subscriptions, customer.tax_ids, customer.sources,
// charge.refunds).
func (e *Emulator) virtualField(obj map[string]any, f string) any {
	id, _ := obj["id"].(string)
	object, _ := obj["object"].(string)
	var k *kind
	var url string
	switch {
	case object == "customer" && f == "subscriptions":
		k, url = kindByTable["subscriptions"], "/v1/customers/"+id+"/subscriptions"
	case object == "customer" && f == "tax_ids":
		k, url = kindByTable["tax_ids"], "/v1/customers/"+id+"/tax_ids"
	case object == "charge" && f == "refunds":
		k, url = kindByTable["refunds"], "/v1/charges/"+id+"/refunds"
	case object == "customer" && f == "sources":
		// Not included by default since 2020-08-27, like subscriptions
		// and tax_ids; only cards are modelled (sources.go).
		k, url = kCard, "/v1/customers/"+id+"/sources"
	case object == "checkout.session" && f == "line_items":
		items := e.csItems[id]
		data := make([]any, 0, min(len(items), 10))
		for _, it := range items[:min(len(items), 10)] {
			data = append(data, it)
		}
		return map[string]any{"object": "list", "data": data, "has_more": len(items) > 10, "url": "/v1/checkout/sessions/" + id + "/line_items"}
	default:
		return nil
	}
	field := "customer"
	if k.table == "refunds" {
		field = "charge"
	}
	t := e.tables[k.table]
	seq := t.ordered
	if field == "customer" && t.byCustomer != nil {
		seq = t.byCustomer[id]
	}
	recs, more := page(seq, listQuery{limit: 10, createdLo: minTime, createdHi: maxTime, match: func(r *record) bool {
		v, _ := t.keyOf(r, field)
		return v == id
	}}, false)
	data := make([]any, len(recs))
	for i, r := range recs {
		data[i] = json.RawMessage(r.raw)
	}
	return map[string]any{"object": "list", "data": data, "has_more": more, "url": url}
}

// expandsOf returns the expand[] params.
func expandsOf(params map[string]any) []string {
	var out []string
	switch x := params["expand"].(type) {
	case []any:
		for _, v := range x {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
	case string:
		out = append(out, x)
	}
	return out
}

// render answers with one object, expanded as asked.
func (e *Emulator) render(k *kind, raw []byte, c *reqCtx) (any, *apiError) {
	ex := expandsOf(c.params)
	if len(ex) == 0 {
		return raw, nil
	}
	m, err := decodeObject(raw)
	if err != nil {
		return nil, &apiError{status: 500, Type: "api_error", Message: err.Error()}
	}
	if ae := e.expandObject(m, ex, k.schema, true); ae != nil {
		return nil, ae
	}
	return m, nil
}

// renderList answers with a list page.
func (e *Emulator) renderList(recs []*record, more bool, url string, schemaName string, c *reqCtx) (any, *apiError) {
	var sub []string
	for _, p := range expandsOf(c.params) {
		if !strings.HasPrefix(p, "data.") {
			return nil, invalid("", "expand", "This property cannot be expanded (%s). You may want to try expanding 'data.%s' instead.", p, p)
		}
		sub = append(sub, strings.TrimPrefix(p, "data."))
	}
	size := 96 + len(url)
	for _, r := range recs {
		size += len(r.raw) + 1
	}
	b := bytes.NewBuffer(make([]byte, 0, size))
	b.WriteString(`{"object":"list","data":[`)
	for i, r := range recs {
		if i > 0 {
			b.WriteByte(',')
		}
		if len(sub) == 0 {
			b.Write(r.raw)
			continue
		}
		m, err := decodeObject(r.raw)
		if err != nil {
			return nil, &apiError{status: 500, Type: "api_error", Message: err.Error()}
		}
		if ae := e.expandObject(m, sub, schemaName, true); ae != nil {
			return nil, ae
		}
		enc, _ := marshal(m)
		b.Write(enc)
	}
	b.WriteString(`],"has_more":`)
	b.WriteString(strconv.FormatBool(more))
	b.WriteString(`,"url":`)
	u, _ := json.Marshal(url)
	b.Write(u)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// parseList reads limit, cursors and created from params; cursor ids are
// looked up in t.
func (e *Emulator) parseList(c *reqCtx, t *table, what string) (listQuery, *apiError) {
	return e.parseListBy(c, func(id string) *record { return t.byID[id] }, what)
}

// parseListBy is parseList with cursor ids looked up by lookup.
func (e *Emulator) parseListBy(c *reqCtx, lookup func(id string) *record, what string) (listQuery, *apiError) {
	q := listQuery{limit: 10, createdLo: minTime, createdHi: maxTime}
	if v, ok := c.params["limit"]; ok {
		n, ok := toInt(v)
		if !ok || n < 1 || n > 100 {
			return q, invalid("parameter_invalid_integer", "limit", "Invalid limit: must be between 1 and 100")
		}
		q.limit = int(n)
	}
	sa, _ := c.params["starting_after"].(string)
	eb, _ := c.params["ending_before"].(string)
	if sa != "" && eb != "" {
		return q, invalid("parameters_exclusive", "ending_before", "You may only specify one of these parameters: ending_before, starting_after.")
	}
	if sa != "" {
		q.startingAfter = lookup(sa)
		if q.startingAfter == nil {
			return q, &apiError{status: 400, Type: "invalid_request_error", Code: "resource_missing", Param: "starting_after", Message: fmt.Sprintf("No such %s: '%s'", what, sa)}
		}
	}
	if eb != "" {
		q.endingBefore = lookup(eb)
		if q.endingBefore == nil {
			return q, &apiError{status: 400, Type: "invalid_request_error", Code: "resource_missing", Param: "ending_before", Message: fmt.Sprintf("No such %s: '%s'", what, eb)}
		}
	}
	switch x := c.params["created"].(type) {
	case nil:
	case map[string]any:
		for op, v := range x {
			n, ok := toInt(v)
			if !ok {
				return q, invalid("parameter_invalid_integer", "created["+op+"]", "Invalid integer: %v", v)
			}
			switch op {
			case "gt":
				q.createdLo = max(q.createdLo, n+1)
			case "gte":
				q.createdLo = max(q.createdLo, n)
			case "lt":
				q.createdHi = min(q.createdHi, n-1)
			case "lte":
				q.createdHi = min(q.createdHi, n)
			}
		}
	default:
		n, ok := toInt(x)
		if !ok {
			return q, invalid("parameter_invalid_integer", "created", "Invalid integer: %v", x)
		}
		q.createdLo, q.createdHi = n, n
	}
	return q, nil
}
