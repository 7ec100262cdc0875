# nphmkit: `make demo` runs the main job, `make test` runs the tests.
# Each target creates its own virtual environment (.venv) and installs what it needs.
# A CPU build of torch is enough; GPU users can point TORCH_SPEC at their own build, e.g.
#   make test TORCH_SPEC='torch==2.13.0'   (or install torch into .venv first).

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test test-fast bench docs lint clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.core: $(VENV)/.torch pyproject.toml
	$(PIP) install -q -e ".[image]"
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install -q -e ".[image,dev,triton]"
	touch $@

demo: $(VENV)/.core
	$(PY) examples/pix2nphm_full.py

$(VENV)/.docs: $(VENV)/.dev
	$(PIP) install -q -e ".[image,dev,triton,docs]"
	touch $@

# the tests, then the docs built strictly (a broken page or reference fails the target)
test: $(VENV)/.docs
	$(PY) -m pytest -q
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q -d build/site

# skips the slow tests and the Triton-interpreter tests (10-30 s each on a CPU)
test-fast: $(VENV)/.dev
	$(PY) -m pytest -q -m "not slow and not interpreter"

bench: $(VENV)/.dev
	$(PY) benchmarks/bench_sdf.py

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check nphmkit kernels tests examples benchmarks

clean:
	rm -rf $(VENV) build site *.egg-info
