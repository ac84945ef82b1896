# testbed-hub: JupyterHub on the testbed base station.
#   make demo    a complete demo base station on this machine
#   make test    everything CI runs (.ci/run calls it)
#   make quick   lint + unit tests, for your own iterations
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
ARTIFACTS ?= artifacts
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0
# Scenarios run by `make molecule`, in this order (each one: create, prepare,
# converge, idempotence, verify, destroy). notebook_image comes early: it builds
# the notebook image and saves it in the host's cache by content hash
# ($TESTBED_CACHE_DIR, default /var/cache/testbed-hub: shared by every checkout),
# the later scenarios, runs and clones load it. Override: make molecule SCENARIOS=testbed_sim
# SCENARIOS_LATER: written, not yet run once; left out until they have passed
# (make molecule SCENARIOS=<name> runs one).
SCENARIOS_FIRST := notebook_image
SCENARIOS_LATER :=
SCENARIOS ?= $(SCENARIOS_FIRST) $(filter-out default $(SCENARIOS_FIRST) $(SCENARIOS_LATER),$(notdir $(wildcard molecule/*))) $(notdir $(wildcard molecule/default))

.PHONY: help venv host images lint docs unit unit-nist molecule e2e test quick demo demo-clean bench check-collections labextension clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

PACKAGES := testbed-hub testbed-notebook testbed-sim testbed-devtools

$(VENV)/.stamp: requirements.txt requirements-nist.txt $(foreach p,$(PACKAGES),packages/$(p)/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt $(foreach p,$(PACKAGES),-e packages/$(p))
	$(VENV)/bin/pip install -q --no-deps -r requirements-nist.txt
	touch $@

venv: $(VENV)/.stamp ## the control node's virtualenv (pinned toolchain)

host: ## Docker engine, debootstrap, Chromium... on this machine (apt, root/sudo)
	bash scripts/host-setup.sh

images: host ## local base images (debootstrap), cached by content hash
	bash scripts/build-images.sh

check-collections: venv ## installed collections satisfy requirements.yml
	python -m testbed_devtools.collections_check requirements.yml

lint: venv check-collections ## yamllint, ansible-lint (production), syntax check, ruff, role docs
	yamllint -s .
	python -m testbed_devtools.role_docs --check roles
	ansible-lint --profile production --offline
	ansible-playbook --syntax-check -i inventory/demo site.yml
	ruff check packages tests molecule scripts plugins
	ruff format --check packages tests molecule scripts plugins
	python -m testbed_devtools.import_cycles packages/*/src

labextension: ## rebuild the committed JupyterLab extension @testbed/job-parameters (needs node, npm)
	bash scripts/build-labextension.sh

docs: venv ## role README variable tables from meta/argument_specs.yml
	python -m testbed_devtools.role_docs roles

# One pytest worker per core; a test module stays on one worker (its module fixtures
# run once). UNIT_WORKERS=0 runs them in this process (for pdb).
# TEST_TIMEOUT: seconds one test may take before it fails by name with every
# thread's stack (pytest-timeout); the slowest unit test takes about 60 s.
UNIT_WORKERS ?= auto
TEST_TIMEOUT ?= 300
unit: venv ## pytest unit tests (no Docker), one worker per core
	mkdir -p $(ARTIFACTS)/junit
	pytest tests/unit -n $(UNIT_WORKERS) --dist loadscope --timeout=$(TEST_TIMEOUT) \
	  --junitxml=$(ARTIFACTS)/junit/unit.xml

# NIST's measurement needs NumPy < 2 and setuptools < 80 (the simulator's environment
# on a station, testbed_sim_nist_requirements): tests/nist run in a virtualenv of their
# own, built from tests/nist/requirements.txt, with this tree's sources on PYTHONPATH.
NIST_VENV ?= .venv-nist
$(NIST_VENV)/.stamp: tests/nist/requirements.txt
	rm -rf $(NIST_VENV)
	$(PYTHON) -m venv $(NIST_VENV)
	$(NIST_VENV)/bin/pip install -q -r tests/nist/requirements.txt
	touch $@

unit-nist: $(NIST_VENV)/.stamp ## NIST's measurement and evaluation on a small generated set (NumPy<2 venv)
	mkdir -p $(ARTIFACTS)/junit
	PYTHONPATH=$(CURDIR)/packages/testbed-sim/src:$(CURDIR)/packages/testbed-notebook/src \
	  $(NIST_VENV)/bin/python -m pytest tests/nist -p no:cacheprovider --timeout=$(TEST_TIMEOUT) --junitxml=$(ARTIFACTS)/junit/nist.xml

molecule: venv images ## every Molecule scenario (molecule test)
	bash scripts/molecule-all.sh $(SCENARIOS)

quick: lint unit unit-nist ## lint + unit tests

test: ## everything CI runs: host set-up, lint, unit, Molecule, e2e, summary
	rm -rf $(ARTIFACTS)/junit
	$(MAKE) host venv
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) unit-nist
	$(MAKE) molecule
	python -m testbed_devtools.junit_summary --allowed-skips tests/skips.yml $(ARTIFACTS)/junit/*.xml

demo: venv images ## bring up (or update) the demo base station
	ansible-playbook -i inventory/demo playbooks/demo.yml

e2e: venv ## browser + security tests against the running demo (make demo first)
	pytest tests/e2e -v --junitxml=$(ARTIFACTS)/junit/e2e-demo.xml

bench: venv images ## converge a disposable base station and print the figures (JSON in artifacts/bench)
	python -m testbed_devtools.bench $(BENCH_ARGS)

demo-clean: venv ## remove the demo base station and its volumes
	ansible-playbook -i inventory/demo playbooks/demo-clean.yml

clean: ## remove the virtualenv, caches and artifacts (not Docker images, not the host cache: rm -rf /var/cache/testbed-hub)
	rm -rf $(VENV) $(NIST_VENV) .cache $(ARTIFACTS) .pytest_cache .ruff_cache
