# Two commands work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lab lint bench validate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,dask]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/margin-sim report params/scenarios/baseline.yaml --out reports

# The browser test drives JupyterLab in Chromium: it runs on its own after the rest, so that it
# does not compete for the two cores with the parallel workers.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not browser"
	$(BIN)/python -m pytest -q -m browser

lint: $(STAMP)
	$(BIN)/ruff check margin_sim tests bench

bench: $(STAMP)
	$(BIN)/python -c "import sdepy" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m bench

validate: $(STAMP)
	$(BIN)/python -c "from margin_sim.notebooks import execute_notebook; \
	print(execute_notebook('notebooks/validation.ipynb', dict(paths=20000, kou_paths=20000, \
	leverages=[5, 10, 20, 50], horizons=['1d', '7d', '30d'], closes_paths=50000, \
	convergence_engine_paths=[1000, 4000, 16000, 64000], \
	convergence_baseline_paths=[100, 300, 1000, 3000]), 'reports', 'validation')[1])"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) reports results .pytest_cache
