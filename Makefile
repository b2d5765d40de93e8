# Two commands from a fresh clone:  `make up` runs the stack, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: up test lint redis clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[server,export]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[server,test,export]'
	@touch $@ $(VENV)/.installed

## up: build .venv and run PostgreSQL, Redis, migrations, the API and the worker (ARGS="--port 8080 ...").
up: $(VENV)/.installed
	$(BIN)/memoire up $(ARGS)

## test: build .venv with the test extras, make sure Redis runs, lint, type-check and run the suite.
test: $(VENV)/.installed-test redis lint
	$(BIN)/pytest $(PYTEST_ARGS)

## bench: the performance suite beside the peers (bench/README.md); writes bench/results/perf-<time>/.
bench: $(VENV)/.installed-bench redis
	$(BIN)/python -m bench.perf $(ARGS)

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[server,test,export,bench]'
	@touch $@ $(VENV)/.installed $(VENV)/.installed-test

lint: $(VENV)/.installed-test
	$(BIN)/ruff check proxy memory worker memoire stack migrations tests bench
	$(BIN)/ruff format --check proxy memory worker memoire stack migrations tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## redis: make sure a redis-server answers on 127.0.0.1:6379 (the tests use its database 15).
redis:
	@if ! command -v redis-server >/dev/null 2>&1; then \
		echo "installing redis-server"; apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; fi
	@if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
		echo "starting redis-server on 127.0.0.1:6379"; \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no; \
		for i in $$(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done; fi
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
