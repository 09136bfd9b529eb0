# Every target creates and fills its own virtualenv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
# A second environment with google-cloud-aiplatform 2.x: the drop-in PipelineJob supports both
# majors, and GCPC (a test dependency of .venv) pins aiplatform<2, so 2.x needs its own venv.
AIP2 ?= .venv-aip2
AIP2_PY := $(AIP2)/bin/python
# The oldest Python the package supports (requires-python >= 3.10): the whole suite runs there too
# when an interpreter is found (on PATH, or installed by pyenv); otherwise `make test` says so.
PY310 ?= $(shell for p in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10; do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo "$$p"; break; }; done)
V310 ?= .venv310
AIP2_TESTS := tests/test_job.py tests/test_vertex_rules.py tests/test_cli_submit.py tests/test_demo.py tests/test_audit.py tests/test_vertex_endpoints.py

.PHONY: test test-aip2 test-py310 demo bench lint docs clean

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
	$(MAKE) test-py310

test-aip2: $(AIP2)/.ready
	$(AIP2_PY) -c "import google.cloud.aiplatform as a; assert a.__version__.startswith('2.'), a.__version__"
	$(AIP2_PY) -m pytest -q -p no:cacheprovider $(AIP2_TESTS)

$(V310)/.test: pyproject.toml
	"$(PY310)" -m venv $(V310)
	$(V310)/bin/python -m pip -q --disable-pip-version-check install --upgrade pip
	$(V310)/bin/python -m pip -q --disable-pip-version-check install -e ".[test]"
	touch $@

ifeq ($(strip $(PY310)),)
test-py310:
	@echo "test-py310: SKIPPED - no Python 3.10 on this machine (not on PATH, not in pyenv); the suite ran only under $$($(PYTHON) -V)"
else
test-py310: $(V310)/.test
	$(V310)/bin/python -m pytest -q -p no:cacheprovider tests
endif

docs: $(VENV)/.test
	$(VENV)/bin/mkdocs build --strict

bench: $(VENV)/.test
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(AIP2) $(V310) site .pytest_cache .mypy_cache .ruff_cache
