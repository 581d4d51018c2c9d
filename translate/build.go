package translate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/pgstripe/pgstripe/schema"
)

// Call is one Stripe API request.
type Call struct {
	Method string // POST or DELETE
	Path   string // with the object's id in place
	Params url.Values
	// Create marks a create: it must carry an idempotency key that stays
	// the same across retries, so a retry can never make a second object.
	Create bool
}

func (c Call) String() string {
	s := c.Method + " " + c.Path
	if enc := c.Params.Encode(); enc != "" {
		s += " " + enc
	}
	return s
}

// RowCalls is the Stripe work for one row of the statement.
type RowCalls struct {
	ID string // the existing object (UPDATE, DELETE); "" for INSERT
	// Version is the local row's version when Eval read it (UPDATE): the
	// integer microseconds of its _synced_at.
	Version string
	Calls   []Call // in order; none when the row doesn't change
}

// Build turns the rows Eval returned (text format; nil is NULL) into Stripe
// calls. It checks every row before it returns, so an error means that
// nothing may be called. It is BuildStored without stored copies: an
// object given whole where Stripe takes its id (see Objects) passes only
// as the copy the column holds.
func (st *Statement) Build(rows [][][]byte) ([]RowCalls, *Error) {
	return st.BuildStored(NewRows(rows), nil)
}

// BuildStored is Build, with the stored copies of the objects that
// Objects named. It reads the values Objects decoded of rows without
// decoding them again.
func (st *Statement) BuildStored(rows *Rows, stored Stored) ([]RowCalls, *Error) {
	if rows == nil || st.Op == Insert && st.Eval.SQL == "" {
		rows = NewRows(make([][][]byte, st.Rows))
	}
	list := make([]*evalRow, len(rows.rows))
	for i := range rows.rows {
		list[i] = &rows.rows[i]
	}
	switch st.Op {
	case Update, Delete:
		list = dedupeByID(list)
		if len(list) > MaxRows {
			return nil, TooManyRows()
		}
	}
	out := make([]RowCalls, 0, len(list))
	for i, r := range list {
		var rc RowCalls
		var err *Error
		switch st.Op {
		case Insert:
			rc, err = st.buildInsert(r, stored)
		case Update:
			rc, err = st.buildUpdate(r, stored)
		case Delete:
			rc, err = st.buildDelete(r.raw)
		default:
			return nil, errorf(CodeFeatureNotSupported, "not a write")
		}
		if err != nil {
			if len(list) > 1 {
				err.Detail = strings.TrimPrefix(err.Detail+fmt.Sprintf("; in row %d of %d", i+1, len(list)), "; ")
			}
			return nil, err
		}
		out = append(out, rc)
	}
	return out, nil
}

// dedupeByID keeps the first row of each id: UPDATE … FROM can join a
// target row more than once, and Postgres updates it once.
func dedupeByID(rows []*evalRow) []*evalRow {
	seen := make(map[string]bool, len(rows))
	out := rows[:0:0]
	for _, r := range rows {
		if len(r.raw) == 0 {
			continue
		}
		id := string(r.raw[0])
		if seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, r)
	}
	return out
}

func (st *Statement) checkWidth(r [][]byte, want int) *Error {
	if len(r) != want {
		return errorf(CodeFeatureNotSupported, "internal error: evaluation returned %d columns, want %d", len(r), want)
	}
	return nil
}

func (st *Statement) buildInsert(r *evalRow, stored Stored) (RowCalls, *Error) {
	if st.Eval.SQL != "" {
		if err := st.checkWidth(r.raw, len(st.Fields)); err != nil {
			return RowCalls{}, err
		}
	}
	t := st.Table
	params := url.Values{}
	var extra map[string]any
	for i, f := range st.Fields {
		v, err := r.value(i, f)
		if err != nil {
			return RowCalls{}, err
		}
		if v == nil {
			continue // NULL or DEFAULT: not given
		}
		if f.Role == RoleExtra {
			if extra, err = extraParams(v); err != nil {
				return RowCalls{}, err
			}
			continue
		}
		if f.Role != RoleParam {
			return RowCalls{}, readOnlyColumn(t, f.Column, "create")
		}
		if err := checkObjects(t, f, "create", v, nil, stored); err != nil {
			return RowCalls{}, err
		}
		if els, ok := listElements(f, v, nil); ok {
			v = els
		}
		if err := arrayForObject(t, f, v); err != nil {
			return RowCalls{}, err
		}
		if err := formKeys(t, f.Column, v); err != nil {
			return RowCalls{}, err
		}
		if f.Owner {
			v = map[string]any{"type": f.Column, f.Column: v}
		}
		if v, err = checkValue(columnLabel(t, f), f, f.Param, f.Param.Name, refValue(f, v), formCreate); err != nil {
			return RowCalls{}, err
		}
		encodeCreate(params, f.Param.Name, v)
	}
	if err := mergeExtra(params, extra, t.CreateParams, nil, "create "+t.Object, formCreate); err != nil {
		return RowCalls{}, err
	}
	if err := checkMetadataLimits("stripe."+t.Name, params, nil); err != nil {
		return RowCalls{}, err
	}
	// Stripe would refuse the row, but only after the rows before it were
	// created: refuse the statement before any call, as Postgres refuses
	// a NOT NULL column left NULL.
	for _, k := range slices.Sorted(maps.Keys(t.CreateParams)) {
		if t.CreateParams[k].Required && !hasParam(params, k) {
			return RowCalls{}, errorf(CodeNotNullViolation, "Stripe requires %s to create a %s: it may not be NULL, empty or left out", k, t.Object).
				withHint("give %s a value in every row", k)
		}
	}
	return RowCalls{Calls: []Call{{Method: http.MethodPost, Path: t.CreatePath, Params: params, Create: true}}}, nil
}

