# The two commands a user runs: `make demo` and `make test`. Everything else is what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ACA := $(VENV)/bin/aca-infer
STAMP := $(VENV)/.installed
# The CPU wheel of torch that this pin names is what the dev/test setup expects; an unpinned
# torch would pull a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
SHARE_DIR := .aca-infer/local/share
DEMO_MODEL_PATH := model-cache/aca-infer/tiny-phi3
DEMO_MODEL := $(SHARE_DIR)/$(DEMO_MODEL_PATH)/config.json
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export AZURE_TOKEN_CREDENTIALS := dev

.PHONY: setup browser demo-model demo test lint typecheck dist stop clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN) -e '.[serve,dev]'
	touch $(STAMP)

# checkov pins packaging/networkx/python-dateutil below what the serving stack needs: own venv.
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30
	touch $(CHECKOV_STAMP)

demo-model: $(DEMO_MODEL)

$(DEMO_MODEL): $(STAMP) provision/demo_model.py
	$(ACA) local demo-model --share-dir $(SHARE_DIR)

demo: setup demo-model
	$(ACA) up --target local --set modelPath=$(DEMO_MODEL_PATH) --restart
	@echo
	@echo "Chat completion through the endpoint, with the API key:"
	@$(ACA) invoke --target local --message "Hello! Who are you?"
	@echo
	@$(ACA) status --target local
	@echo
	@echo "API keys (secrets of this local demo; send one as 'api-key: <key>' or 'Authorization: Bearer <key>'):"
	@$(ACA) keys show --target local
	@echo
	@echo "The replica keeps running. Stop it with: make stop"

# The UI tests drive headless Chromium; Debian's package is the one this machine can install.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install -y chromium" >&2; exit 3; fi; }

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

test: setup browser $(CHECKOV_STAMP) lint typecheck
	$(VENV)/bin/pytest

# The wheel (self-contained: CLI, server package, Bicep templates, bootstrap) and the sdist.
dist: setup
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist

stop:
	$(ACA) down --target local --yes

clean:
	-$(ACA) down --target local --purge --yes
	rm -rf $(VENV) $(CHECKOV_VENV)
