# kubescientist — `make demo` runs the quickstart offline; `make test` runs the whole suite.
# Both set up what they need on a fresh machine: a virtualenv in .venv with the package and its extras.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= runs

.PHONY: demo test unit lint typecheck e2e cluster bench clean help

help:
	@echo "make demo   - run examples/quickstart.yaml locally, offline (results under $(WORKDIR)/)"
	@echo "make test   - lint, type-check and run the whole test suite"
	@echo "make bench  - measure the node executor's overhead"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[experiments,dev]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(WORKDIR)/quickstart
	$(VENV)/bin/kubescientist run examples/quickstart.yaml --workdir $(WORKDIR)

lint: $(STAMP)
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q -m "not e2e"

test: lint typecheck $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/executor_overhead.py

clean:
	rm -rf $(VENV) $(WORKDIR) .mypy_cache .pytest_cache
