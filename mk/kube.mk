# Kubernetes test binaries and the local control-plane harness.
# Included by the main Makefile, which defines VENV and PY.
# See docs/kubernetes-harness.md.
#
# Binaries are cached per version in
#   $(HELIX_CACHE_DIR or ~/.cache/helix)/kubernetes/$(HELIX_K8S_VERSION or v1.34.4)/bin
# and never rebuilt while present.

KUBE_BUILD ?= tests/kube/build.sh

.PHONY: kube-bins node-bins kube-test

## kube-bins: build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok
kube-bins:
	$(KUBE_BUILD)

## node-bins: build kubeadm, kubelet, kubectl (for real nodes)
node-bins:
	$(KUBE_BUILD) kubeadm kubelet kubectl

## kube-test: self-test of the local control-plane harness
kube-test: setup kube-bins
	$(PY) -m pytest tests/kube -q
