# The two commands of the README. Both work on a fresh Debian machine.
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := prometheus prometheus-alertmanager chromium openssl

.PHONY: demo test venv deps lint typecheck bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Debian packages the end-to-end and browser tests start (root only; prints the command otherwise).
deps:
	@missing=""; for b in prometheus prometheus-alertmanager promtool amtool chromium openssl; do \
	  command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	  else echo "run: sudo apt-get update && sudo apt-get install -y $(APT_PACKAGES)"; exit 1; fi; \
	fi

demo: venv
	$(VENV)/bin/alertmail demo

test: venv deps
	$(VENV)/bin/ruff check receiver exporters tests bench
	$(VENV)/bin/ruff format --check receiver exporters tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -ra

lint: venv
	$(VENV)/bin/ruff check receiver exporters tests bench
	$(VENV)/bin/ruff format --check receiver exporters tests bench

typecheck: venv
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache demo-mail .demo
