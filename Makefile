# Set-up is part of every target: a fresh machine needs only Python 3.11 and the package registries.
# torch==2.13.0 is installed first so nothing pulls a multi-GB CUDA build of torch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/advisor demo --out demo-out

# Headless Chromium checks the HTML report in a slow test (Debian package; needs root/apt).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium not installed: the report's browser test will skip outside CI"

# All tiers but gpu (gpu tests are collected and skip cleanly without CUDA).
test: $(STAMP) browser
	$(BIN)/python -m pytest -m "slow or not slow" -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
