# Two entry points, both idempotent: a ready machine re-runs in seconds.
#   make run   - set up .venv and run the parity harness on the built-in data
#   make test  - set up .venv and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# Where the torch CPU wheel comes from. Here pip finds it on disk; elsewhere use
#   make run TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-all bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU build, so that nothing pulls the CUDA build.
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) compare.py

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

bench: $(STAMP)
	$(PY) compare.py bench

clean:
	rm -rf $(VENV) reports .cache
