#!/bin/sh
# Runs inside a local cloud node at boot (helix-node-setup.service), before containerd and kubelet.
# Only local cloud nodes need this; real EC2 nodes have their own kernel and a writable cgroup tree.
set -eu

# 1. nspawn mounts the cgroup v1 controllers read-only. Mount them again, writable: they then show
#    the host's whole hierarchy, which is why kubelet gets its own cgroupRoot per node.
for c in cpu cpuacct cpuset memory pids blkio devices freezer hugetlb net_cls net_prio perf_event; do
    [ -d "/sys/fs/cgroup/$c" ] || continue
    grep -qw "^$c" /proc/cgroups || continue
    umount "/sys/fs/cgroup/$c" 2>/dev/null || true
    mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
done

# 2. kubelet checks a few global kernel settings and writes them when they differ; /proc/sys is
#    read-only here and the host's values are not ours to change. Show kubelet the values it wants.
mkdir -p /run/helix-sysctl
for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
          kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    key=${kv%%=*}; want=${kv#*=}
    [ "$(cat "/proc/sys/$key")" = "$want" ] && continue
    file="/run/helix-sysctl/$(echo "$key" | tr / .)"
    echo "$want" > "$file"
    mount --bind "$file" "/proc/sys/$key"
done

# 3. Mount propagation as on a real node (kubelet and containerd expect a shared root).
mount --make-rshared /
