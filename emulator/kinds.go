package emulator

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// kind describes one Stripe object type: where it lives, how lists filter
// it and which events its changes produce.
type kind struct {
	table   string // CONTRACT §3 table name
	schema  string // component schema (also the fixture name)
	fixture string
	object  string // value of `object`
	prefix  string
	base    string   // collection path, e.g. /v1/customers ("" = no top-level routes)
	idParam string   // path parameter of the item route
	keys    []string // fields copied into record keys (list filters)
	keyFunc func(map[string]any) []string
	indexed []string // keys whose records are found by value (newTable); customer always is
	events  string   // event type prefix, "" = none
	parent  string   // field holding the parent id (child tables)
	// blank lists fixture fields that are example content, not Stripe's
	// defaults (a product's "Comfortable gray cotton t-shirt", a coupon's
	// percent_off 25.5): a new object starts with them null, as Stripe
	// answers when the request doesn't set them.
	blank []string

	// hooks; nil = generic behaviour
	create      func(e *Emulator, c *reqCtx, obj map[string]any) *apiError // after params are applied, before store
	update      func(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError
	after       func(e *Emulator, c *reqCtx, obj map[string]any) // after store and the created event (side effects)
	del         handlerFunc                                      // DELETE; nil = remove and answer the deleted stub
	listHandled []string                                         // list params handled by the kind's own filter
	skip        []string                                         // params hooks handle themselves
	what        string                                           // noun in "No such X"
}

var (
	kinds         []*kind
	kindByTable   = map[string]*kind{}
	kindBySchema  = map[string]*kind{}
	handlers      = map[string]handlerFunc{}
	validEvents   = map[string]bool{}
	objectToTable = map[string]string{}
)

func addKind(k *kind) *kind {
	if k.fixture == "" {
		k.fixture = k.schema
	}
	if k.object == "" {
		k.object = k.schema
	}
	if k.what == "" {
		k.what = strings.ReplaceAll(k.object, "_", "")
	}
	kinds = append(kinds, k)
	kindByTable[k.table] = k
	kindBySchema[k.schema] = k
	objectToTable[k.object] = k.table
	return k
}

func handle(verb, path string, h handlerFunc) { handlers[verb+" "+path] = h }

// crud registers the generic routes of a kind.
func crud(k *kind, ops string) {
	item := k.base + "/{" + k.idParam + "}"
	for _, op := range ops {
		switch op {
		case 'c':
			handle("POST", k.base, genericCreate(k))
		case 'r':
			handle("GET", item, genericRetrieve(k))
		case 'u':
			handle("POST", item, genericUpdate(k))
		case 'd':
			if k.del != nil {
				handle("DELETE", item, k.del)
			} else {
				handle("DELETE", item, genericDelete(k))
			}
		case 'l':
			handle("GET", k.base, genericList(k, nil))
		}
	}
}

// emit records an event if Stripe has that event type.
func (e *Emulator) emit(c *reqCtx, typ string, obj map[string]any, prev map[string]any) {
	if !validEvents[typ] || e.seeding {
		return
	}
	ev := e.newObject(kindByTable["events"], c.wallTime(), c.live)
	data := map[string]any{"object": obj}
	// Stripe's spec: "only included in events of type *.updated".
	if prev != nil && strings.HasSuffix(typ, ".updated") {
		data["previous_attributes"] = prev
	}
	ev["data"] = data
	ev["type"] = typ
	ev["api_version"] = APIVersion
	ev["pending_webhooks"] = 0
	var idem any
	if c.idemKey != "" {
		idem = c.idemKey
	}
	var reqID any
	if c.requestID != "" {
		reqID = c.requestID
	}
	ev["request"] = map[string]any{"id": reqID, "idempotency_key": idem}
	r := e.store(kindByTable["events"], ev)
	e.pruneEvents(c.wallTime())
	if d := e.options().EventDelay; d > 0 {
		e.optMu.Lock()
		r.visible = e.wallNow() + e.rnd.Int63n(int64(d))
		e.optMu.Unlock()
	}
}

// pruneEvents forgets events well past retention (an hour of slack keeps
// the "expired cursor" answer for recently expired ones), so a long run
// doesn't keep every event in memory.
func (e *Emulator) pruneEvents(now int64) {
	t := e.tables["events"]
	limit := now - int64(retention/time.Second) - 3600
	if len(t.ordered) == 0 || t.ordered[0].created >= limit || !t.sorted {
		return
	}
	cut := sort.Search(len(t.ordered), func(i int) bool { return t.ordered[i].created >= limit })
	for _, r := range t.ordered[:cut] {
		delete(t.byID, r.id)
	}
	t.ordered = append([]*record(nil), t.ordered[cut:]...)
}

// diff lists the previous values of the fields that changed, as Stripe's
// previous_attributes does: hashes (metadata, status_transitions, ...) list
// only their changed keys (null for a key that was added), anything else
// its whole previous value.
func diff(old, cur map[string]any) map[string]any {
	prev := map[string]any{}
	for k, v := range cur {
		ov, ok := old[k]
		if ok && reflect.DeepEqual(normalize(ov), normalize(v)) {
			continue
		}
		om, oIsMap := ov.(map[string]any)
		nm, nIsMap := v.(map[string]any)
		if oIsMap && nIsMap && om["object"] == nil && nm["object"] == nil {
			sub := diff(om, nm)
			for k2, v2 := range om {
				if _, still := nm[k2]; !still {
					sub[k2] = v2
				}
			}
			prev[k] = sub
			continue
		}
		prev[k] = ov
	}
	for k, ov := range old {
		if _, still := cur[k]; !still {
			prev[k] = ov
		}
	}
	return prev
}

// normalize makes json.Number and int64 comparable.
func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	json.Unmarshal(b, &out)
	return out
}

