package schema

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Kind says how a top-level JSON field of a Stripe object maps to a column.
// The JSON → row mapping (both in store.Upsert and in the upgrade backfill
// that fills new columns from _raw) is decided by Kind alone.
type Kind uint8

const (
	// KindText is a JSON string (plain or enum) stored as text.
	KindText Kind = iota + 1
	// KindInteger is a JSON integer stored as bigint.
	KindInteger
	// KindNumber is a JSON number stored as numeric.
	KindNumber
	// KindBoolean is a JSON boolean stored as boolean.
	KindBoolean
	// KindTimestamp is a unix time (an integer with format unix-time, or
	// described as seconds since the Unix epoch) stored as timestamptz.
	KindTimestamp
	// KindExpandable is a reference (anyOf string | object): the column holds
	// the id, also when Stripe returned the expanded object.
	KindExpandable
	// KindJSON is anything else (objects, arrays, metadata) stored as jsonb.
	KindJSON
)

var kindNames = [...]string{"", "text", "integer", "number", "boolean", "timestamp", "expandable", "json"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(?)"
}

// PGType is the Postgres type a column of this kind has.
func (k Kind) PGType() string {
	switch k {
	case KindText, KindExpandable:
		return "text"
	case KindInteger:
		return "bigint"
	case KindNumber:
		return "numeric"
	case KindBoolean:
		return "boolean"
	case KindTimestamp:
		return "timestamptz"
	default:
		return "jsonb"
	}
}

// Column is one typed column of a table: one per top-level field of the
// Stripe object. Name and Field are equal today; they are kept apart so a
// future field whose name clashes with pgstripe's own columns can be renamed.
type Column struct {
	Name     string // SQL column name (quote it: Stripe uses reserved words)
	Field    string // top-level JSON field in the object
	PGType   string
	Kind     Kind
	Nullable bool // the spec marks the field nullable (every non-key column is NULLable in SQL)
}

// ParentLink ties a child table to its parent: the rows of a child table are
// the parent's nested list Field, and Column holds the parent's id.
type ParentLink struct {
	Table  string // e.g. "invoices"
	Column string // e.g. "invoice"
	Field  string // the parent's nested list field, e.g. "lines"
}

// NestedList is a list embedded in an object (first page only, has_more and
// url to page the rest) whose elements live in a child table.
// In ListPath, {id} is the parent object's id.
type NestedList struct {
	Field    string // e.g. "lines"
	Table    string // e.g. "invoice_line_items"
	ListPath string // e.g. "/v1/invoices/{id}/lines"
}

// IncludedList is a list that Stripe puts in an object only when asked
// (expand[]=Field, expand[]=data.Field on a list endpoint), then as the
// first page of the list at ListPath ({id}: the object's id), with
// has_more. Its elements have no table of their own: sync asks for it on
// every fetch, pages the rest and stores the list whole (has_more false,
// see WholeList) in the object's column Field and in _raw. Stripe has no
// way to change it after the object's creation (checkout sessions have no
// update under API 2023-10-16), so a state without it (an event's) keeps
// the stored one (store.Upsert).
type IncludedList struct {
	Field    string // e.g. "line_items"
	ListPath string // e.g. "/v1/checkout/sessions/{id}/line_items"
}

// WholeList returns obj with its field set to the list object holding
// items, all of them: has_more false, and the list's url (the one obj
// carries there, else url). This is how an included list (IncludedList)
// is stored, whether Stripe embedded it complete or sync paged the rest.
func WholeList(obj json.RawMessage, field string, items []json.RawMessage, url string) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(obj, &fields); err != nil {
		return nil, err
	}
	list := map[string]json.RawMessage{}
	if v, ok := fields[field]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	if items == nil {
		items = []json.RawMessage{} // [] as Stripe sends an empty list, not null
	}
	var err error
	if list["data"], err = json.Marshal(items); err != nil {
		return nil, err
	}
	list["object"], list["has_more"] = json.RawMessage(`"list"`), json.RawMessage(`false`)
	if _, ok := list["url"]; !ok {
		list["url"], _ = json.Marshal(url)
	}
	if fields[field], err = json.Marshal(list); err != nil {
		return nil, err
	}
	return json.Marshal(fields)
}