// arrayForObject refuses a JSON array for a parameter Stripe takes only as
// an object (metadata, address, …): the form encoding would send it as
// name[0], name[1], which Stripe reads as an object keyed "0", "1" (a
// metadata array became metadata {"0": …}), not what the statement wrote.
func arrayForObject(t *schema.Table, f Field, v any) *Error {
	if _, ok := v.([]any); !ok || slices.Contains(f.Param.Types, "array") || !slices.Contains(f.Param.Types, "object") {
		return nil
	}
	return errorf(CodeInvalidParameterValue, "%s of stripe.%s must be a jsonb object, not an array: Stripe's %s takes an object", f.Column, t.Name, f.Param.Name).
		withHint(`e.g. '{"key": "value"}'`)
}

// checkValue refuses, before any call, a value that Stripe's form
// encoding would carry as something other than what the statement wrote
// (see unencodable, integerValue and emptyArray), naming where in it the
// problem is; label names the column, mode says how the value will be
// encoded. It returns the value to encode.
func checkValue(label string, f Field, p schema.Param, name string, v any, mode formMode) (any, *Error) {
	if s, ok := v.(string); ok && f.Kind == schema.KindNumber {
		switch s {
		case "NaN", "Infinity", "-Infinity":
			return nil, errorf(CodeInvalidParameterValue, "%s is %s: Stripe takes only finite numbers", label, s)
		}
	}
	v, bad := formValue(p, mode, name, "", v)
	switch {
	case bad == nil:
	case bad.metadata:
		return nil, errorf(CodeInvalidParameterValue, "%s has %s at %s, but Stripe's metadata values are strings", label, mustJSON(bad.value), bad.key).
			withDetail("Stripe refuses a hash or an array as a metadata value, and the form encoding sends an empty one as nothing").
			withHint("give a string, or null to remove the key")
	case bad.empty:
		e := errorf(CodeInvalidParameterValue, "%s has an empty array at %s: Stripe's form encoding can send one only as the empty string, which Stripe does not take there", label, bad.key).
			withDetail("left out instead, %s would get what Stripe does when it is not given, which Stripe's API reference does not document as an empty list", bad.key).
			withHint("leave the key out for Stripe's default, or give the elements")
		if bad.object {
			e.Detail = "'{}' is read as an empty array there, as Stripe takes only an array (node-postgres sends a JavaScript [] as '{}'); " + e.Detail
		}
		return nil, e
	case bad.key == name:
		return nil, errorf(CodeInvalidParameterValue, "%s is %s, but Stripe takes an integer for %s", label, bad.value, name).
			withHint("give a whole number (round() or trunc() it as you mean it)")
	default:
		return nil, errorf(CodeInvalidParameterValue, "%s has %s at %s, but Stripe takes an integer there", label, bad.value, bad.key).
			withHint("give a whole number (round() or trunc() it as you mean it)")
	}
	if key, what, gap := unencodable(name, v); key != "" {
		e := errorf(CodeInvalidParameterValue, "%s has %s at %s: Stripe's form encoding can't carry it as written", label, what, key)
		if gap {
			e.withDetail("the element would be left out, leaving a gap in the indices or a shorter array: how Stripe reads that is not documented").
				withHint("leave such elements out of the array")
		}
		return nil, e
	}
	return v, nil
}

// error refuses an update that would send the empty string where Stripe
// takes none (see encodeParamUpdate); label names the column.
func (r *unsetRefusal) error(label string) *Error {
	if r.array {
		return errorf(CodeInvalidParameterValue, "%s has an empty array at %s: Stripe's form encoding can send one only as the empty string, which Stripe does not take there", label, r.key).
			withDetail("left out of the update, %s would keep the elements it has in Stripe", r.key).
			withHint("leave %s as it is, or give the elements it is to have", r.key)
	}
	return errorf(CodeInvalidParameterValue, "%s sets %s to null or removes it: Stripe's form encoding can unset it only with the empty string, which Stripe does not take there", label, r.key).
		withDetail("Stripe cannot unset %s; left out of the update, it would keep the value it has in Stripe", r.key).
		withHint("leave %s as it is, or give it a value", r.key)
}

func columnLabel(t *schema.Table, f Field) string {
	return f.Column + " of stripe." + t.Name
}

// hasParam reports whether params gives the parameter k a value, other
// than the empty string (Stripe's "unset"), or bracketed (k[…]).
func hasParam(params url.Values, k string) bool {
	for p, v := range params {
		if p == k && !(len(v) == 1 && v[0] == "") || strings.HasPrefix(p, k+"[") {
			return true
		}
	}
	return false
}

