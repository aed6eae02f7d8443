# bnexp — `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 6006
# The stamp records a finished install; it is rebuilt only when the pins change.
STAMP  := $(VENV)/.installed
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help install data run test sweep bench tensorboard

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the pinned packages (once)

$(STAMP): requirements/cpu.txt requirements/common.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "bnexp needs Python 3.11 (found $$($(PYTHON) --version 2>&1)); set PYTHON=python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) 2>/dev/null || \
		{ rm -rf $(VENV); echo "installing python3-venv"; apt-get update -q && apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/cpu.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

data: $(STAMP) ## make Fashion-MNIST available (apt package, else official download) and verify it
	$(PY) -m bnexp.data fetch

run: data ## train with the default config (add ARGS="bn=gluon lr=0.1" for overrides)
	$(PY) -m bnexp.run $(ARGS)

test: data ## run the test suite
	$(PY) -m pytest $(ARGS)

sweep: data ## the convergence sweep (bn none/scratch/gluon x 3 seeds) and its report
	$(PY) -m bnexp.run --multirun experiment=convergence $(ARGS)

bench: data ## training throughput of none/scratch/gluon against the source's loop
	$(PY) -m bnexp.bench $(ARGS)

tensorboard: $(STAMP) ## TensorBoard on outputs/ at http://127.0.0.1:6006 (PORT=... to change)
	$(VENV)/bin/tensorboard --logdir outputs --host 127.0.0.1 --port $(PORT)
