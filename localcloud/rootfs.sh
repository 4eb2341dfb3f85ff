#!/usr/bin/env bash
# Build (once) the Debian root filesystem the local test nodes boot from, cached outside the
# work tree. Everything a node needs that does not come from our roles is in it: systemd, sshd,
# Python for Ansible, containerd and runc from Debian, the tools kubeadm's preflight looks for.
#
# Usage: localcloud/rootfs.sh            -> prints the rootfs directory
# Environment:
#   HELIX_CACHE_DIR      cache root (default ~/.cache/helix)
#   HELIX_NODE_SUITE     Debian suite (default bookworm)
#   HELIX_NODE_MIRROR    Debian mirror (default: the one apt on this machine uses)
set -euo pipefail

CACHE_DIR="${HELIX_CACHE_DIR:-$HOME/.cache/helix}"
SUITE="${HELIX_NODE_SUITE:-bookworm}"
PACKAGES=(
    systemd systemd-sysv dbus iproute2 iputils-ping openssh-server python3 python3-apt
    python3-boto3 sudo containerd runc iptables conntrack socat ethtool kmod ca-certificates procps util-linux
)
# Bump when PACKAGES or the setup below change: a new version is a new cache entry.
VERSION=2
ROOTFS="$CACHE_DIR/nodes/rootfs-$SUITE-v$VERSION"

log() { printf '[node-rootfs] %s\n' "$*" >&2; }

if [[ -f "$ROOTFS/.complete" ]]; then
    log "cached: $ROOTFS"
    echo "$ROOTFS"
    exit 0
fi

for tool in debootstrap systemd-nspawn; do
    command -v "$tool" >/dev/null || { log "missing $tool: apt-get install debootstrap systemd-container"; exit 1; }
done

mirror="${HELIX_NODE_MIRROR:-http://deb.debian.org/debian}"

tmp="$ROOTFS.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$ROOTFS")"
start=$SECONDS
log "debootstrap $SUITE from $mirror into $tmp"
debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" "$SUITE" "$tmp" "$mirror" >&2

# Node-independent setup. Per-node identity (hostname, machine-id, SSH host keys, address)
# is written into each node's copy by localcloud/reconciler.py.
rm -f "$tmp"/etc/ssh/ssh_host_*
: > "$tmp/etc/machine-id"
echo 'PermitRootLogin prohibit-password' > "$tmp/etc/ssh/sshd_config.d/helix.conf"
echo 'UseDNS no' >> "$tmp/etc/ssh/sshd_config.d/helix.conf"
# containerd is configured by the node_prep role; do not let Debian's unit start it before.
chroot "$tmp" systemctl disable containerd.service >/dev/null 2>&1 || true
chroot "$tmp" systemctl enable ssh.service >/dev/null 2>&1 || true
# Units that cannot work in a container on this machine.
for unit in systemd-networkd-wait-online.service getty@tty1.service console-getty.service; do
    chroot "$tmp" systemctl mask "$unit" >/dev/null 2>&1 || true
done
apt-get -o Dir="$tmp" clean >/dev/null 2>&1 || rm -rf "$tmp"/var/cache/apt/archives/*.deb
touch "$tmp/.complete"
mv "$tmp" "$ROOTFS"
log "built $ROOTFS in $((SECONDS - start)) s"
echo "$ROOTFS"