// extraParams reads the _params value: a JSON object.
func extraParams(v any) (map[string]any, *Error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errorf(CodeInvalidParameterValue, "%s must be a jsonb object of Stripe parameters, e.g. '{\"payment_behavior\": \"default_incomplete\"}'", ParamsColumn)
	}
	if k, bad := badFormKey(m); bad {
		return nil, errorf(CodeInvalidParameterValue, "%s has the key %q, which Stripe's form encoding cannot carry: keys may not be empty or contain [ or ]", ParamsColumn, k)
	}
	if e, ok := m["expand"]; ok && !emptyJSON(e) {
		// Stripe's answer is applied to the table and given to RETURNING:
		// expanded, it would carry whole objects of other tables (a
		// customer's email and address into a payment intent's _raw),
		// for every role that may read this one, whatever its privileges
		// on theirs; and the copy would no longer be the object as sync
		// stores it.
		return nil, errorf(CodeFeatureNotSupported, "%s key \"expand\" is not supported: pgstripe stores Stripe's objects unexpanded, with the ids of the objects they refer to", ParamsColumn).
			withHint("leave expand out, and read the objects it names from their own tables by id")
	}
	return m, nil
}

// emptyJSON: v sends nothing (null, or an empty array).
func emptyJSON(v any) bool {
	a, ok := v.([]any)
	return v == nil || ok && len(a) == 0
}

// formKeys refuses a jsonb value with an object key that the bracketed
// form encoding cannot carry: name[a]]=x reaches Stripe as name[a]=x
// (another key, or a removal of another key on an update), name[a[b]]
// as a key "a[b", and name[]=x as an array. Stripe refuses square
// brackets in metadata keys anyway; refusing here refuses the whole
// statement before any call, not a row midway.
func formKeys(t *schema.Table, column string, v any) *Error {
	if k, bad := badFormKey(v); bad {
		return errorf(CodeInvalidParameterValue, "%s of stripe.%s has the key %q, which Stripe's form encoding cannot carry: keys may not be empty or contain [ or ]", column, t.Name, k).
			withHint("Stripe does not allow square brackets in metadata keys")
	}
	return nil
}

func badFormKey(v any) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if k == "" || strings.ContainsAny(k, "[]") {
				return k, true
			}
			if k, bad := badFormKey(x[k]); bad {
				return k, true
			}
		}
	case []any:
		for _, e := range x {
			if k, bad := badFormKey(e); bad {
				return k, true
			}
		}
	}
	return "", false
}

// mergeExtra adds the _params keys to params. A key must be a parameter of
// the endpoint (params) or, when after is set, goes to that call (an
// action endpoint such as /pay or /cancel, whose parameters Stripe checks),
// and may not repeat a column's parameter.
func mergeExtra(params url.Values, extra map[string]any, allowed map[string]schema.Param, after *Call, what string, mode formMode) *Error {
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		for p := range params {
			if p == k || strings.HasPrefix(p, k+"[") {
				return errorf(CodeDuplicateColumn, "Stripe parameter %q is given both as a column and in %s", k, ParamsColumn)
			}
		}
		target := params
		p, ok := allowed[k]
		if !ok {
			if after == nil {
				return errorf(CodeUndefinedColumn, "%s key %q is not a parameter of Stripe's %s", ParamsColumn, k, what)
			}
			target = after.Params
		}
		label := fmt.Sprintf("%s key %q", ParamsColumn, k)
		v, err := checkValue(label, Field{Column: ParamsColumn, Kind: schema.KindJSON}, p, k, extra[k], mode)
		if err != nil {
			return err
		}
		if mode == formSent && ok {
			// A parameter of the update itself: null or {} unsets it
			// where Stripe takes "", as a column's NULL does; left out,
			// as on a create, it would change nothing.
			if r := encodeParamGiven(target, p, k, v); r != nil {
				if r.key != k {
					// Below the key: an element naming an item
					// (items[0][quantity] null).
					return r.error(label)
				}
				return errorf(CodeInvalidParameterValue, "%s is %s: an update would send nothing for it and leave %s as it is in Stripe", label, mustJSON(extra[k]), k).
					withDetail("the form encoding has no null nor empty hash, and Stripe's update keeps what it is not given; null and {} unset only a parameter whose spec takes the empty string as its unset").
					withHint(`leave the key out, or give "" to unset %s where Stripe takes that`, k)
			}
			continue
		}
		encodeCreate(target, k, v)
	}
	return nil
}

