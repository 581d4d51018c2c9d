# pgstripe — run `make help` for the targets.
.DEFAULT_GOAL := help
GO ?= go

help: ## Show this help.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## Install what the tests need (PostgreSQL, node packages) if missing.
	@scripts/install-deps

test: deps lint ## Install what is missing, then run the whole test suite.
	$(GO) test -race -timeout 20m -count=1 ./...
	@# The race detector can't see through the proxy's raw socket I/O, which it
	@# therefore leaves off (proxy/rawio.go): test that path without it.
	$(GO) test -timeout 5m -count=1 ./proxy/

lint: ## gofmt and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

generate: ## Regenerate code from Stripe's OpenAPI spec.
	$(GO) generate ./...

demo: ## Run the demo (throwaway Postgres + emulator + serve).
	$(GO) run ./cmd/pgstripe demo

bench: ## Run the benchmarks of docs/BENCHMARKS.md (minutes; not part of test).
	@scripts/bench

.PHONY: help deps test lint generate demo bench
