# helix.kubeadm_aws - the two commands of the README, and what they are made of.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
COLLECTION_LINK := .collections/ansible_collections/helix/kubeadm_aws
MOTO_PORT ?= 5055
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup demo demo-destroy moto-up moto-down test lint sanity unit integration clean

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

## demo: start the local AWS endpoint and run site.yml against it
demo: setup moto-up
	AWS_CA_BUNDLE=$(CURDIR)/.cache/moto/cert.pem $(BIN)/ansible-playbook site.yml -i inventories/local

## demo-destroy: delete everything the demo made
demo-destroy: setup moto-up
	AWS_CA_BUNDLE=$(CURDIR)/.cache/moto/cert.pem $(BIN)/ansible-playbook destroy.yml -i inventories/local

moto-up: setup
	tools/moto-server.sh start $(MOTO_PORT)

moto-down:
	tools/moto-server.sh stop $(MOTO_PORT)

## test: everything CI runs - ruff, ansible-lint, ansible-test sanity, unit and integration tests, role scenarios
test: lint sanity unit integration molecule-roles galaxy-import

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --profile production

sanity: setup
	tools/sanity.sh

unit: setup
	tools/pytest.sh tests/unit

integration: setup
	tools/pytest.sh tests/integration

clean:
	rm -rf $(VENV) .collections .cache tests/output

-include mk/*.mk
