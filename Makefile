# The two commands a new user needs are `make demo` and `make test`.
SHELL := bash
.DEFAULT_GOAL := help

.PHONY: help demo test test-localstack up down bench bench-ingest bench-fanout bench-push lint fmt sam-build

help:
	@echo "make demo   run the whole pipeline locally and show what was delivered"
	@echo "make test   run every test (starts and stops its own local AWS stack)"
	@echo "make test-localstack  the integration and end-to-end tests on LocalStack (host mode; DynamoDB on moto)"
	@echo "make up     start the local stack in the background (source .local/stack.env)"
	@echo "make down   stop what make up started"
	@echo "make bench  run the parser benchmark (figures go to docs/benchmarks.md)"
	@echo "make bench-ingest  end-to-end ingest load run on a local stack of its own"
	@echo "make bench-cost  AWS requests and cost per million transactions, measured on the whole pipeline"
	@echo "make chaos  soak run: the pipeline under seeded failure, figures to docs/reliability.md (CHAOS_ARGS=...)"
	@echo "make sam-build  build every function for Lambda (arm64) with sam build + cargo-lambda"

demo:
	@infra/scripts/demo.sh

test:
	@infra/scripts/test.sh

test-localstack:
	@infra/scripts/test-localstack.sh

up:
	@infra/scripts/up.sh

down:
	@infra/scripts/down.sh

bench:
	cargo bench -p platformsync-domain --bench upload

bench-ingest:
	@infra/scripts/with-stack.sh cargo bench -p platformsync-tests --bench ingest_load

bench-fanout:
	@infra/scripts/with-stack.sh cargo bench -p platformsync-tests --bench fanout_load

bench-push:
	@infra/scripts/with-stack.sh cargo bench -p platformsync-tests --bench push_load

# Issue 16: the whole pipeline once, every AWS request counted, priced per
# million transactions (docs/capacity.md). COST_TRANSACTIONS=N to change N.
.PHONY: bench-cost
bench-cost:
	@infra/scripts/with-stack.sh cargo bench -p platformsync-tests --bench cost

# Issue 18: 100 batches to a 30 %-failing endpoint beside a healthy one (docs/benchmarks.md).
.PHONY: bench-flaky
bench-flaky:
	@infra/scripts/with-stack.sh cargo bench -p platformsync-tests --bench push_flaky

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	infra/scripts/template-tools.sh lint

sam-build:
	@infra/scripts/template-tools.sh sam-build

fmt:
	cargo fmt --all

# Issue 19: the soak run (docs/reliability.md).
.PHONY: chaos
chaos:
	@infra/scripts/chaos.sh
