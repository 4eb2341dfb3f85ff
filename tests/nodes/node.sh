#!/usr/bin/env bash
# Local test nodes: systemd-nspawn containers booted from the cached rootfs (tests/nodes/rootfs.sh),
# each in its own network namespace on a shared bridge, reached over SSH like EC2 nodes.
#
# Usage:
#   tests/nodes/node.sh up NAME INDEX PUBKEY_FILE   boot node NAME at 10.89.0.<10+INDEX>
#   tests/nodes/node.sh down NAME                   stop it; remove its netns, files and cgroups
#   tests/nodes/node.sh bridge-up | bridge-down     the shared bridge (host side 10.89.0.1/24)
#   tests/nodes/node.sh list                        nodes that are running
#
# Environment: HELIX_CACHE_DIR (default ~/.cache/helix), HELIX_NODE_BOOT_TIMEOUT (default 120 s).
#
# What the node needs on this machine (see docs/cluster-testing.md, ../shared/TESTBED.md):
#  - --keep-unit --register=no: there is no systemd on the host;
#  - --capability=all and the keyring/bpf/mount/swap system calls: runc inside;
#  - SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0, then a unit inside the node (helix-cgroups.service) that
#    remounts the v1 controllers writable, so that kubelet and runc can make cgroups. Each node runs
#    in its own cgroups <this script's cgroup>/helix/<NAME> (made here, removed on `down`), which are
#    the root of its cgroup namespace; no other cgroup is touched;
#  - fake values for the few global kernel settings kubelet insists on (it would otherwise try to
#    write them and fail on the read-only /proc/sys): bind-mounted files, the host's are untouched.
set -euo pipefail

CACHE_DIR="${HELIX_CACHE_DIR:-$HOME/.cache/helix}"
STATE="/run/helix-nodes"
BRIDGE=helixbr0
SUBNET_PREFIX=10.89.0
CGROUP_TOP=helix
CONTROLLERS=(cpu cpuacct cpuset memory pids blkio devices freezer hugetlb net_cls net_prio perf_event)
BOOT_TIMEOUT="${HELIX_NODE_BOOT_TIMEOUT:-120}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[node] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

bridge_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$SUBNET_PREFIX.1/24" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
}

bridge_down() {
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        if [[ -n "$(ls /sys/class/net/$BRIDGE/brif 2>/dev/null)" ]]; then
            log "bridge $BRIDGE still has ports; leaving it"
        else
            ip link del "$BRIDGE"
        fi
    fi
}

# Controllers mounted on the host under /sys/fs/cgroup/<name>.
host_controllers() {
    local c
    for c in "${CONTROLLERS[@]}"; do
        mountpoint -q "/sys/fs/cgroup/$c" 2>/dev/null && echo "$c"
    done
}

# The node's cgroup in controller $1: a child of the cgroup this script runs in, so that what the
# workplace accounts to this session (its memory cgroup) still holds the node.
node_cgroup() {
    local c=$1 name=$2 own
    own="$(awk -F: -v c="$c" '$2 == c {print $3}' /proc/self/cgroup)"
    echo "/sys/fs/cgroup/$c${own%/}/$CGROUP_TOP/$name"
}

# Make /helix/<name> under our own cgroup in every controller; list them in $dir/cgroups.
cgroup_up() {
    local name=$1 dir=$2 c path
    : > "$dir/cgroups"
    for c in $(host_controllers); do
        path="$(node_cgroup "$c" "$name")"
        mkdir -p "$path"
        if [[ "$c" == cpuset ]]; then
            # v1 cpuset children start empty; give them their parent's CPUs and memory nodes.
            for p in "$(dirname "$path")" "$path"; do
                [[ -n "$(cat "$p/cpuset.cpus")" ]] || cat "$(dirname "$p")/cpuset.cpus" > "$p/cpuset.cpus"
                [[ -n "$(cat "$p/cpuset.mems")" ]] || cat "$(dirname "$p")/cpuset.mems" > "$p/cpuset.mems"
            done
        fi
        echo "$path" >> "$dir/cgroups"
    done
}

