# Quick start: `make run` (install + map the embedded default model), `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/default.toml
# CPU machines get the pinned CPU build of torch (a plain `torch` pulls a multi-GB CUDA
# build); a machine with an NVIDIA driver gets the default (CUDA) build.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)

.PHONY: install run test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
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
