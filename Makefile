# flyteauth — run `make help` for the targets.
CARGO ?= cargo
BIN := target/debug/flyteauth

.PHONY: help build run test test-rust test-e2e lint fmt bench soak console clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

build: ## Build the debug binary
	$(CARGO) build

run: build ## Start the service on config.yaml (SQLite under ./data, secrets generated on first start)
	$(BIN) serve --config config.yaml

test: build test-rust test-e2e ## Everything: Rust unit + integration tests, then the e2e suite

test-rust: ## Rust unit and integration tests (PostgreSQL tests use DATABASE_URL); cargo-nextest when installed, else cargo test
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "DATABASE_URL=... $(CARGO) nextest run --no-fail-fast"; \
		DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} $(CARGO) nextest run --no-fail-fast; \
	else \
		echo "cargo-nextest not installed (cargo install cargo-nextest --locked): using cargo test"; \
		DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} $(CARGO) test --no-fail-fast; \
	fi

test-e2e: build ## Real peers (flytekit, grpc reflection) against the debug binary
	FLYTEAUTH_BIN=$(CURDIR)/$(BIN) bash tests/e2e/run.sh

lint: ## rustfmt check + clippy with warnings as errors + the layer/import-circle check of src/
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 scripts/check_layers.py

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Benchmarks (release build, wrk, Node oidc-provider peer); results in docs/BENCHMARKS.md
	CARGO=$(CARGO) bash bench/run.sh

soak: build ## 10-minute soak: two replicas on a throwaway PostgreSQL database, mixed load, RSS sampled (docs/RELIABILITY.md)
	FLYTEAUTH_BIN=$(CURDIR)/$(BIN) nice -n 10 tests/e2e/.venv/bin/python soak/soak.py --minutes 10 --token-cache-entries 2000

console: ## Rebuild the console bundle (console/dist, embedded by cargo build; needs Node)
	cd console && npm ci --no-audit --no-fund && npm run build

clean: ## Remove build output and local data
	$(CARGO) clean
	rm -rf data
