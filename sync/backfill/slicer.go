package backfill

import (
	"math"
	"time"
)

// StripeFounding is the lower bound of every created range: no Stripe object
// is older than the company (2009-04-13).
var StripeFounding = time.Date(2009, 4, 13, 0, 0, 0, 0, time.UTC).Unix()

// PageSize is Stripe's maximum page size.
const PageSize = 100

// Range is a piece of a created-filterable list still to fetch: objects with
// Gte <= created < Lt (unix seconds) and, when After is set, only those
// after the object After in Stripe's list order (newest first, so: older
// than After, or of the same second and listed after it).
type Range struct {
	Gte, Lt int64
	After   string
}

// Seconds is the width of r.
func (r Range) Seconds() int64 { return r.Lt - r.Gte }

// PageSummary is what the slicer needs to know about a fetched page.
type PageSummary struct {
	N       int   // objects on the page
	HasMore bool  // the range holds more after the page
	First   int64 // created of the first (newest) object
	Last    int64 // created of the last (oldest) object
	LastID  string
}

// Next returns the ranges that cover what remains of r after page p, split
// into at most want pieces (want <= 1: no split, plain continuation).
//
// The page is a density sample: N objects over the seconds it covered. The
// rest of the range is assumed as dense, so it needs about
// remaining seconds × density / PageSize more pages; it is split into as many
// pieces as pages expected (capped by want), each piece aiming at whole
// pages so that requests stay full. The piece holding the page's last second
// continues with starting_after, so nothing is fetched twice and nothing is
// skipped. A page whose first and last created are equal shows a second
// with more than a page of objects: that second is paged on its own with
// starting_after (time slicing can't divide a second), and the older part
// of the range is split as usual.
//
// When the remainder is much wider than the sampled window (a first page of
// the range from 2009 to now), the local density says little about the
// distant past; data are usually densest near now, so the pieces then grow
// geometrically toward the past instead of being equal.
func Next(r Range, p PageSummary, want int) []Range {
	if !p.HasMore || p.N == 0 {
		return nil
	}
	cont := Range{Gte: r.Gte, Lt: p.Last + 1, After: p.LastID}
	if cont.Lt > r.Lt {
		cont.Lt = r.Lt // defensive: created outside the filter
	}
	if p.Last < r.Gte {
		cont.Gte = p.Last
	}
	if cont.Seconds() <= 1 {
		return []Range{cont}
	}
	if p.First == p.Last {
		// Dense second: page it alone; split the older part separately.
		sec := Range{Gte: p.Last, Lt: p.Last + 1, After: p.LastID}
		older := Range{Gte: r.Gte, Lt: p.Last}
		if older.Seconds() <= 0 {
			return []Range{sec}
		}
		// No density sample for the older part beyond "more than a page in
		// one second": give it the pieces the caller wants, geometric.
		n := max(1, want-1)
		return append([]Range{sec}, geometric(older, n, 1)...)
	}
	if want <= 1 {
		return []Range{cont}
	}
	// Seconds the page covered: from its first object down to its last
	// (not from the top of the range, which may be far in the future).
	covered := float64(p.First - p.Last + 1)
	density := float64(p.N) / covered
	remaining := float64(cont.Seconds())
	pages := remaining * density / PageSize
	n := int(math.Ceil(pages))
	if n > want {
		n = want
	}
	if n <= 1 {
		return []Range{cont}
	}
	if remaining > 64*covered {
		// The head keeps the After cursor; it spans the sampled width so it
		// holds about one page.
		return geometricAfter(cont, n, int64(math.Max(1, covered)))
	}
	return equal(cont, n)
}

// equal splits r (which may carry After, kept on the newest piece) into n
// pieces of equal width, newest first.
func equal(r Range, n int) []Range {
	w := float64(r.Seconds()) / float64(n)
	out := make([]Range, 0, n)
	hi := r.Lt
	for i := 1; i <= n; i++ {
		lo := r.Lt - int64(math.Round(w*float64(i)))
		if i == n || lo < r.Gte {
			lo = r.Gte
		}
		if lo >= hi {
			continue
		}
		piece := Range{Gte: lo, Lt: hi}
		if hi == r.Lt {
			piece.After = r.After
		}
		out = append(out, piece)
		hi = lo
	}
	return out
}

// geometricAfter splits r into at most n pieces, the newest first0 seconds
// wide (keeping r.After), each older one twice as wide as the previous, the
// last reaching r.Gte.
func geometricAfter(r Range, n int, first0 int64) []Range {
	out := make([]Range, 0, n)
	hi := r.Lt
	w := first0
	for i := 0; i < n && hi > r.Gte; i++ {
		lo := hi - w
		if i == n-1 || lo < r.Gte {
			lo = r.Gte
		}
		piece := Range{Gte: lo, Lt: hi}
		if hi == r.Lt {
			piece.After = r.After
		}
		out = append(out, piece)
		hi = lo
		w *= 2
	}
	return out
}

// geometric splits r (no cursor) into n pieces growing toward the past so
// that together they cover r exactly; the newest is about
// width/(2^n - 1) seconds, at least minW.
func geometric(r Range, n int, minW int64) []Range {
	if n <= 1 {
		return []Range{r}
	}
	total := float64(r.Seconds())
	first := int64(total / (math.Pow(2, float64(n)) - 1))
	if first < minW {
		first = minW
	}
	return geometricAfter(r, n, first)
}

// EndOfTime is the upper bound of every initial range. Not "now": objects
// of customers on test clocks are created at the clock's time, which may be
// ahead of Stripe's; and an object created during the backfill may as well
// be fetched (the store keeps whichever state is newer).
var EndOfTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// Initial is the range a created-filterable list starts from.
func Initial() Range {
	return Range{Gte: StripeFounding, Lt: EndOfTime}
}
