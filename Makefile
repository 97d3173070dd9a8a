# One command to set up and run the main job, one to set up and run the tests.
# Uses the active virtual environment if there is one, else creates .venv here.
# torch==2.13.0 is installed first: on CPU machines it resolves to the CPU wheel, so no
# multi-GB CUDA build is downloaded.

ifdef VIRTUAL_ENV
PYTHON := python
STAMP := $(VIRTUAL_ENV)/.dropreg-installed
DOCS_STAMP := $(VIRTUAL_ENV)/.dropreg-docs-installed
BENCH_STAMP := $(VIRTUAL_ENV)/.dropreg-bench-installed
else
PYTHON := .venv/bin/python
STAMP := .venv/.dropreg-installed
DOCS_STAMP := .venv/.dropreg-docs-installed
BENCH_STAMP := .venv/.dropreg-bench-installed
endif
PIP := $(PYTHON) -m pip
OUT ?= results
PROFILE ?= quick

.PHONY: install run test lint bench clean docs docs-check

$(STAMP): pyproject.toml
ifndef VIRTUAL_ENV
	test -x .venv/bin/python || python3 -m venv .venv
endif
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[test,ray]"
	touch $(STAMP)

install: $(STAMP)

# `dropreg reproduce` exits 1 when some claim is "not reproduced" (a finding, shown in the
# report); `make run` succeeds once the report is written, and fails on any other status.
run: install
	$(PYTHON) -m dropreg.cli reproduce --profile $(PROFILE) --out $(OUT) || test $$? -eq 1
	@echo "report: $(OUT)/report.html and $(OUT)/report.md"

test: install
	$(PYTHON) -m ruff check src tests benchmarks examples
	$(PYTHON) -m pytest

# The documentation site (Sphinx; the gallery runs examples/), warnings are errors. Not part of
# `make test`; CI (.ci/run) builds it and checks the pages in headless Chromium (docs-check).
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PIP) install -q -e ".[test,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PYTHON) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

docs-check: docs
	$(PYTHON) docs/check_site.py docs/_build/html

# `make bench` runs every benchmarks/bench_*.py (benchmarks/run_all.py) and rewrites the README's
# table; `make bench QUICK=1` runs each script's quick mode (few repeats, small sizes), writes
# benchmarks/results/quick/ and prints the table without touching README.md.
# The peers: the `bench` extra, plus two packages installed without their dependencies (see the
# comment of the extra in pyproject.toml); timm and torchvision files are read from their wheels
# by benchmarks/bench_layers.py.
BENCH_NODEPS := "curvlinops-for-pytorch==3.0.1" "backpack-for-pytorch==1.7.1"

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PIP) install -q -e ".[test,bench]"
	$(PIP) install -q --no-deps $(BENCH_NODEPS)
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PYTHON) benchmarks/run_all.py $(if $(QUICK),--quick)

clean:
	rm -rf .venv results .pytest_cache .ruff_cache docs/_build docs/auto_examples docs/api/generated