func genericCreate(k *kind) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.newObject(k, c.now, c.live)
		if id, ok := c.params["id"].(string); ok && id != "" && (k.table == "coupons" || k.table == "plans") {
			if e.tables[k.table].byID[id] != nil {
				return nil, invalid("resource_already_exists", "id", "%s already exists.", strings.ToUpper(k.what[:1])+k.what[1:])
			}
			obj["id"] = id
		}
		e.applyParams(k.schema, obj, c.params, k.skip...)
		if k.create != nil {
			if ae := k.create(e, c, obj); ae != nil {
				return nil, ae
			}
		}
		r := e.store(k, obj)
		if !c.createdEmitted {
			e.emit(c, k.events+".created", obj, nil)
		}
		if k.after != nil {
			k.after(e, c, obj)
			r = e.tables[k.table].byID[r.id]
		} else {
			c.result = obj
		}
		return e.render(k, r.raw, c)
	}
}

func genericRetrieve(k *kind) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		id := c.path[k.idParam]
		r := e.tables[k.table].byID[id]
		if r == nil && k.table == "customers" && e.tombstones[id] != nil {
			// A deleted customer is still retrievable, as its stub.
			return e.tombstones[id], nil
		}
		if r == nil || (k.parent != "" && c.path[k.parent] != "" && r.parent != c.path[k.parent]) {
			return nil, notFound("id", k.what, id)
		}
		return e.render(k, r.raw, c)
	}
}

func genericUpdate(k *kind) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		id := c.path[k.idParam]
		obj := e.load(k, id)
		if obj == nil {
			return nil, notFound("id", k.what, id)
		}
		return e.updateObject(k, c, obj)
	}
}

// updateObject applies params to obj, stores it and emits `.updated`.
func (e *Emulator) updateObject(k *kind, c *reqCtx, obj map[string]any) (any, *apiError) {
	old := deepCopy(obj).(map[string]any)
	e.applyParams(k.schema, obj, c.params, k.skip...)
	if ae := checkMetadataCount(obj); ae != nil {
		return nil, ae
	}
	if k.update != nil {
		if ae := k.update(e, c, obj, old); ae != nil {
			return nil, ae
		}
	}
	r := e.save(c, k, obj, old, k.events+".updated")
	c.result = obj
	return e.render(k, r.raw, c)
}

// save stores obj and, when anything changed, emits typ with the previous
// attributes.
func (e *Emulator) save(c *reqCtx, k *kind, obj, old map[string]any, typ string) *record {
	r := e.store(k, obj)
	if old != nil && !e.seeding {
		if prev := diff(old, obj); len(prev) > 0 {
			e.emit(c, typ, obj, prev)
		}
	}
	return r
}

func genericDelete(k *kind) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		id := c.path[k.idParam]
		obj := e.load(k, id)
		if obj == nil {
			return nil, notFound("id", k.what, id)
		}
		return e.deleteObject(c, k, obj), nil
	}
}

func (e *Emulator) deleteObject(c *reqCtx, k *kind, obj map[string]any) map[string]any {
	id, _ := obj["id"].(string)
	e.tables[k.table].remove(id)
	e.emit(c, k.events+".deleted", obj, nil)
	stub := map[string]any{"id": id, "object": k.object, "deleted": true}
	e.tombstones[id], _ = marshal(stub)
	return stub
}

// genericList lists a kind with the generic filters: every query param that
// names one of the kind's key fields filters by equality.
func genericList(k *kind, extra func(c *reqCtx, t *table) (func(*record) bool, *apiError)) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		return listKind(e, c, k, extra, listSource{})
	}
}

// listSource changes what a list walks: seq (nil: as is) replaces the
// table's records it would page, and lookup (nil: the table's) finds
// the records its cursors name. A customer's payment methods mix in its
// saved cards' views (listPMs).
type listSource struct {
	seq    func([]*record) []*record
	lookup func(id string) *record
}

