# The two commands: `make demo` runs the whole stack and produces a video; `make test` passes the tests.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint soak bench schema clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/wan22 demo

lint: setup
	$(VENV)/bin/ruff check services wan tests bench
	$(VENV)/bin/ruff format --check services wan tests bench
	$(VENV)/bin/mypy

test: lint
	@bash scripts/bootstrap.sh test
	$(PY) -m pytest -q -m "not soak"

soak: setup
	$(PY) -m pytest -q -m soak tests/chaos

schema: setup
	$(VENV)/bin/wan22 schema --go

clean:
	rm -rf .wan22 outputs .pytest_cache
