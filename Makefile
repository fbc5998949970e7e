# The two commands of the README: `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

CONFIG ?= experiments/tiny_cpu.py
WORKDIR ?= runs/tiny_cpu
PYTEST_ARGS ?=

.PHONY: train test test-slow bench install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel

# Stamps: reinstall only when the dependency files change.
$(VENV)/.installed: $(PY) setup.cfg pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

# torch first and pinned, so nothing pulls a multi-GB CUDA build (PITFALLS.md).
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

train: install
	$(PY) -m spiral_jax.train --config=$(CONFIG) --workdir=$(WORKDIR)

test: install-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: install-test
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: install-test
	$(PY) benchmarks/games.py

clean:
	rm -rf $(VENV) .venv-oracle runs .pytest_cache .hypothesis
