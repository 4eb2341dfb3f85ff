# Cluster layer tests: local nspawn nodes, real kubeadm/kubelet/containerd. See docs/cluster-testing.md.
# Included by the main Makefile, which defines BIN and PY. Needs root (Debian host).

.PHONY: node-tools node-rootfs node-images test-join-command test-cluster

# Host tools of the node harness: debootstrap (the rootfs), systemd-container (systemd-nspawn),
# gcc and libc6-dev (flanneld is built with cgo), iproute2 (bridge, netns, veth), openssh-client.
NODE_TOOLS := debootstrap systemd-container gcc libc6-dev iproute2 openssh-client

## node-tools: install the Debian packages the node harness needs on the host (apt-get, root)
node-tools:
	@missing=$$(for p in $(NODE_TOOLS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## node-rootfs: build (once) the Debian rootfs the test nodes boot from (~2 min cold, cached)
node-rootfs: node-tools
	tests/nodes/rootfs.sh

## node-images: binaries and OCI image archives for the test nodes (cached; cold: tens of minutes)
node-images: setup node-tools node-rootfs
	PY=$(CURDIR)/$(PY) tests/nodes/images.sh

## test-join-command: unit tests of the join_command module against moto
test-join-command: setup
	tools/pytest.sh tests/unit/test_join_command.py

## test-cluster: molecule scenario molecule/cluster (three nspawn nodes, kubeadm, join through S3)
test-cluster: setup node-tools node-rootfs node-images
	cd $(CURDIR) && $(BIN)/molecule test -s cluster
