# helix.kubeadm_aws - the two commands of the README, and what they are made of.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
COLLECTION_LINK := .collections/ansible_collections/helix/kubeadm_aws
MOTO_PORT ?= 5055
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup demo demo-destroy test lint sanity unit integration clean

help:
	@grep -hE '^## ' $(MAKEFILE_LIST) | sed 's/^## //'

## setup: .venv with the pinned Python packages; the collection importable from the checkout
setup: $(VENV)/.installed $(COLLECTION_LINK)

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../.. $@

# Where this machine cannot host nodes, only the AWS-side layers run (localcloud.sh can-host says why).
LOCAL_PLAYBOOK = eval "$$(localcloud/localcloud.sh env $(MOTO_PORT))" && \
	skip=$$(localcloud/localcloud.sh can-host >/dev/null 2>&1 || echo '-e lifecycle_skip_layers=cluster,application') && \
	$(BIN)/ansible-playbook -i inventories/local $$skip

# Written by the application layer (the ui's URL); inventories/local names the cluster helix-demo.
DEMO_URL_FILE = $${XDG_STATE_HOME:-$$HOME/.local/state}/helix/helix-demo/app-url

## demo: start the local cloud and run site.yml on it: every layer, from an empty account to the app
demo: setup localcloud-up
	$(LOCAL_PLAYBOOK) site.yml
	@if [ -s $(DEMO_URL_FILE) ]; then $(PY) tools/app_round_trip.py --url-file $(DEMO_URL_FILE); fi

## demo-destroy: delete everything the demo made (the local cloud keeps running: make localcloud-down)
demo-destroy: setup localcloud-up
	$(LOCAL_PLAYBOOK) destroy.yml

## test: everything CI runs - ruff, ansible-lint, ansible-test sanity, unit and integration tests, role scenarios, galaxy-import, the end-to-end test on the local cloud
test: lint sanity unit integration molecule-roles galaxy-import test-e2e

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --profile production

sanity: setup
	tools/sanity.sh

# The ecr_image tests push to the local cloud's registry (localcloud/bins.sh builds it, cached).
unit: setup localcloud-bins
	tools/pytest.sh tests/unit

integration: setup
	tools/pytest.sh tests/integration

clean:
	rm -rf $(VENV) .collections .cache tests/output

-include mk/*.mk
