# Two commands set everything up: `make demo` and `make test`.
# Each creates .venv if it is missing and installs the project into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXAMPLE := examples/wolfpack/film.film

.PHONY: demo test lint typecheck fmt bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/filmc check $(EXAMPLE)
	$(BIN)/filmc plan --offline $(EXAMPLE) || [ $$? -eq 2 ]  # 2: work to do, as in terraform
	$(BIN)/filmc build --offline --quiet $(EXAMPLE)

test: $(STAMP)
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory typecheck
	$(BIN)/filmc fmt --check $(shell find examples stdlib -name "*.film" -not -path "*/build/*")
	$(BIN)/python -m pytest -n auto  # pytest-xdist: one worker a CPU (the tests are hermetic)

# mypy over the stages. The package `filmc` maps each top-level folder to a subpackage
# (pyproject.toml), and mypy reads a folder tree: so it reads a tree of links.
typecheck: $(STAMP)
	rm -rf .typecheck && mkdir -p .typecheck/filmc
	for d in lang compiler engine backends stdlib; do ln -s ../../$$d .typecheck/filmc/$$d; done
	for f in filmc/*.py; do ln -s ../../$$f .typecheck/filmc/; done
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml \
		-p filmc.lang -p filmc.compiler -p filmc.engine -p filmc.backends

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/bench_check.py
	$(BIN)/python bench/bench_compile.py
	$(BIN)/python bench/bench_select.py
	$(BIN)/python bench/bench_remote.py
	$(BIN)/python bench/bench_executor.py

clean:
	rm -rf build .filmc .typecheck .mypy_cache
