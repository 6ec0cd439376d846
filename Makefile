# Sluice developer entry points. `make run` builds the environment (once per constraints/pyproject
# change) and runs the example pipeline; `make test` runs the test suite.
PYTHON ?= python3.11
VENV   ?= .venv
PIP_FLAGS ?= --disable-pip-version-check --progress-bar off -q
# uv installs the pinned stack (70 s here where pip took 2.6 min), compiling the bytecode as pip does:
# without it, where PYTHONDONTWRITEBYTECODE is set (as here, and in many containers), every process
# compiles what it imports again. It reads uv's settings, not pip's: a private index is
# UV_INDEX_URL / UV_EXTRA_INDEX_URL (see uv's documentation).
UV_FLAGS ?= -q
# The environment is rebuilt when the pins or the [project] table (dependencies, scripts) change.
STAMP  := $(VENV)/.installed-$(shell { cat constraints.txt; sed -n '/^\[project/,/^\[tool/p' pyproject.toml; } | sha256sum | cut -c1-16)
EXAMPLE ?= pipelines/examples/penguin/penguin_pipeline.py
# Test processes (pytest-xdist; each test file runs whole in one of them, the longest first: see
# tests/conftest.py). 0: one process, in pytest's own order. Three on the project's 2-core machine:
# the suite waits on servers, heartbeats and timeouts for part of its time, which a third process
# fills (2026-12-04, one fresh clone each: 923 s of pytest with two, 773 s with three, 803 s with four).
TEST_WORKERS ?= 3

.PHONY: run test coverage env clean system-deps bytecode

run: $(STAMP) bytecode
	$(VENV)/bin/sluice run $(EXAMPLE)

test: $(STAMP) system-deps bytecode
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The suite under coverage.py (slower): the total is the last line printed; htmlcov/ has the details.
coverage: $(STAMP) system-deps
	rm -f .coverage .coverage.*
	SLUICE_REPO=$(CURDIR) COVERAGE_RCFILE=$(CURDIR)/pyproject.toml $(VENV)/bin/coverage run -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS) || true
	SLUICE_REPO=$(CURDIR) $(VENV)/bin/coverage combine -q
	SLUICE_REPO=$(CURDIR) $(VENV)/bin/coverage html -q
	SLUICE_REPO=$(CURDIR) $(VENV)/bin/coverage report | tail -1

# The shared-store tests start a real PostgreSQL server from the system's packages; the monitoring
# tests a real Prometheus and Pushgateway; the report tests open reports in the system's Chromium (headless).
system-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "Installing the PostgreSQL server package (the shared-store tests start one on loopback)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || { \
	  echo "error: the tests need PostgreSQL's server binaries: install your system's 'postgresql' package."; exit 2; }
	@command -v prometheus >/dev/null 2>&1 && command -v prometheus-pushgateway >/dev/null 2>&1 || { \
	  echo "Installing Prometheus and the Pushgateway (the monitoring tests start both on loopback)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-pushgateway >/dev/null; } || { \
	  echo "error: the tests need Prometheus, promtool and the Pushgateway: install your system's 'prometheus' and"; \
	  echo "       'prometheus-pushgateway' packages."; exit 2; }
	@test -x "$${SLUICE_CHROMIUM:-/usr/bin/chromium}" || { \
	  echo "Installing Chromium (the report tests open reports in it, headless, through Playwright)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || { \
	  echo "error: the tests need a Chromium at /usr/bin/chromium: install your system's 'chromium' package"; \
	  echo "       (or set SLUICE_CHROMIUM to a Chromium binary; 'playwright install' is not needed)."; exit 2; }

env: $(STAMP)

# The project's own modules compiled once (an editable install is not compiled by the installer):
# where PYTHONDONTWRITEBYTECODE is set, every process (the suite starts hundreds: each `sluice` command,
# each Beam worker) compiled them again, 0.1-0.2 s of CPU each. Up to date, this takes a fraction of
# a second; an edited file is compiled again by Python itself (its bytecode records the source's time).
bytecode: $(STAMP)
	@PYTHONDONTWRITEBYTECODE= $(VENV)/bin/python -m compileall -q components metadata pipelines tests

$(STAMP):  # its name holds the hash of what it was built from: an edit elsewhere in pyproject.toml does not rebuild
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: '$(PYTHON)' not found. Sluice's stack (TensorFlow 2.16, TFX-BSL 1.16) needs Python 3.11."; \
	  echo "       Install Python 3.11 (for example 'pyenv install 3.11' or your system's python3.11 package)"; \
	  echo "       and run again, or point to it: make $(MAKECMDGOALS) PYTHON=/path/to/python3.11"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { \
	  echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'), but Sluice's stack needs Python 3.11."; \
	  echo "       Install Python 3.11 and run: make $(MAKECMDGOALS) PYTHON=/path/to/python3.11"; exit 2; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -c constraints.txt uv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/uv pip install $(UV_FLAGS) --compile-bytecode -c constraints.txt -e '.[test]' pip
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
