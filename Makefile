# Quick start: `make run` (install + map the embedded default model), `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/default.toml
# The tests need torch (vocabmap itself only for .bin checkpoints and contextual maps).
# Without an NVIDIA driver this asks for torch==2.13.0: a CPU build only where pip's index
# holds one (this project's machines: /opt/wheels); from plain PyPI on Linux it is the
# multi-GB CUDA build, so elsewhere run
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
TORCH_INDEX ?=

.PHONY: install run test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

run: install
	$(PY) -m job run $(CONFIG)

test: install
	bash scripts/system-deps.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

bench: install
	$(PY) bench/tsne_backends.py

clean:
	rm -rf runs logs .pytest_cache
