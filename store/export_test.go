package store

// TypeOK exposes typeOK to the external tests.
var TypeOK = typeOK
