package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/store"
)

// Benchmarks (not part of `go test`; see docs/BENCHMARKS.md):
//
//	go test ./store -run '^$' -bench . -benchtime 50000x

// realistic returns n variants of the fixture object of kind, with fresh
// ids and the fields that vary in real accounts filled in.
func realistic(b *testing.B, kind string, n int) []store.Object {
	fx := fixtures(b)
	var base map[string]any
	if err := json.Unmarshal(fx[kind], &base); err != nil {
		b.Fatal(err)
	}
	out := make([]store.Object, n)
	for i := range out {
		o := clone(base)
		id := fmt.Sprintf("%s_%08d", kind[:3], i)
		o["id"] = id
		o["created"] = 1700000000 + i
		o["metadata"] = map[string]any{"user_id": fmt.Sprint(i), "plan": "pro", "source": "signup-form"}
		switch kind {
		case "customer":
			o["email"] = fmt.Sprintf("user%d@example.com", i)
			o["name"] = fmt.Sprintf("Customer %d", i)
			o["address"] = map[string]any{"city": "Berlin", "country": "DE", "line1": "Hauptstr. 1", "line2": nil, "postal_code": "10115", "state": nil}
			o["phone"] = "+49301234567"
		case "subscription":
			o["customer"] = fmt.Sprintf("cus_%08d", i)
			items := o["items"].(map[string]any)
			item := items["data"].([]any)[0].(map[string]any)
			var data []any
			for j := 0; j < 2; j++ {
				it := clone(item)
				it["id"] = fmt.Sprintf("si_%08d_%d", i, j)
				it["subscription"] = id
				data = append(data, it)
			}
			items["data"] = data
		case "invoice":
			o["customer"] = fmt.Sprintf("cus_%08d", i)
			lines := o["lines"].(map[string]any)
			line := lines["data"].([]any)[0].(map[string]any)
			var data []any
			for j := 0; j < 3; j++ {
				l := clone(line)
				l["id"] = fmt.Sprintf("il_%08d_%d", i, j)
				l["invoice"] = id
				data = append(data, l)
			}
			lines["data"] = data
		}
		raw, _ := json.Marshal(o)
		out[i] = store.Object{Raw: raw, AsOf: time.Unix(1710000000, 0)}
	}
	return out
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

func benchUpsert(b *testing.B, table, kind string, batch int) {
	conn := setup(b)
	objs := realistic(b, kind, b.N)
	ctx := context.Background()
	pid := conn.PgConn().PID()
	runtime.GC() // don't bill the fixtures' garbage to the upserts
	pg0, go0 := backendCPU(pid), selfCPU()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(objs); i += batch {
		end := min(i+batch, len(objs))
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			res, err := store.Upsert(ctx, tx, table, objs[i:end])
			if err == nil && len(res.Applied) != end-i {
				err = fmt.Errorf("applied %d of %d", len(res.Applied), end-i)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
	// CPU per object of the Postgres backend and of this process: unlike
	// rows/s, these hold up when other work shares the machine.
	if pg := backendCPU(pid); pg > 0 {
		b.ReportMetric((pg-pg0).Seconds()*1e6/float64(b.N), "pg-µs/row")
	}
	b.ReportMetric((selfCPU()-go0).Seconds()*1e6/float64(b.N), "go-µs/row")
}

// backendCPU is the user+system CPU time of a Postgres backend (Linux /proc;
// 0 when unreadable). Clock ticks are 100/s on Linux.
func backendCPU(pid uint32) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkUpsertCustomers(b *testing.B)    { benchUpsert(b, "customers", "customer", 1000) }
func BenchmarkUpsertCustomers100(b *testing.B) { benchUpsert(b, "customers", "customer", 100) }
func BenchmarkUpsertSubscriptions(b *testing.B) {
	benchUpsert(b, "subscriptions", "subscription", 1000)
}
func BenchmarkUpsertInvoices(b *testing.B) { benchUpsert(b, "invoices", "invoice", 1000) }

// One object per transaction, as the events loop and write-through do.
func BenchmarkUpsertOneCustomer(b *testing.B) { benchUpsert(b, "customers", "customer", 1) }
func BenchmarkUpsertOneInvoice(b *testing.B)  { benchUpsert(b, "invoices", "invoice", 1) }
