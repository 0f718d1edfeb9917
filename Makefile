# secsync-jupyter — everything a fresh machine needs goes through these targets.
#   make run    set up everything and start JupyterLab with encrypted collaboration
#   make test   set up everything and run the whole test suite
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888
ROOT_DIR ?= $(CURDIR)
export PATH := $(CURDIR)/$(BIN):$(PATH)
## shared/ (protocol.md, vectors/, the reference harness), beside the clone; may be read-only
SHARED ?= $(CURDIR)/../shared
export SECSYNC_SHARED := $(abspath $(SHARED))
## where the reference harness (npm secsync 0.5.0 …) is installed: never inside shared/
export HARNESS_HOME ?= /tmp/secsync-harness

.PHONY: run test setup lint pytest js-test e2e labextension browser demo relay bench clean harness postgres hub

## make run: set everything up and start JupyterLab with encrypted collaboration
##           (embedded SQLite relay; PORT=8888, ROOT_DIR=the repository by default).
##           Run-time state (the relay database, the stock collaboration store
##           jupyter_ystore.db that holds the plaintext of every .ipynb opened, the file-id
##           database, the collaboration session ids) goes to STATE_DIR, never into the
##           repository or ROOT_DIR.
##           LAB_ARGS: extra jupyter-lab options.
XDG_STATE_HOME ?= $(HOME)/.local/state
STATE_DIR ?= $(XDG_STATE_HOME)/secsync-jupyter
LAB_ARGS ?=
run: setup labextension
	@echo "Starting JupyterLab with encrypted collaboration on http://127.0.0.1:$(PORT)/lab"
	@echo "(File > New > Encrypted Notebook; run-time state, e.g. the relay database, in $(STATE_DIR))"
	mkdir -p "$(abspath $(STATE_DIR))"
	cd "$(abspath $(STATE_DIR))" && "$(CURDIR)/$(BIN)/jupyter-lab" --no-browser --ip=127.0.0.1 --port=$(PORT) \
	  $(if $(filter 0,$(shell id -u)),--allow-root,) \
	  --ServerApp.root_dir="$(abspath $(ROOT_DIR))" \
	  --SecsyncRelayExtension.db_path="$(abspath $(STATE_DIR))/relay.sqlite" \
	  --SQLiteYStore.db_path="$(abspath $(STATE_DIR))/jupyter_ystore.db" \
	  --BaseFileIdManager.db_path="$(abspath $(STATE_DIR))/file_id_manager.db" \
	  --YDocExtension.session_store_path="$(abspath $(STATE_DIR))/collaboration_sessions.json" \
	  $(LAB_ARGS)

## make test: set everything up and run the whole test suite
test: setup labextension browser lint js-test pytest

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

labextension/node_modules/.installed: labextension/package.json labextension/package-lock.json
	cd labextension && npm ci --no-audit --no-fund --loglevel=error
	touch $@

LABEXT_SRC := $(shell find labextension/src labextension/style labextension/schema -type f 2>/dev/null) \
	labextension/package.json labextension/tsconfig.json

## the prebuilt JupyterLab extension (secsync_jupyter/labextension), linked into the venv
secsync_jupyter/labextension/package.json: labextension/node_modules/.installed $(LABEXT_SRC) | setup
	cd labextension && npm run build
	$(BIN)/python -m pip install --quiet --no-deps -e .

labextension: secsync_jupyter/labextension/package.json

## Chromium from Debian's packages, for the end-to-end browser tests
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" != 0 ]; then echo "chromium missing: run 'sudo apt-get install -y chromium'" >&2; exit 1; fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

## PostgreSQL from Debian's packages, for the relay's PostgreSQL store: the tests start their
## own throw-away cluster (tests/relay/pg.py); no server is configured here
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then echo "PostgreSQL missing: run 'sudo apt-get install -y postgresql'" >&2; exit 1; fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }

## JupyterHub's proxy (configurable-http-proxy, npm) in .venv/hub, for tests/hub (JupyterHub
## itself comes with the test extras); tests/hub/conftest.py puts its bin on the Hub's PATH
HUB_CHP := $(VENV)/hub/node_modules/.bin/configurable-http-proxy
hub: $(HUB_CHP)

$(HUB_CHP): | setup
	npm install --prefix $(VENV)/hub --no-audit --no-fund --loglevel=error configurable-http-proxy@5

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

## the reference harness's npm packages, in $(HARNESS_HOME) (setup.sh copies the scripts and
## runs `npm ci` only when the lockfile changed). shared/ may have no write bits (CI): the
## copies keep that mode, so they are made writable again before setup.sh copies over them.
harness:
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  { echo "node and npm are needed for the reference harness" >&2; exit 1; }
	@test -x "$(SECSYNC_SHARED)/harness/setup.sh" || \
	  { echo "no reference harness at $(SECSYNC_SHARED)/harness (set SHARED=…)" >&2; exit 1; }
	@if [ -d "$(HARNESS_HOME)" ]; then find "$(HARNESS_HOME)" -maxdepth 2 -path "$(HARNESS_HOME)/node_modules" -prune -o -type f -exec chmod u+w {} +; fi
	"$(SECSYNC_SHARED)/harness/setup.sh"

## every Python test, including the Chromium end-to-end tests
pytest: setup labextension browser harness postgres hub
	$(BIN)/python -m pytest -q

## JS unit, vector and engine tests of the browser client (vitest): they run the reference
## relay and vector generator (harness) and the Python relay (setup)
js-test: setup harness labextension/node_modules/.installed
	cd labextension && npx tsc -p test/tsconfig.json && npx vitest run

e2e: setup labextension browser
	$(BIN)/python -m pytest -m browser tests/e2e -q -s

demo: setup
	$(BIN)/python -m secsync_jupyter demo

relay: setup
	$(BIN)/secsync-relay --host 127.0.0.1 --port 8765 --db .secsync/relay.sqlite --open

bench: setup harness
	$(BIN)/python benchmarks/protocol_bench.py
	$(BIN)/python benchmarks/relay_bench.py
	$(BIN)/python benchmarks/load_bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info labextension/node_modules labextension/lib secsync_jupyter/labextension
