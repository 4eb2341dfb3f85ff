#!/bin/sh
# The first process of a local cloud node (node.sh boots it as PID 1): sets up what only local cloud
# nodes need, then becomes the node's systemd. Real EC2 nodes have their own kernel and a writable
# cgroup tree.
# It runs before systemd, not as a unit of it: a unit that remounted the controllers raced systemd,
# which had already made some units' cgroups in the old mounts; those units then failed with
# 219/CGROUP ("Failed to attach to cgroup /system.slice/systemd-user-sessions.service: No such file
# or directory"), and a failed systemd-user-sessions leaves /run/nologin, so SSH refused every login.
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

exec /sbin/init "$@"
