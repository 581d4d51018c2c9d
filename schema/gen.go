package schema

//go:generate go run ./internal/gen -o tables_gen.go
//go:generate go test -run TestGolden -update .
