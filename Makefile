# secsync-jupyter — everything a fresh machine needs goes through these targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test setup lint pytest js-test labextension browser demo clean

## make run: set everything up and start JupyterLab with encrypted collaboration
run: setup
	$(BIN)/python -m secsync_jupyter demo

## make test: set everything up and run the whole test suite
test: setup lint pytest js-test

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

pytest: setup
	$(BIN)/python -m pytest -q

labextension/node_modules/.installed: labextension/package.json labextension/package-lock.json
	cd labextension && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## JS unit, vector and engine tests of the browser client (vitest)
js-test: labextension/node_modules/.installed
	cd labextension && npx tsc -p test/tsconfig.json && npx vitest run

demo: setup
	$(BIN)/python -m secsync_jupyter demo

clean:
	rm -rf $(VENV) build dist *.egg-info
