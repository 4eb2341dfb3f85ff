#!/usr/bin/env bash
# The hypervisor of the local cloud: a node is a systemd-nspawn container booted from the cached
# rootfs (localcloud/rootfs.sh) in a network namespace the reconciler made (localcloud/reconciler.py).
#
# Usage:
#   localcloud/node.sh root NAME          mount the node's root (rootfs below, its own changes above); print it
#   localcloud/node.sh boot NAME NETNS    boot it in /run/netns/NETNS, in cgroups of its own; print nspawn's pid
#   localcloud/node.sh down NAME          stop it; remove its cgroups, mounts and files
#   localcloud/node.sh list               nodes that are running
#
# Environment: HELIX_CACHE_DIR (default ~/.cache/helix), HELIX_LOCALCLOUD_STATE (the data plane's directory, default /run/helix-localcloud/default).
#
# What a node needs on this machine (docs/local-cloud.md, ../shared/TESTBED.md):
#  - --keep-unit --register=no: there is no systemd on the host;
#  - --capability=all and the keyring/bpf/mount/swap system calls: runc inside;
#  - SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0, then a unit inside the node (helix-node-setup.service) that
#    remounts the v1 controllers writable, so that kubelet and runc can make cgroups. Each node runs
#    in its own cgroups <this script's cgroup>/helix/<NAME> (made here, removed on `down`), which are
#    the root of its cgroup namespace; no other cgroup is touched;
#  - fake values for the few global kernel settings kubelet insists on (it would otherwise try to
#    write them and fail on the read-only /proc/sys): bind-mounted files, the host's are untouched.
set -euo pipefail

STATE="${HELIX_LOCALCLOUD_STATE:-/run/helix-localcloud/default}"
CGROUP_TOP=helix
# unified and systemd: the cgroup2 and name=systemd hierarchies of the host's hybrid layout (no
# controllers). nspawn puts the node's systemd in <nspawn's own cgroup there>/payload; when nspawn sat in
# the host's root, every node shared one payload, and one node removing /system.slice/<unit> there made
# the same unit of another fail to start (219/CGROUP; when that was systemd-user-sessions,
# /run/nologin stayed and SSH refused every login).
CONTROLLERS=(unified systemd cpu cpuacct cpuset memory pids blkio devices freezer hugetlb net_cls net_prio perf_event)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[node] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

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
    own="$(awk -F: -v c="$c" '$2 == c || $2 == "name=" c || ($2 == "" && c == "unified") {print $3}' /proc/self/cgroup)"
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

node_root() {
    local name=$1 dir="$STATE/nodes/$1" rootfs
    rootfs="$("$HERE/rootfs.sh")"
    mkdir -p "$dir"/{upper,work,root,containerd}
    mountpoint -q "$dir/root" || mount -t overlay overlay \
        -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
    install -m 0755 "$HERE/node-setup.sh" "$dir/root/usr/local/sbin/helix-node-setup"
    install -m 0644 "$HERE/helix-node-setup.service" "$dir/root/etc/systemd/system/helix-node-setup.service"
    mkdir -p "$dir/root/etc/systemd/system/sysinit.target.wants"
    ln -sf ../helix-node-setup.service "$dir/root/etc/systemd/system/sysinit.target.wants/helix-node-setup.service"
    echo "$dir/root"
}

boot() {
    local name=$1 ns=$2 dir="$STATE/nodes/$1"
    mountpoint -q "$dir/root" || die "$name: no root; run '$0 root $name' first"
    if [[ -f "$dir/pid" ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        cat "$dir/pid"
        return
    fi
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
    echo $!
}

down() {
    local name=$1 dir="$STATE/nodes/$1" pid
    if [[ -f "$dir/pid" ]]; then
        pid="$(cat "$dir/pid")"
        if kill -0 "$pid" 2>/dev/null; then
            # nspawn turns SIGTERM into an orderly shutdown of the node's systemd.
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/pid"
    fi
    cgroup_down "$dir"
    if [[ -d "$dir/root" ]]; then
        # Mounts made inside the node (containerd's snapshots) can outlive it in the host's view.
        grep -o " $dir/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    fi
    rm -rf --one-file-system "$dir"
}

case "${1:-}" in
    root) shift; [[ $# -eq 1 ]] || die "usage: root NAME"; node_root "$1" ;;
    boot) shift; [[ $# -eq 2 ]] || die "usage: boot NAME NETNS"; boot "$@" ;;
    down) shift; [[ $# -eq 1 ]] || die "usage: down NAME"; down "$1" ;;
    list) for d in "$STATE"/nodes/*/pid; do [[ -f "$d" ]] && kill -0 "$(cat "$d")" 2>/dev/null && basename "$(dirname "$d")"; done; true ;;
    *) die "usage: $0 root|boot|down|list" ;;
esac