// listKind is genericList's list, of the records src says.
func listKind(e *Emulator, c *reqCtx, k *kind, extra func(c *reqCtx, t *table) (func(*record) bool, *apiError), src listSource) (any, *apiError) {
	t := e.tables[k.table]
	lookup := src.lookup
	if lookup == nil {
		lookup = func(id string) *record { return t.byID[id] }
	}
	q, ae := e.parseListBy(c, lookup, k.what)
	if ae != nil {
		return nil, ae
	}
	var preds []func(*record) bool
	for i, f := range t.keyFields {
		v, ok := c.params[f]
		if !ok {
			continue
		}
		want := keyString(v)
		if want == "" {
			if s, isStr := v.(string); !isStr || s != "" {
				continue
			}
		}
		i := i
		preds = append(preds, func(r *record) bool { return r.keys[i] == want })
	}
	if p := fieldFilter(c, t, k); p != nil {
		preds = append(preds, p)
	}
	if extra != nil {
		p, ae := extra(c, t)
		if ae != nil {
			return nil, ae
		}
		if p != nil {
			preds = append(preds, p)
		}
	}
	if len(preds) > 0 {
		q.match = func(r *record) bool {
			for _, p := range preds {
				if !p(r) {
					return false
				}
			}
			return true
		}
	}
	seq := t.ordered
	if cus, ok := c.params["customer"].(string); ok && t.byCustomer != nil {
		seq = t.byCustomer[cus]
	}
	if src.seq != nil {
		seq = src.seq(seq)
	}
	recs, more := page(seq, q, false)
	url := c.route.path
	if c.r != nil {
		url = c.r.URL.Path
	}
	return e.renderList(recs, more, url, k.schema, c)
}

// listParams are the query params every list handles itself.
var listParams = map[string]bool{"limit": true, "starting_after": true, "ending_before": true, "expand": true, "created": true}

// fieldFilter handles the remaining list filters generically by the
// object's own field of the same name: equality for scalars (an expandable
// field compares its id), gt/gte/lt/lte for ranges (invoices' due_date,
// subscriptions' current_period_end), and key by key for hashes
// (prices' recurring[interval], checkout sessions' customer_details[email]).
// A param the object has no field for (attach_to_self, …) doesn't filter.
func fieldFilter(c *reqCtx, t *table, k *kind) func(*record) bool {
	type cond struct {
		name string
		v    any
	}
	var conds []cond
	for name, v := range c.params {
		if listParams[name] || slices.Contains(t.keyFields, name) || slices.Contains(k.listHandled, name) {
			continue
		}
		conds = append(conds, cond{name, v})
	}
	if len(conds) == 0 {
		return nil
	}
	return func(r *record) bool {
		obj, err := decodeObject(r.raw)
		if err != nil {
			return false
		}
		for _, cd := range conds {
			cur, has := obj[cd.name]
			if !has {
				continue
			}
			if !matchField(cur, cd.v) {
				return false
			}
		}
		return true
	}
}

func matchField(cur, want any) bool {
	m, ok := want.(map[string]any)
	if !ok {
		return keyString(cur) == keyString(want)
	}
	isRange := len(m) > 0
	for op := range m {
		if op != "gt" && op != "gte" && op != "lt" && op != "lte" {
			isRange = false
		}
	}
	if isRange {
		n, ok := toInt(cur)
		if !ok {
			return false
		}
		for op, v := range m {
			w, _ := toInt(v)
			switch {
			case op == "gt" && !(n > w), op == "gte" && !(n >= w), op == "lt" && !(n < w), op == "lte" && !(n <= w):
				return false
			}
		}
		return true
	}
	cm, _ := cur.(map[string]any)
	for k, v := range m {
		if cm == nil || !matchField(cm[k], v) {
			return false
		}
	}
	return true
}

// listChildren pages a parent's children in their natural (oldest first)
// order: invoice lines, subscription items.
func (e *Emulator) listChildren(c *reqCtx, k *kind, parentID, url string) (any, *apiError) {
	t := e.tables[k.table]
	q, ae := e.parseList(c, t, k.what)
	if ae != nil {
		return nil, ae
	}
	recs, more := page(t.children[parentID], q, true)
	return e.renderList(recs, more, url, k.schema, c)
}

func idOf(obj map[string]any) string { s, _ := obj["id"].(string); return s }

func missing(param string) *apiError {
	return invalid("parameter_missing", param, "Missing required param: %s.", param)
}

func (e *Emulator) mustExist(table, param, id string) *apiError {
	if e.tables[table].byID[id] == nil {
		k := kindByTable[table]
		return &apiError{status: 400, Type: "invalid_request_error", Code: "resource_missing", Param: param,
			Message: fmt.Sprintf("No such %s: '%s'", k.what, id)}
	}
	return nil
}
