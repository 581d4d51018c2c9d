package emulator

import (
	"net/http"
	"slices"
)

// Test clocks (test mode only). A customer created with test_clock belongs
// to that clock for good; its subscriptions, invoices, invoice items and
// subscription schedules carry the clock too. Stripe's lists leave such
// customers and subscriptions out unless asked for the clock (spec:
// GET /v1/customers "The response will not include customers with test
// clocks if this parameter is not set"; GET /v1/subscriptions the same
// unless test_clock or customer is given). Other lists (invoices, invoice
// items, schedules, …) have no such parameter and include them.
//
// Objects created for a clock's customer take the clock's frozen_time as
// "now" (created, period starts), while their events and the response
// Date stay on the emulator's clock. Advancing a clock moves frozen_time
// and takes the clock's subscription schedules through the phase
// boundaries passed (billing.go, advanceSchedules); nothing is billed over
// the advanced time. An update of a schedule on a clock reads its phases
// on the clock's time too.

var kClock = addKind(&kind{table: "test_clocks", schema: "test_helpers.test_clock", prefix: "clock_", base: "/v1/test_helpers/test_clocks",
	idParam: "test_clock", events: "test_helpers.test_clock", what: "test clock"})

// clockedTables carry their customer's clock in their test_clock field.
var clockedTables = []string{"subscriptions", "invoices", "invoiceitems", "subscription_schedules"}

// maxAdvance: "If there are no subscriptions in this test clock, it cannot
// be more than two years in the future" (spec, advance's frozen_time).
const maxAdvance = 2 * 365 * 86400

func init() {
	for _, t := range []string{"test_helpers.test_clock.created", "test_helpers.test_clock.advancing",
		"test_helpers.test_clock.ready", "test_helpers.test_clock.deleted"} {
		validEvents[t] = true
	}
	kClock.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		obj["status"] = "ready"
		// Stripe deletes a clock seven days after its creation.
		obj["deletes_after"] = c.now + 7*86400
		return nil
	}
	kClock.del = deleteClock
	crud(kClock, "crdl")
	handle("POST", "/v1/test_helpers/test_clocks/{test_clock}/advance", advanceClock)
	for _, key := range []string{"POST /v1/test_helpers/test_clocks", "GET /v1/test_helpers/test_clocks",
		"GET /v1/test_helpers/test_clocks/{test_clock}", "DELETE /v1/test_helpers/test_clocks/{test_clock}",
		"POST /v1/test_helpers/test_clocks/{test_clock}/advance"} {
		handlers[key] = testModeOnly(handlers[key])
	}
}

// testModeOnly refuses a live-mode key: test clocks exist in test mode only.
func testModeOnly(h handlerFunc) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		if c.live {
			return nil, invalid("", "", "Test clocks are only available in test mode.")
		}
		return h(e, c)
	}
}

// clockNow moves the "now" of a request that creates an object for a
// customer on a test clock (or a customer on one) to the clock's frozen
// time. The wall time is kept for events and the Date header.
func (e *Emulator) clockNow(c *reqCtx) {
	c.wall = c.now
	if c.r == nil || c.r.Method != http.MethodPost || c.route == nil {
		return
	}
	var clock string
	switch c.route.path {
	case "/v1/customers":
		clock, _ = c.params["test_clock"].(string)
	case "/v1/subscriptions", "/v1/invoices", "/v1/invoiceitems", "/v1/subscription_schedules":
		cus, _ := c.params["customer"].(string)
		clock = e.customerClock(cus)
	}
	if clock == "" {
		return
	}
	if ck := e.load(kClock, clock); ck != nil {
		c.now = getInt(ck, "frozen_time")
	}
}

// customerClock is the test clock a customer belongs to, or "".
func (e *Emulator) customerClock(cus string) string {
	t := e.tables["customers"]
	r := t.byID[cus]
	if r == nil {
		return ""
	}
	v, _ := t.keyOf(r, "test_clock")
	return v
}

