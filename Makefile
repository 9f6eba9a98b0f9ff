# comeback: `make demo` runs the whole pipeline on generated sample data; `make test` runs the suite.
# Both create .venv and install the locked dependencies themselves (only python3 >= 3.11 needed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP  := $(VENV)/.installed

export PATH := $(CURDIR)/$(BIN):$(PATH)
# LightGBM, DuckDB and BLAS get explicit thread counts: more threads than free cores is many times slower.
export OMP_NUM_THREADS ?= 2

.PHONY: install demo test lint bench serve lock java clean realdata

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "comeback needs Python 3.11 or later")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@# compiled once here: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set every
	@# process (each stage, test subprocess and API start) would recompile Ibis, pandas and MLflow (~1.7 s)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

# Regenerate the lock file after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra spark --python-version 3.11 --generate-hashes -o requirements.lock

# PySpark needs a Java runtime; install one from Debian's packages where it is missing.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing openjdk-17-jre-headless"; \
	  (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless) >/dev/null \
	  || { echo "could not install Java; Spark tests will be skipped" >&2; true; }; }

# dvc repro up to the evaluation, move the champion alias only if the challenger is not worse, then
# score with the champions (dvc repro skips everything that is up to date).
demo: install
	$(BIN)/dvc repro evaluate
	$(BIN)/comeback promote --features data/features/features.parquet
	$(BIN)/dvc repro
	@$(BIN)/python -m pipeline.demo_summary

# Both public datasets (UCI Online Retail and Olist, from $COMEBACK_SHARED_DATA or ../shared/data)
# end to end with the default params.yaml, two test cutoffs each: data/realdata/report.md.
realdata: install
	$(BIN)/python bench/realdata.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install java lint
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/run_all.py

serve: install
	$(BIN)/comeback serve

clean:
	rm -rf data/raw data/clean data/features data/models data/reports data/scores mlflow.db mlruns mlartifacts
