package backfill

// InsertParents exposes insertParents to the external tests.
var InsertParents = insertParents
