# Everything a fresh machine needs: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install s2l-scan into it first (pip; torch comes from the local disk).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install clean-venv bench bench-quick bench-sd15

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Main job: build (or reuse from the cache) the default reference model, summarise it, and
# scan it: baselines, extraction, noise and lora probes (reports s2l-report.json / .html, match
# pictures in s2l-evidence/). The reference model memorizes by design, so the gate is expected
# to FAIL (exit 1); any other non-zero exit (a scan error) fails `make demo`.
demo: $(BIN)/.installed
	$(BIN)/s2l-scan reference build
	$(BIN)/s2l-scan scan reference --report-json s2l-report.json --report-html s2l-report.html \
	  --evidence-dir s2l-evidence; \
	  rc=$$?; if [ $$rc -eq 1 ]; then echo "gate failed as expected: the reference model leaks its members"; \
	  elif [ $$rc -ne 0 ]; then exit $$rc; fi

# The Action and the workflows are code too: zizmor audits them for injection and supply-chain
# mistakes, check-jsonschema validates them against GitHub's schemas, shellcheck the scripts.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/zizmor --offline --quiet .github/workflows action.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-actions action.yml
	$(BIN)/shellcheck scripts/*.sh .ci/run

test: lint
	$(BIN)/python -m pytest -m "not slow" -q

# Performance figures (docs/performance.md): figure | measured | goal | met?. The full run builds
# the default reference model and runs the full default scan (tens of minutes on 2 CPU cores);
# bench-quick uses the tiny preset (a few minutes). Add ARGS="--device cuda" on a GPU.
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks $(ARGS)

bench-quick: $(BIN)/.installed
	$(BIN)/python -m benchmarks --quick $(ARGS)

# SD-1.5-sized forwards vs a bare diffusers loop; on a GPU:
# make bench-sd15 ARGS="--device cuda --dtype float16 --steps 20 --repeats 3"
bench-sd15: $(BIN)/.installed
	$(BIN)/python -m benchmarks.sd15 forwards $(ARGS)

clean-venv:
	rm -rf $(VENV)
