# Two commands on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

CHROMIUM ?= /usr/bin/chromium

.PHONY: setup browser demo serve test bench bench-kafka bench-quality bench-dispatch clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

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

test: setup browser
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/ingest.py
	$(PY) bench/observe.py

bench-kafka: setup
	$(PY) bench/kafka.py --profile

bench-quality: setup
	$(PY) bench/quality.py

bench-dispatch: setup
	$(PY) bench/dispatch.py

clean:
	rm -rf $(VENV) data .pytest_cache
