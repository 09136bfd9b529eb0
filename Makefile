# Every target creates and fills its own virtualenv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: test demo bench lint docs clean

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e .
	touch $@

$(VENV)/.test: $(VENV)/.runtime
	$(PIP) install -e ".[test]"
	touch $@

demo: $(VENV)/.runtime
	$(VENV)/bin/zt-pipelines demo

lint: $(VENV)/.test
	$(VENV)/bin/ruff check zt_pipelines tests bench
	$(VENV)/bin/ruff format --check zt_pipelines tests bench
	$(VENV)/bin/mypy zt_pipelines

test: lint
	$(PY) -m pytest -q tests

bench: $(VENV)/.test
	$(PY) -m bench

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache
