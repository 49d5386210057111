# Two commands set everything up: `make demo` and `make test`.
# Each creates .venv if it is missing and installs the project into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXAMPLE := examples/wolfpack/film.film

.PHONY: demo test lint fmt bench clean

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
	$(BIN)/filmc fmt --check $(shell find examples stdlib -name "*.film")
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/bench_check.py
	$(BIN)/python bench/bench_compile.py
	$(BIN)/python bench/bench_select.py
	$(BIN)/python bench/bench_executor.py

clean:
	rm -rf build .filmc
