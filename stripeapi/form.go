package stripeapi

import (
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/stripe/stripe-go/v76/form"
)

// Form lays params out as stripe-go's form encoder does for the same
// values: the keys of each hash in sorted order, each array's elements
// in index order. A plain sort of the keys would put items[10] before
// items[2]; Stripe reads an array from integer-indexed keys, and in what
// order it takes keys that come out of index order is not documented.
func Form(params url.Values) *form.Values {
	fv := &form.Values{}
	for _, k := range slices.SortedFunc(maps.Keys(params), compareKeys) {
		for _, v := range params[k] {
			fv.Add(k, v)
		}
	}
	return fv
}

// compareKeys orders bracketed keys part by part (a[b][0] is a, b, 0),
// array indices by number, so that the keys under one prefix stay
// together and come in the order stripe-go's encoder writes them.
func compareKeys(a, b string) int {
	pa, pb := keyParts(a), keyParts(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if c := comparePart(pa[i], pb[i]); c != 0 {
			return c
		}
	}
	return len(pa) - len(pb)
}

func keyParts(k string) []string {
	i := strings.IndexByte(k, '[')
	if i < 0 || !strings.HasSuffix(k, "]") {
		return []string{k}
	}
	return append([]string{k[:i]}, strings.Split(k[i+1:len(k)-1], "][")...)
}

func comparePart(a, b string) int {
	na, errA := strconv.ParseUint(a, 10, 64)
	nb, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil && na != nb {
		if na < nb {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