func (st *Statement) buildUpdate(r *evalRow, stored Stored) (RowCalls, *Error) {
	lead := 2
	if st.parentInPath() {
		lead = 3
	}
	raw := r.raw
	if err := st.checkWidth(raw, lead+2*len(st.Fields)); err != nil {
		return RowCalls{}, err
	}
	t := st.Table
	id := string(raw[0])
	if err := addressable(t, id); err != nil {
		return RowCalls{}, err
	}
	rc := RowCalls{ID: id, Version: string(raw[1])}
	updatePath := t.UpdatePath
	if lead == 3 {
		var parent string
		if json.Unmarshal(raw[2], &parent) != nil || parent == "" {
			return RowCalls{}, errorf(CodeInvalidParameterValue, "%s %s has no %s: Stripe's update names it", t.Object, id, t.Parent.Column).
				withHint("this row was not written by Stripe; delete it directly on Postgres")
		}
		if err := addressable(t, parent); err != nil {
			return RowCalls{}, err
		}
		updatePath = strings.ReplaceAll(updatePath, "{parent}", url.PathEscape(parent))
	}
	params := url.Values{}
	var after []Call
	var extra map[string]any
	// The synced row's metadata and list elements, which Stripe merges
	// metadata into (syncedHashes).
	current := map[string]any{}
	for i, f := range st.Fields {
		n, o := lead+2*i, lead+1+2*i
		nraw, oraw := raw[n], raw[o]
		if f.Role == RoleParam && (f.Param.Name == "metadata" || slices.Contains(f.Param.List, "metadata")) {
			current[f.Param.Name], _ = r.value(o, f)
		}
		if sameJSON(nraw, oraw) {
			continue // unchanged: nothing to send
		}
		nv, err := r.value(n, f)
		if err != nil {
			return RowCalls{}, err
		}
		switch f.Role {
		case RoleExtra:
			if nv != nil {
				if extra, err = extraParams(nv); err != nil {
					return RowCalls{}, err
				}
			}
		case RoleReadOnly:
			if nv == nil {
				continue
			}
			if !st.Ops.Update {
				// Not a column Stripe's update lacks: Stripe has no update
				// of this object at all, only its status endpoints.
				msg := st.Ops.NoUpdate
				if msg == "" {
					msg = st.Ops.possible(t.Name)
				}
				return RowCalls{}, errorf(CodeFeatureNotSupported, "Stripe cannot update %s", t.Name).withHint("%s", msg)
			}
			e := readOnlyColumn(t, f.Column, "update")
			if f.Column == "status" && st.Ops.StatusHint != "" {
				e.Hint = st.Ops.StatusHint
			}
			return RowCalls{}, e
		case RoleStatus:
			s, ok := nv.(string)
			path := st.Ops.Status[s]
			if !ok || path == "" {
				return RowCalls{}, errorf(CodeFeatureNotSupported, "Stripe cannot set the status of %s %s to %s", t.Object, id, jsonText(nraw)).
					withHint("status can be set to %s", st.Ops.statusValues())
			}
			after = append(after, Call{Method: http.MethodPost, Path: objectPath(path, id), Params: url.Values{}})
		case RoleAttach:
			if nv == nil {
				after = append(after, Call{Method: http.MethodPost, Path: objectPath(st.Ops.DetachPath, id), Params: url.Values{}})
				continue
			}
			s, ok := nv.(string)
			if !ok {
				return RowCalls{}, errorf(CodeInvalidParameterValue, "%s must be an id", f.Column)
			}
			after = append(after, Call{Method: http.MethodPost, Path: objectPath(st.Ops.AttachPath, id), Params: url.Values{f.Column: {s}}})
		case RoleParam:
			ov, _ := r.value(o, f)
			if nv == nil {
				if !f.Param.Unset {
					return RowCalls{}, st.cannotUnset(raw, lead, i)
				}
				params.Set(f.Param.Name, "")
				continue
			}
			if err := checkObjects(t, f, "update", nv, ov, stored); err != nil {
				return RowCalls{}, err
			}
			if els, ok := listElements(f, nv, storedIDs(f, ov)); ok {
				if err := formKeys(t, f.Column, els); err != nil {
					return RowCalls{}, err
				}
				if _, err := checkValue(columnLabel(t, f), f, f.Param, f.Param.Name, els, formDiffed); err != nil {
					return RowCalls{}, err
				}
				if err := listUpdate(params, t, f, ov, nv); err != nil {
					return RowCalls{}, err
				}
				continue
			}
			if err := arrayForObject(t, f, nv); err != nil {
				return RowCalls{}, err
			}
			if err := formKeys(t, f.Column, nv); err != nil {
				return RowCalls{}, err
			}
			if err := formKeys(t, f.Column, ov); err != nil {
				return RowCalls{}, err
			}
			if ro := responseOnly[t.Name+"."+f.Column]; ro != nil {
				if ov, nv, err = dropResponseOnly(ro, ov, nv); err != nil {
					return RowCalls{}, errorf(CodeUndefinedColumn, "%s of stripe.%s cannot be changed: it is not a parameter of Stripe's update %s", f.Column+"."+err.Message, t.Name, t.Object).
						withHint("leave it as it is; the keys Stripe sets are kept out of the call")
				}
			}
			nv = refValue(f, nv)
			if nv, err = checkValue(columnLabel(t, f), f, f.Param, f.Param.Name, nv, formDiffed); err != nil {
				return RowCalls{}, err
			}
			if r := encodeParamUpdate(params, f.Param, f.Param.Name, refValue(f, ov), nv, f.Column != "metadata"); r != nil {
				return RowCalls{}, r.error(columnLabel(t, f))
			}
		}
	}
	if len(extra) > 0 {
		var action *Call
		if len(after) == 1 {
			action = &after[0]
		}
		allowed := t.UpdateParams
		if !st.Ops.Update {
			allowed = nil
		}
		if err := mergeExtra(params, extra, allowed, action, "update "+t.Object, formSent); err != nil {
			return RowCalls{}, err
		}
	}
	// Metadata through _params only: the stored copy that Objects named
	// (mergesParamsMetadata) is what Stripe merges it into.
	synced := syncedHashes(params, current, stored[ObjectRef{Table: t.Name, ID: id}])
	if err := checkMetadataLimits("stripe."+t.Name, params, synced); err != nil {
		return RowCalls{}, err
	}
	for _, c := range after {
		if err := checkMetadataLimits("stripe."+t.Name, c.Params, nil); err != nil {
			return RowCalls{}, err
		}
	}
	if len(params) > 0 {
		if !st.Ops.Update {
			return RowCalls{}, errorf(CodeFeatureNotSupported, "Stripe cannot update %s", t.Name).withHint("%s", st.Ops.possible(t.Name))
		}
		rc.Calls = append(rc.Calls, Call{Method: http.MethodPost, Path: objectPath(updatePath, id), Params: params})
	}
	rc.Calls = append(rc.Calls, after...)
	return rc, nil
}

