# Two commands do all set-up on a fresh machine with Python 3.11 and make: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test test-fast browser lint bench demo clean

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed: install python3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.app-installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt requirements.txt $(VENV)/.app-installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## Start the app on http://localhost:8501
run: $(VENV)/.app-installed
	$(PY) -m unet.ui.serve --server.port $(PORT)

## A Chromium for the browser tests: Playwright's own or the system one when it starts, else installed
## (Playwright's download, else `apt-get install chromium` as root or with sudo -n; UNET_BROWSER_INSTALL=0: never);
## with none, one line says what to install and the browser tests are skipped (UNET_REQUIRE_BROWSER=1: fail).
## UNET_CHROMIUM=/path uses that browser only. See tests/e2e/browser.py.
browser: $(VENV)/.dev-installed
	$(PY) -m tests.e2e.browser

## The whole suite: unit, page (AppTest) and browser (Playwright + Chromium) tests, on two workers, each module whole
## on one of them, the slowest first (tests/conftest.py). TEST_WORKERS=0: all in this process.
TEST_WORKERS ?= 2
test: $(VENV)/.dev-installed browser
	$(PY) -m ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

## Everything except the browser tests and the Ray cluster tests
test-fast: $(VENV)/.dev-installed
	$(PY) -m pytest -m "not e2e and not ray"; rc=$$?; [ $$rc -eq 5 ] && exit 0; exit $$rc

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

## Performance figures of this machine (see the README)
bench: $(VENV)/.app-installed
	$(PY) -m unet bench

demo: $(VENV)/.app-installed
	$(PY) -m unet demo-data workspace/demo-cells --kind cells

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
