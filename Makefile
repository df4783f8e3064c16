# Two commands for a new user:  `make run` (viewer) and `make test` (tests).
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 resolves to the CPU wheel on the project's machines; elsewhere any torch>=2.3 works.
TORCH ?= torch==2.13.0

.PHONY: install run test test-fast lint bench package clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/dpglow-viewer

test: install
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The quick loop while editing: the tests marked slow or realdata are left out.
test-fast: install
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow and not realdata"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: install
	$(PY) benchmarks/bench_engine.py

$(VENV)/.packaging: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[packaging]"
	touch $@

# The one-folder PyInstaller build in dist/, smoke-tested (packaging/README.md).
package: $(VENV)/.packaging
	REQUIRE_MODELS=1 bash packaging/build.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