// cannotUnset refuses the NULL that the update row r (id, version and,
// where the path names it, the parent: lead values first) gives the i-th
// field, a parameter Stripe can't unset, naming the later fields of the
// row that the same refusal applies to: an ORM saving an entity it has
// just inserted (TypeORM's save()) sends NULL for every field Stripe
// filled in that it did not read back, and the user should see them all
// at once, with what to do about it. Which NULL was meant (an unset, or
// what the ORM did not know) can't be told from the statement, so none
// is dropped.
func (st *Statement) cannotUnset(r [][]byte, lead, i int) *Error {
	cols := []string{st.Fields[i].Column}
	for j := i + 1; j < len(st.Fields); j++ {
		f := st.Fields[j]
		nraw, oraw := r[lead+2*j], r[lead+1+2*j]
		if f.Role == RoleParam && !f.Param.Unset && isJSONNull(nraw) && !sameJSON(nraw, oraw) {
			cols = append(cols, f.Column)
		}
	}
	list := cols[0]
	if n := len(cols); n > 1 {
		list = strings.Join(cols[:n-1], ", ") + " and " + cols[n-1]
	}
	return errorf(CodeNotNullViolation, "Stripe cannot unset %s of %s: NULL is not allowed here", list, st.Table.Object).
		withHint("give a value, or leave the column out; an ORM that saves an entity it has just inserted sends NULL for what Stripe filled in: read the entity again first (TypeORM: findOneBy), or update only what changed")
}

func (st *Statement) buildDelete(r [][]byte) (RowCalls, *Error) {
	if err := st.checkWidth(r, 1); err != nil {
		return RowCalls{}, err
	}
	id := string(r[0])
	if err := addressable(st.Table, id); err != nil {
		return RowCalls{}, err
	}
	return RowCalls{ID: id, Calls: []Call{{Method: http.MethodDelete, Path: objectPath(st.Table.DeletePath, id), Params: url.Values{}}}}, nil
}

// refValue makes a value as the column stores it acceptable to Stripe's
// parameter of the same name: where the parameter takes an id but the
// column holds the object (promotion_codes.coupon, a schedule phase's
// default_tax_rates, an expanded price), the object is named by its id.
func refValue(f Field, v any) any {
	if a, ok := v.([]any); ok {
		v = refElements(f, a)
	} else if m, ok := v.(map[string]any); ok && !slices.Contains(f.Param.Types, "object") && slices.Contains(f.Param.Types, "string") {
		// Only where the parameter takes an id, and only a real one:
		// an array parameter (items) never takes one, and {"id": ""}
		// would go as the empty string, which unsets.
		if id, ok := m["id"].(string); ok && id != "" {
			return id
		}
	}
	for _, p := range f.Param.Refs {
		v = idsAt(v, strings.Split(p, "."))
	}
	return v
}

// listElements turns a list object ({"object": "list", "data": [...]}, as
// the column of a parameter with Param.List holds it), or an array copied
// from one (see copiedList: items->'data'), into the array the parameter
// takes: the ids of Param.Refs in place of objects, and each element that
// is a Stripe object (it has "object") or names one of stored (the ids of
// the elements the column holds, on an update) cut down to the keys the
// request takes. Other elements were written by the statement in the
// request's shape and are left for Stripe to judge. ok is false for any
// other value (an array in the request's shape).
func listElements(f Field, v any, stored map[string]bool) (els []any, ok bool) {
	data, ok := listData(f, v)
	if !ok {
		if data, ok = v.([]any); !ok || !copiedList(f, data, stored) {
			return nil, false
		}
	}
	data, _ = refValue(f, data).([]any)
	out := make([]any, len(data))
	for i, e := range data {
		out[i], _ = requestElement(f, e, stored)
	}
	return out, true
}

// copiedList reports whether a, an array given for a parameter with
// Param.List, holds the elements of the list the column stores
// (items->'data', or what an ORM mapping the column to an array read)
// rather than elements written in the request's shape: one of them is a
// Stripe object (it has "object"), or names one of stored by its id with
// a key the request doesn't take. Sent key by key, such an element would
// reach Stripe with the keys only Stripe sets (items[0][object],
// items[0][created], the price object), which Stripe refuses as unknown
// parameters; it goes as the list object does instead (listUpdate).
func copiedList(f Field, a []any, stored map[string]bool) bool {
	if len(f.Param.List) == 0 {
		return false
	}
	if anyObject(a) {
		return true
	}
	for _, e := range a {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		if id, _ := m["id"].(string); id != "" && stored[id] {
			for k := range m {
				if !slices.Contains(f.Param.List, k) {
					return true
				}
			}
		}
	}
	return false
}

// anyObject reports whether an element of a is a Stripe object (it has
// "object"): a copy of what the column stores.
func anyObject(a []any) bool {
	for _, e := range a {
		if m, ok := e.(map[string]any); ok {
			if _, obj := m["object"].(string); obj {
				return true
			}
		}
	}
	return false
}

