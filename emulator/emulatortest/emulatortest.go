// Package emulatortest starts a Stripe emulator inside a test, and makes
// the test clocks and subscriptions of billing tests in it.
package emulatortest

import (
	"fmt"
	"maps"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
)

// Start runs an emulator on a free local port until the test ends. A zero
// RateLimit in opts means unlimited here (tests shouldn't trip Stripe's
// default limit by accident); pass a positive RateLimit to test limiting.
func Start(t testing.TB, opts emulator.Options) (e *emulator.Emulator, baseURL string) {
	t.Helper()
	if opts.RateLimit == 0 {
		opts.RateLimit = -1
	}
	e, err := emulator.New(opts)
	if err != nil {
		t.Fatalf("emulatortest: %v", err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	t.Cleanup(e.Close) // runs first: releases held requests so Close doesn't wait
	return e, srv.URL
}

// The time a test clock of NewClock starts at, and a day, in Unix seconds.
const (
	ClockStart = 1577836800 // 2020-01-01T00:00:00Z
	Day        = 86400
)

// MonthStart is the start of the month n months after ClockStart: the
// period boundaries of a monthly subscription created at ClockStart.
func MonthStart(n int) int64 {
	return time.Unix(ClockStart, 0).UTC().AddDate(0, n, 0).Unix()
}

// Clock is a test clock, frozen at ClockStart unless made by NewClockAt,
// and the prices, customers
// and subscriptions a billing test makes for it. Its requests go through
// post, which POSTs form q to the emulator and returns the id of the
// object answered, failing the test otherwise: the emulator's own tests
// and the tests of what syncs it each send requests their way.
type Clock struct {
	ID   string
	post func(path string, q url.Values) string
}

// NewClock makes a test clock frozen at ClockStart.
func NewClock(post func(path string, q url.Values) string) *Clock {
	return NewClockAt(post, ClockStart)
}

// NewClockAt makes a test clock frozen at frozen instead.
func NewClockAt(post func(path string, q url.Values) string, frozen int64) *Clock {
	return &Clock{ID: post("/v1/test_helpers/test_clocks", url.Values{"frozen_time": {fmt.Sprint(frozen)}}), post: post}
}

// Price makes a product and its recurring price of amount cents (usd)
// each interval (day, week, month or year).
func (c *Clock) Price(amount int, interval string) string {
	prod := c.post("/v1/products", url.Values{"name": {"p"}})
	return c.post("/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {fmt.Sprint(amount)}, "recurring[interval]": {interval}})
}

// Customer makes a customer on the clock.
func (c *Clock) Customer() string {
	return c.post("/v1/customers", url.Values{"test_clock": {c.ID}})
}

// Subscribe subscribes cus to price, charged to a card that pays
// (pm_card_visa, attached by Card), with extra's params besides (or
// instead).
func (c *Clock) Subscribe(cus, price string, extra url.Values) string {
	q := url.Values{"customer": {cus}, "items[0][price]": {price}}
	if _, ok := extra["default_payment_method"]; !ok {
		q.Set("default_payment_method", Card(c.post, cus, "pm_card_visa"))
	}
	maps.Copy(q, extra)
	return c.post("/v1/subscriptions", q)
}

// Card is the package's Card on c's emulator.
func (c *Clock) Card(cus, testPM string) string {
	return Card(c.post, cus, testPM)
}

// Card attaches one of Stripe's test payment methods (pm_card_visa,
// pm_card_chargeCustomerFail, ...) to customer cus and returns the id of
// the payment method attached, as a Stripe user does before making it a
// default: Stripe attaches a new copy of the test card, and refuses the
// test id itself where an attached payment method is needed.
func Card(post func(path string, q url.Values) string, cus, testPM string) string {
	return post("/v1/payment_methods/"+testPM+"/attach", url.Values{"customer": {cus}})
}

// Advance moves the clock to ts.
func (c *Clock) Advance(ts int64) {
	c.post("/v1/test_helpers/test_clocks/"+c.ID+"/advance", url.Values{"frozen_time": {fmt.Sprint(ts)}})
}
