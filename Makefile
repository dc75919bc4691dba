# lambda-forest, from a fresh clone:
#   make serve   set up .venv, train the iris forest into ./model-store if it is empty, sam build, and
#                serve the built function on http://127.0.0.1:3000 under the Lambda Runtime Interface Emulator
#   make test    the whole test suite (what CI runs)

PYTHON_VERSION := 3.13
VENV := .venv
PY := $(VENV)/bin/python
STORE ?= ./model-store
MODEL ?= iris
PORT ?= 3000
# The front door `make serve` emulates: rest, http or url (template.yaml's ApiType).
API_TYPE ?= rest
ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)
ZIG_CC := $(PY) -m ziglang cc
include layers/native.mk
# The native walker for this machine, beside its source: training verifies it at publish, tests use it.
NATIVE_HOST := functions/predict/lambda_forest/$(NATIVE_LIBRARY)

export SAM_CLI_TELEMETRY := 0
# sam build runs the Makefiles with this PATH, so they find python3.13 in the venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# The function's Python: pyenv's, else the first python3.13 on PATH that runs (an inactive pyenv shim does not).
FUNCTION_PYTHON := $(shell for p in $(HOME)/.pyenv/versions/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION) \
	$$(command -v python$(PYTHON_VERSION)); do "$$p" -c "" 2>/dev/null && { echo "$$p"; break; }; done)

.PHONY: setup native arm64 model build serve invoke test lint bench clean

setup: $(VENV)/.installed native

native: $(NATIVE_HOST)

$(NATIVE_HOST): $(NATIVE_SOURCE) layers/native.mk $(VENV)/.installed
	$(call native_build,$(if $(filter arm64,$(ARCH)),aarch64,x86_64),$@)

$(VENV)/.installed: requirements/*.txt pyproject.toml
	@test -n "$(FUNCTION_PYTHON)" || { echo "Python $(PYTHON_VERSION) not found: install it (pyenv install $(PYTHON_VERSION))"; exit 1; }
	test -x $(PY) || $(FUNCTION_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

model: setup
	$(PY) -m training --store $(STORE) train --dataset $(MODEL) --promote --if-unpublished

# This machine's architecture only, and only the layer the function uses (SAM resolves the conditions).
build: setup
	sam build PredictFunction --parameter-overrides Architecture=$(ARCH)

serve: model build
	$(PY) -m local_lambda --store $(STORE) --name $(MODEL) serve --port $(PORT) --api-type $(API_TYPE)

invoke: model build
	$(PY) -m local_lambda --store $(STORE) --name $(MODEL) invoke $(or $(EVENT),events/predict.json)

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The arm64 function with both layers, run under qemu user mode: the same answers as x86_64, bit for bit.
# (The tools, qemu and an aarch64 Python from Debian's packages, are fetched once into .aws-sam/arm64.)
arm64: setup
	$(PY) -m pytest -m slow tests/test_arm64.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	sam build --parameter-overrides Architecture=$(ARCH)  # every layer: the benchmark runs the lean one too
	$(PY) -m benchmarks
	$(PY) -m benchmarks.batch  # batch scoring: rows per second per worker, cost per million rows

clean:
	rm -rf .aws-sam $(NATIVE_HOST)
