# ptk: `make demo` runs the whole pipeline on real sample data; `make test` runs the test suite.
# Both create .venv on first use. torch is installed first, pinned, so pip does not pull a CUDA
# build on CPU machines: override with e.g. `make test TORCH=torch==2.15.0`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.ptk-installed

.PHONY: demo test bench lint clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[samples,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ptk run examples/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python scripts/bench_corpus.py
	$(BIN)/python scripts/bench_tokenize.py
	$(BIN)/python scripts/bench_mask.py
	$(BIN)/python scripts/bench_pretrain.py

lint: $(STAMP)
	$(BIN)/ruff check pretrain_cli tests scripts

clean-demo:
	rm -rf work/demo
