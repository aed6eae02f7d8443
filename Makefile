# bnexp — `make help` lists the targets.
# PYTHON: the interpreter the venv is made from: Python 3.11, 3.12 or 3.13 (pins per version
# in requirements/common.txt). Another version than the venv's recreates the venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 6006
# The stamp records a finished install: the MXNet build it holds ("cpu" or "gpu") and the
# Python version; it is rebuilt only when the pins change or another build or Python is asked for.
STAMP  := $(VENV)/.installed
VERSION_OF = $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
# PYTHON given on the command line or in the environment, and not the venv's: rebuild the venv.
ifneq ($(origin PYTHON),file)
ifneq ($(wildcard $(STAMP)),)
ifneq ($(shell $(call VERSION_OF,$(PYTHON))),$(word 2,$(shell cat $(STAMP))))
.PHONY: $(STAMP)
endif
endif
endif
ARGS   ?=
# GPU=1 installs the GPU build of MXNet (requirements/gpu.txt), GPU=0 the CPU build
# (requirements/cpu.txt); unset, scripts/detect_gpu.py decides from nvidia-smi.
GPU    ?=
DETECT  = $(if $(filter 1 yes true gpu,$(GPU)),echo gpu,$(if $(filter 0 no false cpu,$(GPU)),echo cpu,$(PYTHON) scripts/detect_gpu.py))
# What the venv holds now; a stamp from before GPU support is empty and meant the CPU build.
HAVE    = $(if $(wildcard $(STAMP)),$(or $(firstword $(shell cat $(STAMP))),cpu))
# The build the stamp recipe installs: the one `make install` chose, else the one installed,
# else detected (once: the first use turns BUILD into a plain value).
BUILD   = $(eval BUILD := $(or $(FLAVOR),$(HAVE),$(shell $(DETECT))))$(BUILD)
OTHER_MXNET = $(if $(filter gpu,$(BUILD)),mxnet,mxnet-cu112)

.DEFAULT_GOAL := help
.PHONY: help install data run test sweep bench tensorboard doctor figures slurm-up slurm-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## create .venv and install the pinned packages, GPU build of MXNet if nvidia-smi lists a usable GPU (GPU=0/1 to choose)
	@want=$$($(DETECT)) && test -n "$$want" || exit 1; \
	switch=$$(test -n "$(HAVE)" && test "$(HAVE)" != "$$want" && echo "-B"); \
	test -z "$$switch" || echo "switching the venv from the $(HAVE) to the $$want build of MXNet"; \
	$(MAKE) --no-print-directory $(STAMP) FLAVOR=$$want $$switch

$(STAMP): requirements/cpu.txt requirements/gpu.txt requirements/common.txt pyproject.toml
	@version=$$($(call VERSION_OF,$(PYTHON))); case "$$version" in 3.11|3.12|3.13) ;; \
		*) echo "bnexp needs Python 3.11, 3.12 or 3.13; PYTHON=$(PYTHON) is $${version:-not found}." \
		        "Set PYTHON=python3.11 (or 3.12, 3.13)"; exit 1;; esac; \
	  venv=$$(test -x $(PY) && $(call VERSION_OF,$(PY))); \
	  if [ -n "$$venv" ] && [ "$$venv" != "$$version" ]; then \
		echo "recreating $(VENV) for Python $$version (it held $$venv)"; rm -rf $(VENV); fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) 2>/dev/null || \
		{ rm -rf $(VENV); echo "installing python3-venv"; apt-get update -q && apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	@echo "installing the $(BUILD) build of MXNet (requirements/$(BUILD).txt)"
	$(PY) -m pip install -q --upgrade pip
	@# never both MXNet builds in one venv: remove the other one (and, for CPU, the CUDA wheels)
	@if $(PY) -m pip show -q $(OTHER_MXNET) >/dev/null 2>&1; then \
		echo "$(PY) -m pip uninstall -y -q $(OTHER_MXNET)"; $(PY) -m pip uninstall -y -q $(OTHER_MXNET); fi
	@if [ $(BUILD) = cpu ]; then cuda=$$($(PY) -m pip freeze 2>/dev/null | grep -io '^nvidia-[a-z0-9-]*-cu11'); \
		if [ -n "$$cuda" ]; then echo "removing the CUDA 11 wheels:" $$cuda; $(PY) -m pip uninstall -y -q $$cuda; fi; fi
	$(PY) -m pip install -q -r requirements/$(BUILD).txt
	$(PY) -m pip install -q --no-deps -e .
	@echo $(BUILD) $$($(call VERSION_OF,$(PY))) > $@

doctor: $(STAMP) ## check the installation: versions, GPUs and CUDA libraries, dataset, threads
	$(PY) -m bnexp.runtime.doctor

data: $(STAMP) ## make Fashion-MNIST available (apt package, else official download) and verify it
	$(PY) -m bnexp.data fetch

run: data ## train with the default config (add ARGS="bn=gluon lr=0.1" for overrides)
	$(PY) -m bnexp.run $(ARGS)

test: data ## run the test suite
	$(PY) -m pytest $(ARGS)

sweep: data ## the convergence sweep (bn none/gluon x 5 seeds, ~11 min) and its report with speedups
	$(PY) -m bnexp.run --multirun experiment=convergence $(ARGS)

figures: data ## rerun the study presets (~75 min on 2 cores) and copy figures and summaries into docs/ (PRESETS="convergence mechanism" for some)
	$(PY) scripts/figures.py $(PRESETS)

bench: data ## training throughput of none/scratch/gluon against a textbook loop and the source loop
	$(PY) -m bnexp.bench $(ARGS)

tensorboard: $(STAMP) ## TensorBoard on outputs/ at http://127.0.0.1:6006 (PORT=... to change)
	$(VENV)/bin/tensorboard --logdir outputs --host 127.0.0.1 --port $(PORT)

slurm-up: ## start a one-node SLURM cluster on this machine, installing it if needed (root, Debian; docs/slurm.md)
	scripts/slurm.sh up

slurm-down: ## stop the SLURM cluster that slurm-up started (and cancel its jobs)
	scripts/slurm.sh down