// storedIDs returns the ids of the elements of v, a list object or an
// array as the column of a parameter with Param.List holds it.
func storedIDs(f Field, v any) map[string]bool {
	data, ok := listData(f, v)
	if !ok {
		data, _ = v.([]any)
	}
	ids := map[string]bool{}
	for _, e := range data {
		if m, ok := e.(map[string]any); ok {
			if id, _ := m["id"].(string); id != "" {
				ids[id] = true
			}
		}
	}
	return ids
}

func listData(f Field, v any) ([]any, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(f.Param.List) == 0 || m["object"] != "list" {
		return nil, false
	}
	switch d := m["data"].(type) {
	case []any:
		return d, true
	case nil:
		return []any{}, true
	}
	return nil, false
}

// requestElement cuts a list element that is a Stripe object, or names
// one of stored by its id, down to the keys of f.Param.List; dropped are
// the keys it had besides.
func requestElement(f Field, e any, stored map[string]bool) (any, []string) {
	m, ok := e.(map[string]any)
	if !ok {
		return e, nil
	}
	if _, obj := m["object"].(string); !obj {
		if id, _ := m["id"].(string); id == "" || !stored[id] {
			return e, nil
		}
	}
	out := make(map[string]any, len(f.Param.List))
	var dropped []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if slices.Contains(f.Param.List, k) {
			out[k] = m[k]
		} else {
			dropped = append(dropped, k)
		}
	}
	return out, dropped
}

// listUpdate sends the change from ov to nv, a list object read back from
// the column and changed (subscriptions.items with jsonb_set), or the
// array of its elements (see copiedList), in the array form Stripe's
// update takes: an element the old list has (by id) goes with its id and
// its changed keys only, one it doesn't have as a new element, and an
// element the new list left out as {id, deleted: true}. Unchanged
// elements are not sent. A changed key that the request doesn't take (an
// item's created, plan, …) is refused: it would be lost.
func listUpdate(params url.Values, t *schema.Table, f Field, ov, nv any) *Error {
	name := f.Param.Name
	at := ".data.[]."
	newData, ok := listData(f, nv)
	if !ok {
		newData, _ = nv.([]any)
		at = ".[]."
	}
	rawNew := newData
	newData, _ = refValue(f, newData).([]any)
	oldData, ok := listData(f, ov)
	if !ok {
		oldData, _ = ov.([]any)
	}
	rawOld := map[string]any{}
	for _, e := range oldData {
		if m, ok := e.(map[string]any); ok {
			if id, _ := m["id"].(string); id != "" && rawOld[id] == nil {
				rawOld[id] = m
			}
		}
	}
	oldData, _ = refValue(f, oldData).([]any)
	// Both sides as they are to be sent (2.0 as 2, an item's empty
	// tax_rates as ""), so that an element compares equal to itself;
	// buildUpdate refused the new side's fractions already.
	newData, oldData = formElements(f.Param, name, newData), formElements(f.Param, name, oldData)
	old := map[string]map[string]any{}
	var oldIDs []string
	for _, e := range oldData {
		if m, ok := e.(map[string]any); ok {
			if id, ok := m["id"].(string); ok && id != "" && old[id] == nil {
				old[id] = m
				oldIDs = append(oldIDs, id)
			}
		}
	}
	stored := make(map[string]bool, len(old))
	for id := range old {
		stored[id] = true
	}
	kept := map[string]bool{}
	i := 0
	for j, e := range newData {
		prefix := fmt.Sprintf("%s[%d]", name, i)
		m, _ := e.(map[string]any)
		id, _ := m["id"].(string)
		o := old[id]
		if o == nil || kept[id] {
			el, _ := requestElement(f, e, nil)
			if r := encodeParamElement(params, f.Param, prefix, el); r != nil {
				return r.error(columnLabel(t, f))
			}
			i++
			continue
		}
		kept[id] = true
		nel, dropped := requestElement(f, m, stored)
		oel, _ := requestElement(f, o, stored)
		for _, k := range dropped {
			if !equalJSON(m[k], o[k]) {
				return errorf(CodeUndefinedColumn, "%s of stripe.%s cannot be changed: it is not a parameter of Stripe's update %s", f.Column+at+k, t.Name, t.Object).
					withHint("leave it as it is; the keys Stripe sets are kept out of the call")
			}
		}
		if place := changedRef(f, rawNew[j], rawOld[id]); place != "" {
			return errorf(CodeUndefinedColumn, "%s of stripe.%s cannot be changed: Stripe's update %s takes only the id of the object there", f.Column+at+place, t.Name, t.Object).
				withHint("give the id of the object it is to have, or change that object in its own table")
		}
		if equalJSON(nel, oel) {
			continue
		}
		nm, _ := nel.(map[string]any)
		om, _ := oel.(map[string]any)
		nm, om = maps.Clone(nm), maps.Clone(om)
		delete(nm, "id")
		delete(om, "id")
		if _, obj := m["object"].(string); !obj {
			// Written in the request's shape ({"id": "si_1", "quantity":
			// 5}): the keys it has are the change, the others stay.
			for k := range om {
				if _, ok := nm[k]; !ok {
					delete(om, k)
				}
			}
			if equalJSON(nm, om) {
				continue // the keys it has are as stored
			}
		}
		params.Set(prefix+"[id]", id)
		if r := encodeParamUpdateAt(params, f.Param, prefix, []string{"[]"}, om, nm, false); r != nil {
			return r.error(columnLabel(t, f))
		}
		i++
	}
	for _, id := range oldIDs {
		if kept[id] {
			continue
		}
		if at == ".[]." && !anyObject(rawNew) {
			// Not a copy of the whole list for sure: no element is a
			// Stripe object, only one names a stored item with a key
			// Stripe sets (JSON built from stripe.subscription_items
			// rows). Such an array may mean "change these" as a
			// request-shaped one does, which leaves the others alone;
			// removing the others on a guess could lose items.
			return errorf(CodeFeatureNotSupported, "%s of stripe.%s leaves out %s, which it held: whether to remove it is not known, as no element is a copy of a stored item (none has \"object\")", f.Column, t.Name, id).
				withHint(`to remove the item, include {"id": "%s", "deleted": true}; to keep it, include it, or write the elements in the request's shape only (keys Stripe's update takes)`, id)
		}
		if !slices.Contains(f.Param.List, "deleted") || !slices.Contains(f.Param.List, "id") {
			return errorf(CodeFeatureNotSupported, "an element left out of %s of stripe.%s cannot be removed: Stripe's update %s has no way to delete it", f.Column, t.Name, t.Object)
		}
		prefix := fmt.Sprintf("%s[%d]", name, i)
		params.Set(prefix+"[id]", id)
		params.Set(prefix+"[deleted]", "true")
		i++
	}
	return nil
}