// Param is a create or update parameter of a Stripe endpoint, as the spec's
// form schema describes it.
type Param struct {
	Name     string
	Types    []string // JSON schema types accepted (anyOf flattened): "string", "integer", "number", "boolean", "object", "array"
	Required bool
	// Unset is true when the spec accepts the empty string to clear the
	// field (anyOf with enum [""]), which is how SQL NULL maps to Stripe.
	Unset bool
	// Refs are the places below the parameter (dot-separated keys, "[]"
	// for every element of an array) where Stripe takes only an id while
	// the object holds an object there: a subscription schedule's
	// phases.[].default_tax_rates.[] (tax rate objects) or
	// phases.[].items.[].price (a price when expanded). A value read back
	// from its column must name such an object by its id.
	Refs []string
	// List is set where the parameter takes an array of objects but the
	// object holds a list object there ({"object": "list", "data": [...]}:
	// subscription.items, credit_note.lines): the keys the request takes
	// in each element. A value read back from its column is that list;
	// its data elements are response objects, to be cut down to these
	// keys. Refs then apply to the data array.
	List []string
	// Integers are the places below the parameter (as in Refs) where
	// Stripe takes only an integer (a subscription's items.[].quantity);
	// Types says it of the parameter itself. jsonb keeps 1.5 as written,
	// and the form encoding would send it so.
	Integers []string
	// UnsetArrays are the places below the parameter (as in Refs) that
	// take an array or the empty string (anyOf [array, enum [""]]), as
	// Unset says of the parameter itself: the encoding can carry an empty
	// array there only as the empty string, which Stripe reads as an
	// empty list (items.[].tax_rates: none, not the subscription's
	// default_tax_rates).
	UnsetArrays []string
	// UnsetPlaces, set on update parameters only, are the places below
	// the parameter (as in Refs, with "{}" for any key of a hash whose
	// keys are free, metadata's) where Stripe takes the empty string,
	// which is how the form encoding unsets a key an update sets to null
	// or removes from a hash: a string without an enum (address.line2,
	// metadata.{}), or an enum with "" among its values (the unset
	// alternative, anyOf [..., enum [""]], of objects and arrays too:
	// invoice_settings.rendering_options; or one value of several:
	// rendering_options.amount_tax_display). Anywhere else (an integer,
	// a boolean, an object or array without the alternative, an enum
	// without "", an array's element without "" among its values:
	// default_tax_rates.[]) Stripe refuses "" ("… cannot be unset").
	// Match a place with UnsetAt.
	UnsetPlaces []string
	// OmitEmpty (the parameter itself, of a create) and OmitEmptyArrays
	// (places below it, as in Refs, of a create or an update) mark where
	// an array but not the empty string is taken and leaving the array
	// out means the same as an empty one (a customer's preferred_locales,
	// a schedule phase's add_invoice_items: none either way), as decided
	// by hand from Stripe's descriptions in schema/internal/gen. At any
	// other such place an empty array can't be sent as written
	// (payment_method_types defaults to ["card"] when left out).
	OmitEmpty       bool
	OmitEmptyArrays []string
}

// Table describes one table of the stripe schema and the Stripe endpoints
// behind it. Paths use {id} for this object's id and {parent} for the parent
// object's id (child tables only).
type Table struct {
	Name   string // table name in schema stripe, e.g. "customers"
	Object string // Stripe's object value, e.g. "customer"
	// Virtual tables have no Stripe id (upcoming_invoices); they are keyed by
	// another column and are never tombstoned.
	Virtual bool

	ListPath      string   // GET list endpoint ("" when there is none)
	ListRequired  []string // query parameters the list endpoint requires (e.g. "subscription")
	CreatedFilter bool     // the list endpoint accepts created[gt|gte|lt|lte]
	RetrievePath  string   // GET one object

	Columns []Column // key columns first, then alphabetical; _raw, _synced_at, _as_of not included
	Key     []string // primary key columns

	Parent *ParentLink  // set on child tables
	Nested []NestedList // nested lists stored in child tables
	// Included lists are asked for on every fetch and stored whole in
	// their own column (checkout_sessions.line_items).
	Included []IncludedList

	CreatePath string // POST; "" when Stripe has no create
	UpdatePath string // POST; "" when Stripe has no update
	DeletePath string // DELETE; "" when Stripe has no delete
	CancelPath string // POST cancel endpoint, the closest thing to a delete for some objects

	CreateParams map[string]Param
	UpdateParams map[string]Param

	Expandable []string // x-expandableFields of the object
}

// Column returns the column named name.
func (t *Table) Column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Metadata columns every table has besides the typed ones.
const (
	ColRaw      = "_raw"       // jsonb: the object as last seen
	ColSyncedAt = "_synced_at" // timestamptz: our wall clock when the row was written
	ColAsOf     = "_as_of"     // timestamptz: Stripe's clock when the stored state was current (ordering)
	// ColParams is write-only: in an INSERT or UPDATE through the proxy it
	// carries Stripe parameters that have no column (proration_behavior,
	// payment_behavior, …). Stored rows always hold NULL; it exists so that
	// Postgres can parse and describe such statements (extended protocol).
	ColParams = "_params"
)

var (
	byName   = map[string]*Table{}
	byObject = map[string]*Table{}
)

func init() {
	for _, t := range tables {
		byName[t.Name] = t
		if _, dup := byObject[t.Object]; !dup && !t.Virtual {
			byObject[t.Object] = t
		}
	}
}

// Tables returns every table, in the order of CONTRACT §3 (parents before
// their children). The values are shared: do not modify them.
func Tables() []*Table { return tables }

// Lookup returns the table with the given name (e.g. "customers").
func Lookup(name string) (*Table, bool) {
	t, ok := byName[name]
	return t, ok
}

// ByObject returns the table holding objects whose "object" field is object
// (e.g. "customer"). For "invoice" it is invoices, not upcoming_invoices.
func ByObject(object string) (*Table, bool) {
	t, ok := byObject[object]
	return t, ok
}

// Names returns the table names, sorted.
func Names() []string {
	out := make([]string, 0, len(tables))
	for _, t := range tables {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

// Path fills a path template of Table or NestedList ({id}, {parent}) with
// the given ids, path-escaped.
func Path(tmpl, id, parent string) string {
	return strings.NewReplacer("{id}", url.PathEscape(id), "{parent}", url.PathEscape(parent)).Replace(tmpl)
}

// UnsetAt reports whether Stripe takes the empty string at the place
// below p given by keys (the hash keys on the way, "[]" for an array's
// elements): whether p.UnsetPlaces has it. The keys are matched one by
// one, not joined, as a free key may hold a dot (metadata's).
func (p Param) UnsetAt(keys ...string) bool {
	if len(keys) == 0 {
		return false
	}
next:
	for _, place := range p.UnsetPlaces {
		if strings.Count(place, ".") != len(keys)-1 {
			continue
		}
		for i, seg := range strings.Split(place, ".") {
			if seg != keys[i] && (seg != "{}" || keys[i] == "[]") {
				continue next
			}
		}
		return true
	}
	return false
}