# Remove the cgroups listed by cgroup_up, deepest first; processes still inside are killed.
cgroup_down() {
    local dir=$1 root pid
    [[ -f "$dir/cgroups" ]] || return 0
    while read -r root; do
        [[ -d "$root" ]] || continue
        for pid in $(find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [[ -d "$root" ]] || break
            sleep 0.5
        done
        [[ -d "$root" ]] && log "could not remove cgroup $root"
        rmdir "$(dirname "$root")" 2>/dev/null || true   # /helix, once no node is left in it
    done < "$dir/cgroups"
}

write_node_files() {
    local name=$1 ip=$2 pubkey=$3 root=$4
    echo "$name" > "$root/etc/hostname"
    printf '127.0.0.1 localhost\n%s %s\n' "$ip" "$name" > "$root/etc/hosts"
    # The other nodes resolve through DNS-less /etc/hosts entries written by molecule's prepare.
    tr -d '-' < /proc/sys/kernel/random/uuid > "$root/etc/machine-id"
    mkdir -p "$root/root/.ssh"
    chmod 700 "$root/root/.ssh"
    cp "$pubkey" "$root/root/.ssh/authorized_keys"
    chmod 600 "$root/root/.ssh/authorized_keys"
    ssh-keygen -A -f "$root" >/dev/null
    # Static address inside the node's network namespace is set from the host (see up);
    # nothing in the node configures networking.
    echo "nameserver $SUBNET_PREFIX.1" > "$root/etc/resolv.conf"
    install -m 0755 "$HERE/node-setup.sh" "$root/usr/local/sbin/helix-node-setup"
    cat > "$root/etc/systemd/system/helix-node-setup.service" <<EOF
[Unit]
Description=helix test node: writable cgroup controllers and kubelet's kernel settings
DefaultDependencies=no
After=local-fs.target
Before=containerd.service kubelet.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/helix-node-setup

[Install]
WantedBy=sysinit.target
EOF
    mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
    ln -sf ../helix-node-setup.service "$root/etc/systemd/system/sysinit.target.wants/helix-node-setup.service"
}

up() {
    local name=$1 index=$2 pubkey=$3
    local ip="$SUBNET_PREFIX.$((10 + index))" dir="$STATE/$name" ns="helix-$name" veth="hx-$name"
    [[ ${#veth} -le 15 ]] || die "node name '$name' too long for an interface name"
    [[ -f "$pubkey" ]] || die "no public key at $pubkey"
    local rootfs
    rootfs="$("$HERE/rootfs.sh")"
    if [[ -f "$dir/pid" ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        log "$name already running (pid $(cat "$dir/pid"))"
        echo "$ip"
        return
    fi
    local start=$SECONDS
    bridge_up
    mkdir -p "$dir"/{upper,work,root,containerd}
    mountpoint -q "$dir/root" || mount -t overlay overlay \
        -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
    write_node_files "$name" "$ip" "$pubkey" "$dir/root"

    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$BRIDGE" up
    fi
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$SUBNET_PREFIX.1"

    cgroup_up "$name" "$dir"

    # /var/lib/containerd must not be on the overlay root: containerd's overlayfs snapshotter
    # cannot put its upper directories on an overlayfs.
    # The launcher moves itself into the node's cgroups, then becomes nspawn: the node's cgroup
    # namespace is rooted there, so kubelet inside sees (and makes cgroups in) its own subtree only.
    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0 SYSTEMD_NSPAWN_API_VFS_WRITABLE=network setsid sh -c \
        'for f in $(sed "s|$|/cgroup.procs|" "$0"); do echo $$ > "$f"; done; exec "$@"' \
        "$dir/cgroups" systemd-nspawn \
        -D "$dir/root" -M "$name" --register=no --keep-unit -b \
        --network-namespace-path="/run/netns/$ns" \
        --capability=all --system-call-filter="add_key keyctl bpf @mount @swap" \
        --bind="$dir/containerd:/var/lib/containerd" \
        --bind=/dev/kmsg \
        > "$dir/console.log" 2>&1 < /dev/null &
    echo $! > "$dir/pid"

    local deadline=$((SECONDS + BOOT_TIMEOUT))
    until ssh -q -o BatchMode=yes -o ConnectTimeout=1 -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -i "${pubkey%.pub}" "root@$ip" true 2>/dev/null; do
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || die "$name: nspawn exited; see $dir/console.log"
        ((SECONDS < deadline)) || die "$name: no SSH at $ip after ${BOOT_TIMEOUT}s; see $dir/console.log"
        sleep 0.5
    done
    log "$name up at $ip in $((SECONDS - start)) s"
    echo "$ip"
}

down() {
    local name=$1 dir="$STATE/$1" ns="helix-$1" veth="hx-$1" pid
    if [[ -f "$dir/pid" ]]; then
        pid="$(cat "$dir/pid")"
        if kill -0 "$pid" 2>/dev/null; then
            # nspawn turns SIGTERM into an orderly shutdown of the node's systemd.
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/pid"
    fi
    cgroup_down "$dir"
    if [[ -d "$dir/root" ]]; then
        # Mounts made inside the node (containerd's snapshots) can outlive it in the host's view.
        grep -o " $dir/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    fi
    ip link del "$veth" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf --one-file-system "$dir"
    log "$name removed"
}

case "${1:-}" in
    up) shift; [[ $# -eq 3 ]] || die "usage: up NAME INDEX PUBKEY_FILE"; up "$@" ;;
    down) shift; [[ $# -eq 1 ]] || die "usage: down NAME"; down "$1" ;;
    bridge-up) bridge_up ;;
    bridge-down) bridge_down ;;
    list) for d in "$STATE"/*/pid; do [[ -f "$d" ]] && kill -0 "$(cat "$d")" 2>/dev/null && basename "$(dirname "$d")"; done; true ;;
    *) die "usage: $0 up|down|bridge-up|bridge-down|list" ;;
esac