// changedRef finds, in e, an element of a list read back from the column
// and changed, a Stripe object at a place of f.Param.Refs (an item's price,
// its tax rates) that stored, the stored element of the same id, holds
// with the same id but other content, and returns the place ("price",
// "tax_rates.[]"). The request takes the object by its id, and the change
// (jsonb_set on price.unit_amount) would be lost.
func changedRef(f Field, e, stored any) string {
	for _, ref := range f.Param.Refs {
		keys := strings.Split(ref, ".")
		if len(keys) < 2 || keys[0] != "[]" {
			continue
		}
		was := map[string]any{}
		for _, o := range valuesAt(stored, keys[1:]) {
			if id, ok := stripeObjectID(o); ok {
				was[id] = o
			}
		}
		for _, n := range valuesAt(e, keys[1:]) {
			if id, ok := stripeObjectID(n); ok {
				if o, ok := was[id]; ok && !equalJSON(o, n) {
					return strings.Join(keys[1:], ".")
				}
			}
		}
	}
	return ""
}

// stripeObjectID returns the id of v when it is a Stripe object (as idsAt
// recognises one).
func stripeObjectID(v any) (string, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return "", false
	}
	if _, obj := m["object"].(string); !obj {
		return "", false
	}
	id, ok := m["id"].(string)
	return id, ok
}

// valuesAt returns the values at keys in v (see editAt).
func valuesAt(v any, keys []string) []any {
	if len(keys) == 0 {
		return []any{v}
	}
	var out []any
	if keys[0] == "[]" {
		a, _ := v.([]any)
		for _, e := range a {
			out = append(out, valuesAt(e, keys[1:])...)
		}
		return out
	}
	if m, ok := v.(map[string]any); ok {
		if e, ok := m[keys[0]]; ok {
			out = valuesAt(e, keys[1:])
		}
	}
	return out
}

// formElements returns the elements of an array parameter p as formValue
// makes them for an update; an element it refuses is kept as it is.
func formElements(p schema.Param, name string, data []any) []any {
	out := make([]any, len(data))
	for i, e := range data {
		out[i] = e
		if v, bad := formValue(p, formDiffed, name, "[]", e); bad == nil {
			out[i] = v
		}
	}
	return out
}

// idsAt replaces the Stripe objects at keys (see schema.Param.Refs) by
// their ids. A Stripe object is recognised by its string "id" and
// "object" (request parameters never carry "object"), or is {"id": …}
// alone, which can only name one (Stripe takes a string there); anything
// else is left for Stripe to judge. checkObjects has refused those whose
// other keys the id would drop.
func idsAt(v any, keys []string) any {
	return editAt(v, keys, func(v any) any {
		if m, ok := v.(map[string]any); ok {
			_, obj := m["object"].(string)
			if id, ok := m["id"].(string); ok && (obj || len(m) == 1 && id != "") {
				return id
			}
		}
		return v
	})
}

// editAt returns v with edit applied to each value at keys (dot-separated
// path split; "[]" for every element of an array), copying the maps and
// arrays on the way: a decoded value is read by Objects and Build both
// (Rows), and by Build in more than one place. Where the path is missing,
// v is left as it is.
func editAt(v any, keys []string, edit func(any) any) any {
	if len(keys) == 0 {
		return edit(v)
	}
	if keys[0] == "[]" {
		a, ok := v.([]any)
		if !ok {
			return v
		}
		c := make([]any, len(a))
		for i, e := range a {
			c[i] = editAt(e, keys[1:], edit)
		}
		return c
	}
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	e, ok := m[keys[0]]
	if !ok {
		return v
	}
	c := maps.Clone(m)
	c[keys[0]] = editAt(e, keys[1:], edit)
	return c
}

// dropResponseOnly removes the response-only keys (dotted paths, "[]" for
// every element of an array) from the current and the new value of an
// object column. A key the new value gives a different non-null value is
// an error whose Message is its path.
func dropResponseOnly(paths []string, ov, nv any) (any, any, *Error) {
	for _, p := range paths {
		keys := strings.Split(p, ".")
		if changedAt(ov, nv, keys) {
			return nil, nil, &Error{Message: p}
		}
		ov, nv = withoutPath(ov, keys), withoutPath(nv, keys)
	}
	return ov, nv, nil
}

