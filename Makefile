# Everyday tasks. `make run` and `make test` bootstrap everything on a fresh machine.
.PHONY: run test unit lint typecheck fmt demo clean bench bench-scale chaos

VENV := .venv
PY := $(VENV)/bin/python

run:            ## start the whole stack (API, scheduler, dialer worker, embedded MongoDB) until Ctrl-C
	@bash scripts/run.sh

test:           ## bootstrap, then the whole test suite against real RabbitMQ and MongoDB-compatible servers
	@bash scripts/test.sh

demo:           ## a few-thousand-number campaign against the running stack, live (start it with `make run CLOCK_RATE=60`)
	$(VENV)/bin/dialer demo

unit:           ## the unit tests only (no servers)
	@bash scripts/test.sh tests/unit

lint:           ## ruff check and format check
	$(VENV)/bin/ruff check shared services tests bench
	$(VENV)/bin/ruff format --check shared services tests bench

fmt:
	$(VENV)/bin/ruff format shared services tests bench
	$(VENV)/bin/ruff check --fix shared services tests bench

chaos:          ## fault-injection run: 5,000 calls while processes are SIGKILLed and the servers restart (CHAOS_ARGS="--help")
	@bash scripts/chaos.sh $(CHAOS_ARGS)

bench:          ## the benchmark suite, each figure beside a baseline (< 20 min; BENCHMARKS.md)
	@bash bench/run.sh suite $(BENCH_ARGS)

bench-scale:    ## a 1,000,000-call campaign appended in batches and dialed (BENCH_ARGS="--calls N")
	@bash bench/run.sh scale $(BENCH_ARGS)

typecheck:      ## mypy --strict on shared/ and services/
	$(VENV)/bin/mypy

clean:
	rm -rf .var .pytest_cache .mypy_cache .ruff_cache
