# The two commands a new user needs are `make demo` and `make test`.
SHELL := bash
.DEFAULT_GOAL := help

.PHONY: help demo test up down bench lint fmt

help:
	@echo "make demo   run the whole pipeline locally and show what was delivered"
	@echo "make test   run every test (starts and stops its own local AWS stack)"
	@echo "make up     start the local stack in the background (source .local/stack.env)"
	@echo "make down   stop what make up started"
	@echo "make bench  run the benchmarks (figures go to docs/benchmarks.md)"

demo:
	@infra/scripts/demo.sh

test:
	@infra/scripts/test.sh

up:
	@infra/scripts/up.sh

down:
	@infra/scripts/local-stack.sh down

bench:
	cargo bench -p platformsync-domain --bench upload

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
