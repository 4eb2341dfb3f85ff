# The local cloud (docs/local-cloud.md): the local AWS endpoint with IAM enforced, and the EC2 data
# plane that boots its instances as nspawn nodes. Nodes need root on a Debian host.
# Included by the main Makefile, which defines BIN, PY and MOTO_PORT.

.PHONY: node-tools e2e-tools node-images localcloud-bins localcloud-up localcloud-down test-e2e

# $(call apt_install,PACKAGES): install those of the Debian packages that are missing.
apt_install = missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Host tools of the nodes: debootstrap (the rootfs), systemd-container (systemd-nspawn),
# gcc and libc6-dev (flanneld is built with cgo), iproute2 (bridge, netns, veth), openssh-client.
NODE_TOOLS := debootstrap systemd-container gcc libc6-dev iproute2 openssh-client

## node-tools: install the Debian packages the local cloud's nodes need on the host (apt-get, root)
node-tools:
	@$(call apt_install,$(NODE_TOOLS))

# What the end-to-end test runs on the host: strace (the connect() audit), Debian's chromium (the
# headless check that the ui page renders data from the api).
E2E_TOOLS := strace chromium

## e2e-tools: install the Debian packages the end-to-end test runs (apt-get, root)
e2e-tools:
	@$(call apt_install,$(E2E_TOOLS))

## node-images: the nodes' rootfs, binaries and OCI image archives (cached by version; cold: ~30 min)
node-images: setup node-tools
	PY=$(CURDIR)/$(PY) tests/nodes/images.sh

## localcloud-bins: the local cloud's own programs (metadata mock, registry, crane), from the Go module proxy (cached)
localcloud-bins:
	localcloud/bins.sh

## localcloud-up: start the local cloud on MOTO_PORT (nodes only where this machine can host them)
localcloud-up: setup
	@if localcloud/localcloud.sh can-host 2>/dev/null; then $(MAKE) --no-print-directory node-images; fi
	localcloud/localcloud.sh up $(MOTO_PORT)

## localcloud-down: stop it; every node, namespace, bridge, cgroup and metadata server goes
localcloud-down:
	localcloud/localcloud.sh down $(MOTO_PORT)

## test-e2e: the end-to-end test on a local cloud of its own (tests/e2e; skipped where no node can run)
test-e2e: setup
	@if localcloud/localcloud.sh can-host 2>/dev/null; then $(MAKE) --no-print-directory node-images e2e-tools; fi
	tools/pytest.sh tests/e2e
