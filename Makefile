VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install up demo test bench clean

install: $(STAMP)

# Reinstall only when the dependency list changes; the project itself is editable.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

up: install
	$(VENV)/bin/amp-personalize up

demo: install
	$(PY) -m amp_personalize.demo.run

test: install
	$(PY) -m pytest -q

bench: install
	command -v wrk >/dev/null || apt-get install -y wrk
	$(PY) benchmarks/ingest.py

clean:
	rm -rf $(VENV) data/landing data/lake data/models data/warehouse.duckdb