// stampClock gives an object of a clocked table its customer's clock. A
// clock is never removed from a customer, so a set value stays.
func (e *Emulator) stampClock(k *kind, obj map[string]any) {
	if !slices.Contains(clockedTables, k.table) || getStr(obj, "test_clock") != "" {
		return
	}
	if ck := e.customerClock(getStr(obj, "customer")); ck != "" {
		obj["test_clock"] = ck
	}
}

// checkCustomerClock validates a new customer's test_clock.
func (e *Emulator) checkCustomerClock(c *reqCtx) *apiError {
	ck, ok := c.params["test_clock"].(string)
	if !ok || ck == "" {
		return nil
	}
	if c.live {
		return invalid("", "test_clock", "Test clocks are only available in test mode.")
	}
	return e.mustExist("test_clocks", "test_clock", ck)
}

// withoutClocks leaves out records on a test clock unless the request
// names a clock or one of params.
func withoutClocks(c *reqCtx, t *table, unless ...string) func(*record) bool {
	for _, p := range append([]string{"test_clock"}, unless...) {
		if _, ok := c.params[p]; ok {
			return nil
		}
	}
	return func(r *record) bool {
		v, _ := t.keyOf(r, "test_clock")
		return v == ""
	}
}

// withListClock refuses a list's test_clock= naming no clock.
func withListClock(h handlerFunc) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		if ck, ok := c.params["test_clock"].(string); ok {
			if ae := e.mustExist("test_clocks", "test_clock", ck); ae != nil {
				return nil, ae
			}
		}
		return h(e, c)
	}
}

func advanceClock(e *Emulator, c *reqCtx) (any, *apiError) {
	id := c.path["test_clock"]
	obj := e.load(kClock, id)
	if obj == nil {
		return nil, notFound("test_clock", "test clock", id)
	}
	cur := getInt(obj, "frozen_time")
	to, _ := toInt(c.params["frozen_time"])
	if to <= cur {
		return nil, invalid("", "frozen_time", "The frozen time must be after the test clock's current frozen time (%d).", cur)
	}
	if to-cur > maxAdvance && !e.clockHasSubscriptions(id) {
		return nil, invalid("", "frozen_time", "A test clock without subscriptions cannot be advanced more than two years at a time.")
	}
	obj["status"] = "advancing"
	e.store(kClock, obj)
	e.emit(c, "test_helpers.test_clock.advancing", obj, nil)
	// Subscription schedules move through their phases; nothing is billed
	// over the advanced time (see the package doc), so the clock is ready
	// at once.
	e.advanceSchedules(c, id, to)
	obj["frozen_time"], obj["status"] = to, "ready"
	r := e.store(kClock, obj)
	e.emit(c, "test_helpers.test_clock.ready", obj, nil)
	c.result = obj
	return e.render(kClock, r.raw, c)
}

func (e *Emulator) clockHasSubscriptions(clock string) bool {
	t := e.tables["subscriptions"]
	for _, r := range t.ordered {
		if v, _ := t.keyOf(r, "test_clock"); v == clock {
			return true
		}
	}
	return false
}

// deleteClock deletes the clock and its customers ("Finishing a simulation
// deletes all objects associated with it, including the customer and
// subscription", Stripe's docs). Here a customer goes as with
// DELETE /v1/customers/{id}: its subscriptions are canceled, with their
// events.
func deleteClock(e *Emulator, c *reqCtx) (any, *apiError) {
	id := c.path["test_clock"]
	obj := e.load(kClock, id)
	if obj == nil {
		return nil, notFound("test_clock", "test clock", id)
	}
	t := e.tables["customers"]
	var custs []string
	for _, r := range t.ordered {
		if v, _ := t.keyOf(r, "test_clock"); v == id {
			custs = append(custs, r.id)
		}
	}
	for _, cus := range custs {
		if co := e.load(kCustomer, cus); co != nil {
			e.removeCustomer(c, co)
		}
	}
	return e.deleteObject(c, kClock, obj), nil
}
