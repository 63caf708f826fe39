# `make demo` and `make test` each create .venv when it is missing and install the
# exact tested versions from constraints.txt before running.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per extras set, remade when the dependencies change.
$(VENV)/.installed-core: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-all: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e '.[all]'
	touch $@ $(VENV)/.installed-core

demo: $(VENV)/.installed-core
	$(BIN)/hitl demo --out hitl-demo

test: $(VENV)/.installed-all
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-all
	$(BIN)/python benchmarks/aggregation.py
	$(BIN)/python benchmarks/selection_speed.py
	$(BIN)/python benchmarks/label_cost.py

clean:
	rm -rf $(VENV) hitl-demo .pytest_cache
