# Everything a fresh machine needs: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install s2l-scan into it first (pip; torch comes from the local disk).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Main job: build (or reuse from cache) the default reference model and summarise it.
demo: $(BIN)/.installed
	$(BIN)/s2l-scan reference build

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -m "not slow" -q

clean-venv:
	rm -rf $(VENV)
