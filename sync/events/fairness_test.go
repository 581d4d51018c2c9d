package events_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/events"
)

// queueDue queues the re-fetch of ids of table (reason owner), due for
// a while, the first of them first.
func (v *env) queueDue(t *testing.T, table string, ids []string) {
	t.Helper()
	if _, err := v.pool.Exec(context.Background(), `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
SELECT $1, id, now() - interval '1 hour' + i * interval '1 second', 'owner' FROM unnest($2::text[]) WITH ORDINALITY AS x(id, i)`, table, ids); err != nil {
		t.Fatal(err)
	}
}

func (v *env) queuedOf(t *testing.T, table string, ids []string) int {
	t.Helper()
	var n int
	if err := v.pool.QueryRow(context.Background(), `SELECT count(*) FROM stripe_sync.events_refetch WHERE object = $1 AND id = ANY($2)`, table, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// twoGates puts a retrievalGate for customers in front of one for
// products, each counting (and failing, when told) its table's
// retrievals.
func twoGates(t *testing.T, customers, products *retrievalGate) *env {
	products.table = "products"
	return setupWrapped(t, emulator.Options{}, func(h http.Handler) http.Handler { return customers.wrap(products.wrap(h)) })
}

// A restarted process (no table known readable) with customers and
// products queued, while Stripe does not answer the customers' probe: the
// products' probe is answered at once, and their other entries must be
// fetched and stored then, not when the customers' probe is answered.
// Before, a drain's rounds waited for their slowest fetch: the products
// waited as long as the customers' probe (with a production client
// retrying a 5xx, up to a minute). The customers' answer is held until
// the products are stored, so no timing bound is needed: the old
// scheduler never stores them meanwhile.
func TestSlowProbeDoesNotHoldOtherTables(t *testing.T) {
	const poll = 500 * time.Millisecond
	release := make(chan struct{})
	var once sync.Once
	answer := func() { once.Do(func() { close(release) }) }
	defer answer() // before the cleanups: the server's close waits for its handlers
	cg, pg := &retrievalGate{answering: func(string, int) { <-release }}, &retrievalGate{}
	v := twoGates(t, cg, pg)
	cus := v.newCustomers(t, 2)
	prods := make([]string, 10)
	for i := range prods {
		prods[i] = v.post(t, "/v1/products", url.Values{"name": {fmt.Sprintf("review %d", i)}})
	}
	v.queueDue(t, "customers", cus)
	v.queueDue(t, "products", prods)
	stop := v.loop(t, events.Config{PollInterval: poll})
	waitUntil(t, 30*time.Second, "every queued product to be stored while the customers' probe is unanswered", func() bool {
		return v.queuedOf(t, "products", prods) == 0
	})
	if n := cg.count(); n != 0 {
		t.Fatalf("%d customers answered before the products were stored, want none (the gate holds them)", n)
	}
	answer()
	waitUntil(t, 30*time.Second, "every queued customer to be stored", func() bool { return v.queuedOf(t, "customers", cus) == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := pg.count(); n != len(prods) {
		t.Errorf("%d retrievals of %d queued products, want one each", n, len(prods))
	}
	if n := cg.count(); n != len(cus) {
		t.Errorf("%d retrievals of %d queued customers, want one each", n, len(cus))
	}
}

// 150 customers whose retrieval Stripe keeps failing (500, retried by the
// client) on a table it answers otherwise: a product queued meanwhile
// must be stored within about a poll interval, and a customer queued
// after them too, soon. Before, the 100 oldest due entries, all failing
// customers, made every drain's batch: nothing else was ever re-fetched.
func TestFailingEntriesDoNotStarveTheQueue(t *testing.T) {
	const poll = 500 * time.Millisecond
	cg, pg := &retrievalGate{}, &retrievalGate{}
	v := twoGates(t, cg, pg)
	cus := v.newCustomers(t, 2)
	prod := v.post(t, "/v1/products", url.Values{"name": {"review"}})
	stop := v.loop(t, events.Config{PollInterval: poll})
	v.queueDue(t, "customers", cus[:1])
	waitUntil(t, 15*time.Second, "a customer re-fetched: the table is known readable", func() bool { return v.queuedOf(t, "customers", cus[:1]) == 0 })

	failing := make([]string, 150)
	for i := range failing {
		failing[i] = fmt.Sprintf("cus_reviewfail%03d", i)
	}
	cg.fail(outage500, failing...)
	v.queueDue(t, "customers", failing)
	_, mark := cg.since(0)
	waitUntil(t, 30*time.Second, "the failing customers' re-fetches to be failed 10 times", func() bool {
		gets, _ := cg.since(mark)
		return len(gets) >= 10
	})

	queued := time.Now()
	if _, err := v.pool.Exec(context.Background(), `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason) VALUES ('products', $1, now() - interval '1 second', 'owner')`, prod); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the product queued after the failing customers to be stored", func() bool {
		return v.queuedOf(t, "products", []string{prod}) == 0
	})
	took := time.Since(queued)
	t.Logf("product settled %s after it was queued (poll interval %s)", took.Round(time.Millisecond), poll)
	if took > 4*poll {
		t.Errorf("the product settled %s after it was queued, want about a poll interval (%s)", took.Round(time.Millisecond), poll)
	}

	queued = time.Now()
	v.queueDue(t, "customers", cus[1:])
	if _, err := v.pool.Exec(context.Background(), `UPDATE stripe_sync.events_refetch SET not_before = now() - interval '1 second' WHERE object = 'customers' AND id = $1`, cus[1]); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the customer queued after the failing ones to be stored", func() bool {
		return v.queuedOf(t, "customers", cus[1:]) == 0
	})
	t.Logf("customer settled %s after it was queued", time.Since(queued).Round(time.Millisecond))
	_, all := cg.since(0)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d retrievals of customers in all, %d of products", all, pg.count())
	if n := pg.count(); n != 1 {
		t.Errorf("%d retrievals of the queued product, want 1", n)
	}
	if n := v.queuedOf(t, "customers", failing); n != len(failing) {
		t.Errorf("%d of the %d customers Stripe fails still queued, want all (kept for a retry)", n, len(failing))
	}
}
