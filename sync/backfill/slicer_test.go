package backfill

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
)

type simObj struct {
	created int64
	id      string
}

// simList orders like Stripe: newest first, ties in a fixed order.
func simList(objs []simObj) []simObj {
	sort.Slice(objs, func(i, j int) bool {
		if objs[i].created != objs[j].created {
			return objs[i].created > objs[j].created
		}
		return objs[i].id > objs[j].id
	})
	return objs
}

// simFetch answers one list request the way Stripe does: the created filter
// and starting_after cursor, at most 100 objects.
func simFetch(t *testing.T, list []simObj, r Range) (PageSummary, []simObj) {
	t.Helper()
	start := 0
	if r.After != "" {
		start = -1
		for i, o := range list {
			if o.id == r.After {
				start = i + 1
				break
			}
		}
		if start < 0 {
			t.Fatalf("cursor %s not found", r.After)
		}
	}
	var page []simObj
	hasMore := false
	for _, o := range list[start:] {
		if o.created < r.Gte || o.created >= r.Lt {
			continue
		}
		if len(page) == PageSize {
			hasMore = true
			break
		}
		page = append(page, o)
	}
	if len(page) == 0 {
		return PageSummary{}, nil
	}
	return PageSummary{N: len(page), HasMore: hasMore, First: page[0].created, Last: page[len(page)-1].created, LastID: page[len(page)-1].id}, page
}

// simulate runs the slicer to completion with a FIFO queue and a fixed
// number of pieces wanted per split; it returns requests made and fails on
// any object fetched twice or never.
func simulate(t *testing.T, objs []simObj, now int64, want int) int {
	t.Helper()
	list := simList(objs)
	seen := map[string]int{}
	queue := []Range{Initial()}
	requests := 0
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		if r.Gte >= r.Lt {
			t.Fatalf("empty range %+v", r)
		}
		requests++
		if requests > 100000 {
			t.Fatal("no progress")
		}
		p, page := simFetch(t, list, r)
		for _, o := range page {
			seen[o.id]++
		}
		queue = append(queue, Next(r, p, want)...)
	}
	for _, o := range objs {
		if seen[o.id] != 1 {
			t.Fatalf("object %s (created %d) fetched %d times", o.id, o.created, seen[o.id])
		}
	}
	if len(seen) != len(objs) {
		t.Fatalf("fetched %d distinct, want %d", len(seen), len(objs))
	}
	return requests
}

func gen(n int, created func(i int) int64) []simObj {
	out := make([]simObj, n)
	for i := range out {
		out[i] = simObj{created: created(i), id: fmt.Sprintf("obj_%06d", i)}
	}
	return out
}

func TestSlicerCoversExactlyOnce(t *testing.T) {
	const now = int64(1_790_000_000)
	rng := rand.New(rand.NewPCG(1, 2))
	year := int64(365 * 86400)
	cases := []struct {
		name       string
		objs       []simObj
		sameSecond bool
	}{
		{"empty", nil, false},
		{"one", gen(1, func(int) int64 { return now - 5 }), false},
		{"exactly one page", gen(100, func(i int) int64 { return now - int64(i) }), false},
		{"uniform last year", gen(5000, func(int) int64 { return now - rng.Int64N(year) }), false},
		{"uniform since founding", gen(5000, func(int) int64 { return StripeFounding + rng.Int64N(now-StripeFounding) }), false},
		{"spike", gen(5000, func(i int) int64 {
			if i%10 == 0 {
				return now - rng.Int64N(year)
			}
			return now - 100*86400 - rng.Int64N(3600)
		}), false},
		{"same second", gen(2500, func(int) int64 { return now - 1000 }), true},
		{"two dense seconds and noise", gen(3000, func(i int) int64 {
			switch i % 3 {
			case 0:
				return now - 50
			case 1:
				return now - 7*86400
			}
			return now - rng.Int64N(year)
		}), false},
		{"at founding", gen(300, func(int) int64 { return StripeFounding }), true},
		{"ahead of now (test clocks)", gen(500, func(i int) int64 { return now + int64(i%50)*86400 }), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, want := range []int{1, 4, 16} {
				got := simulate(t, append([]simObj(nil), c.objs...), now, want)
				ideal := (len(c.objs) + PageSize - 1) / PageSize
				t.Logf("want=%d: %d objects, %d requests (ideal %d)", want, len(c.objs), got, ideal)
				// Slicing costs empty and partial pages; bound it. With no
				// split it is plain starting_after paging.
				limit := max(1, 2*ideal+want)
				if want == 1 || c.sameSecond {
					limit = max(1, ideal+want)
				}
				if got > limit {
					t.Errorf("want=%d: %d requests, more than %d", want, got, limit)
				}
			}
		})
	}
}

func TestNextSameSecondPagesThatSecond(t *testing.T) {
	r := Range{Gte: 1000, Lt: 2000}
	got := Next(r, PageSummary{N: 100, HasMore: true, First: 1500, Last: 1500, LastID: "x"}, 4)
	if len(got) < 2 {
		t.Fatalf("got %+v", got)
	}
	if got[0] != (Range{Gte: 1500, Lt: 1501, After: "x"}) {
		t.Errorf("dense second = %+v", got[0])
	}
	// The rest covers [1000, 1500) exactly, without cursor.
	covered := int64(0)
	for _, p := range got[1:] {
		if p.After != "" || p.Gte < 1000 || p.Lt > 1500 {
			t.Errorf("bad piece %+v", p)
		}
		covered += p.Seconds()
	}
	if covered != 500 {
		t.Errorf("older pieces cover %d seconds, want 500", covered)
	}
}

func TestNextDenseSplitsByEstimate(t *testing.T) {
	// The page covered 10 s with 100 objects: 10/s. 91 s remain (0…90) → 9.1 pages.
	r := Range{Gte: 0, Lt: 100}
	p := PageSummary{N: 100, HasMore: true, First: 99, Last: 90, LastID: "x"}
	got := Next(r, p, 32)
	if len(got) != 10 {
		t.Fatalf("%d pieces, want 10 (91 s × 10/s = 9.1 pages): %+v", len(got), got)
	}
	if got[0].After != "x" || got[0].Lt != 91 {
		t.Errorf("head %+v must continue after x up to the page's last second", got[0])
	}
	if got[len(got)-1].Gte != 0 {
		t.Errorf("tail %+v must reach the range start", got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i].Lt != got[i-1].Gte {
			t.Errorf("gap or overlap between %+v and %+v", got[i-1], got[i])
		}
	}
	// Capped by want.
	if got := Next(r, p, 3); len(got) != 3 {
		t.Errorf("want 3: %d pieces", len(got))
	}
	// Sparse: one page expected → plain continuation.
	sparse := PageSummary{N: 100, HasMore: true, First: 99, Last: 50, LastID: "y"}
	if got := Next(r, sparse, 32); len(got) != 2 && len(got) != 1 {
		t.Errorf("sparse: %+v", got)
	}
	if got := Next(r, PageSummary{N: 40, HasMore: false, First: 99, Last: 10}, 32); got != nil {
		t.Errorf("done range continued: %+v", got)
	}
}
