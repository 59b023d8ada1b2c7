# The two commands: `make demo` runs the whole stack and produces a video; `make test` passes the tests.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint soak image-test bench schema clean

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
	$(PY) -m pytest -q -m "not soak and not image_build"

soak: setup
	$(PY) -m pytest -q -m soak tests/chaos

# The CPU image built with podman on a debootstrapped base and run against Redis (root; minutes cold).
image-test: setup
	@bash scripts/bootstrap.sh image
	$(PY) -m pytest -q -m image_build tests/deploy/test_image_build.py

schema: setup
	$(VENV)/bin/wan22 schema --go

clean:
	rm -rf .wan22 outputs .pytest_cache
