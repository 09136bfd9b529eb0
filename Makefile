# Every target creates and fills its own virtualenv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
# A second environment with google-cloud-aiplatform 2.x: the drop-in PipelineJob supports both
# majors, and GCPC (a test dependency of .venv) pins aiplatform<2, so 2.x needs its own venv.
AIP2 ?= .venv-aip2
AIP2_PY := $(AIP2)/bin/python
AIP2_TESTS := tests/test_job.py tests/test_vertex_rules.py tests/test_cli_submit.py tests/test_demo.py tests/test_audit.py tests/test_vertex_endpoints.py

.PHONY: test test-aip2 demo bench lint docs clean

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

$(AIP2)/.ready: pyproject.toml
	$(PYTHON) -m venv $(AIP2)
	$(AIP2_PY) -m pip -q --disable-pip-version-check install --upgrade pip
	$(AIP2_PY) -m pip -q --disable-pip-version-check install -e . "google-cloud-aiplatform>=2,<3" "pytest>=8"
	touch $@

# pytest also builds the docs site with --strict (tests/test_docs.py) and executes
# notebooks/quickstart.ipynb against the emulator (tests/test_notebook.py).
test: lint
	$(PY) -m pytest -q tests
	$(MAKE) test-aip2

test-aip2: $(AIP2)/.ready
	$(AIP2_PY) -c "import google.cloud.aiplatform as a; assert a.__version__.startswith('2.'), a.__version__"
	$(AIP2_PY) -m pytest -q -p no:cacheprovider $(AIP2_TESTS)

docs: $(VENV)/.test
	$(VENV)/bin/mkdocs build --strict

bench: $(VENV)/.test
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(AIP2) site .pytest_cache .mypy_cache .ruff_cache
