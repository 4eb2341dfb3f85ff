# The execution environment's build context: the collection built from this checkout, then
# `ansible-builder create` (no container engine needed). Build the image from .cache/ee/context with
# podman or docker, or with `ansible-builder build` (docs/awx.md).
# Included by the main Makefile, which defines BIN.

EE_DIR := .cache/ee
# A fixed name, so that execution-environment.yml can name it whatever galaxy.yml's version is.
EE_ARTIFACT := $(EE_DIR)/helix-kubeadm_aws.tar.gz

.PHONY: ee

## ee: build the collection artifact into .cache/ee and the EE build context into .cache/ee/context
ee: setup
	rm -rf $(EE_DIR) && mkdir -p $(EE_DIR)
	$(BIN)/ansible-galaxy collection build --force --output-path $(EE_DIR)/ .
	mv $(EE_DIR)/helix-kubeadm_aws-*.tar.gz $(EE_ARTIFACT)
	$(BIN)/ansible-builder create -f execution-environment.yml -c $(EE_DIR)/context
	test -f $(EE_DIR)/context/_build/collections/$(notdir $(EE_ARTIFACT))