// changedAt reports whether nv gives the key at keys a non-null value that
// ov doesn't have; an array's elements are compared by position.
func changedAt(ov, nv any, keys []string) bool {
	if len(keys) == 0 {
		return nv != nil && !equalJSON(nv, ov)
	}
	if keys[0] == "[]" {
		na, _ := nv.([]any)
		oa, _ := ov.([]any)
		for i, e := range na {
			var oe any
			if i < len(oa) {
				oe = oa[i]
			}
			if changedAt(oe, e, keys[1:]) {
				return true
			}
		}
		return false
	}
	nm, ok := nv.(map[string]any)
	if !ok {
		return false
	}
	om, _ := ov.(map[string]any)
	return changedAt(om[keys[0]], nm[keys[0]], keys[1:])
}

// withoutPath returns v without the key at keys (see editAt).
func withoutPath(v any, keys []string) any {
	last := keys[len(keys)-1]
	return editAt(v, keys[:len(keys)-1], func(p any) any {
		m, ok := p.(map[string]any)
		if !ok {
			return p
		}
		if _, ok := m[last]; !ok {
			return p
		}
		c := maps.Clone(m)
		delete(c, last)
		return c
	})
}

// refElements makes an array's elements as the column stores them
// acceptable to the parameter where the shape, not only an id, differs:
// Stripe returns discounts as ids (or discount objects) but takes them as
// {"discount": id}, and returns the last of a price's tiers with up_to
// null but takes "inf". (Objects where Stripe takes ids, as tax_rates,
// are Param.Refs.)
func refElements(f Field, a []any) []any {
	if f.Param.Name != "tiers" && f.Param.Name != "discounts" {
		return a
	}
	out := make([]any, len(a))
	for i, e := range a {
		out[i] = refElement(f.Param.Name, e)
	}
	return out
}

func refElement(param string, e any) any {
	m, isMap := e.(map[string]any)
	if param == "tiers" {
		if v, has := m["up_to"]; isMap && has && v == nil {
			c := maps.Clone(m)
			c["up_to"] = "inf"
			return c
		}
		return e
	}
	id := ""
	switch {
	case isMap:
		if _, obj := m["object"].(string); obj {
			id, _ = m["id"].(string)
		}
	default:
		id, _ = e.(string)
	}
	if id == "" {
		return e
	}
	return map[string]any{"discount": id}
}

// addressable refuses ids that no escaping keeps in their own path
// segment: with "" the path is the list's (a POST to /v1/customers/
// creates a customer), and "." or ".." are dot segments that servers and
// proxies on the way may resolve. Stripe never makes such ids (custom ids
// are letters, digits, '_' and '-'), but a row written directly on
// Postgres can have one.
func addressable(t *schema.Table, id string) *Error {
	switch id {
	case "", ".", "..":
		return errorf(CodeInvalidParameterValue, "%q is not the id of a Stripe %s: no call can name it", id, t.Object).
			withHint("this row was not written by Stripe; delete it directly on Postgres")
	}
	return nil
}

func objectPath(p, id string) string { return strings.ReplaceAll(p, "{id}", url.PathEscape(id)) }

// decodeValue reads one evaluated value. JSON null and SQL NULL are both
// nil.
func decodeValue(raw []byte, f Field) (any, *Error) {
	if raw == nil {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, errorf(CodeInvalidParameterValue, "cannot read the value of %s: %v", f.Column, err)
	}
	return v, nil
}

// Rows are the rows Eval returned (text format; nil is NULL), for
// Objects and then BuildStored: both read the values that give objects,
// and each value is decoded once, by the first to read it (neither
// changes what it decoded).
type Rows struct {
	rows []evalRow
}

// NewRows holds rows for Objects and BuildStored.
func NewRows(rows [][][]byte) *Rows {
	rs := &Rows{rows: make([]evalRow, len(rows))}
	for i, r := range rows {
		rs.rows[i].raw = r
	}
	return rs
}

// evalRow is one row Eval returned, with its values as decoded so far.
type evalRow struct {
	raw [][]byte
	dec []decoded // by index in raw
}

type decoded struct {
	v    any
	done bool
}

// value is decodeValue of the row's i-th value, f's. An error is not
// kept: Build returns it (and adds to it), and Objects skips the value.
func (r *evalRow) value(i int, f Field) (any, *Error) {
	if r.dec == nil {
		r.dec = make([]decoded, len(r.raw))
	}
	d := &r.dec[i]
	if !d.done {
		v, err := decodeValue(r.raw[i], f)
		if err != nil {
			return nil, err
		}
		d.v, d.done = v, true
	}
	return d.v, nil
}

// sameJSON compares two values Postgres produced with to_jsonb: jsonb's
// text form is canonical (sorted keys, no spaces), so equal text is equal
// value. (Numerically equal numbers with different scale compare unequal;
// that only sends an unchanged value.)
func sameJSON(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil || isJSONNull(a) && isJSONNull(b)
	}
	return bytes.Equal(a, b)
}

func isJSONNull(b []byte) bool { return b == nil || string(b) == "null" }

func jsonText(b []byte) string {
	if b == nil {
		return "NULL"
	}
	return string(b)
}
