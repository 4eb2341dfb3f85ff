#!/usr/bin/env bash
# Everything the test nodes install instead of packages and registry images, cached under
# $HELIX_CACHE_DIR: Kubernetes binaries (tests/kube/build.sh), the other image binaries
# (tests/nodes/image-bins.sh), and OCI image archives assembled from them (tests/nodes/oci_image.py)
# under the names kubeadm v1.34, the flannel manifest and the cluster addons ask for. One stand-in: flannel's CNI plugin
# is not served by the Go module proxy, so the `flannel-cni-plugin` image carries
# tests/nodes/flannel-cni.py under its own name (FLANNEL_CNI_IMAGE, set in molecule/cluster).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE_DIR="${HELIX_CACHE_DIR:-$HOME/.cache/helix}"
K8S_VERSION="${HELIX_K8S_VERSION:-v1.34.4}"
FLANNEL_VERSION="${HELIX_FLANNEL_VERSION:-v0.27.4}"
COREDNS_VERSION="${HELIX_COREDNS_VERSION:-v1.12.1}"
CNI_PLUGINS_VERSION="${HELIX_CNI_PLUGINS_VERSION:-v1.7.1}"
METRICS_SERVER_VERSION="${HELIX_METRICS_SERVER_VERSION:-v0.8.0}"
LOCAL_PATH_VERSION="${HELIX_LOCAL_PATH_VERSION:-v0.0.30}"
PY="${PY:-$ROOT/.venv/bin/python}"
KBIN="$CACHE_DIR/kubernetes/$K8S_VERSION/bin"
NBIN="$CACHE_DIR/nodes/bin"
OUT="$CACHE_DIR/nodes/images"
CNI="$CACHE_DIR/nodes/cni"
FLANNEL_CNI_IMAGE="${HELIX_FLANNEL_CNI_IMAGE:-helix.local/flannel-cni-plugin:stand-in}"

"$ROOT/tests/kube/build.sh" kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kubeadm kubelet
"$HERE/image-bins.sh"
ROOTFS="$("$ROOT/localcloud/rootfs.sh")"
mkdir -p "$OUT" "$CNI"
for p in bridge host-local loopback portmap; do cp -u "$NBIN/$p-$CNI_PLUGINS_VERSION" "$CNI/$p"; done

image() {   # file name, then oci_image.py arguments; skipped when the archive is newer than its inputs
    local name=$1 arg src; shift
    if [[ -s "$OUT/$name.tar" ]]; then
        local stale=
        for arg in "$HERE/oci_image.py" "$@"; do
            src=${arg%%:*}
            [[ -f "$src" && "$src" -nt "$OUT/$name.tar" ]] && stale=1
        done
        [[ -z "$stale" ]] && return 0
    fi
    "$PY" "$HERE/oci_image.py" --out "$OUT/$name.tar" "$@"
}
# iptables (nft backend) and cp from the node rootfs, with their libraries: kube-proxy and flannel
# run iptables; flannel's init containers copy files.
# The xtables directory holds iptables' match and target modules (comment, conntrack, mark, ...).
IPT=(--from-rootfs "$ROOTFS" --with-libs /usr/sbin/xtables-nft-multi --with-libs /usr/bin/cp
     --with-dir /usr/lib/x86_64-linux-gnu/xtables)
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    IPT+=(--symlink "/usr/sbin/$t:xtables-nft-multi")
done

image pause --ref registry.k8s.io/pause:3.10.1 --file "$NBIN/pause:/pause" --entrypoint /pause
image etcd --ref registry.k8s.io/etcd:3.6.5-0 --file "$KBIN/etcd:/usr/local/bin/etcd" --dir /var/lib/etcd --dir /tmp
for c in kube-apiserver kube-controller-manager kube-scheduler; do
    image "$c" --ref "registry.k8s.io/$c:$K8S_VERSION" --file "$KBIN/$c:/usr/local/bin/$c" --dir /tmp
done
image kube-proxy --ref "registry.k8s.io/kube-proxy:$K8S_VERSION" \
    --file "$NBIN/kube-proxy-$K8S_VERSION:/usr/local/bin/kube-proxy" --dir /run --dir /tmp "${IPT[@]}"
image coredns --ref "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" \
    --file "$NBIN/coredns-$COREDNS_VERSION:/coredns" --entrypoint /coredns --dir /tmp
# flanneld is built with cgo: it needs libc, which the iptables libraries above already bring.
image flannel --ref "ghcr.io/flannel-io/flannel:$FLANNEL_VERSION" \
    --file "$NBIN/flannel-$FLANNEL_VERSION:/opt/bin/flanneld" --dir /run --dir /tmp "${IPT[@]}"
# The source carries no shebang (ansible-test allows none that names python3); the image's copy does.
flannel_cni=$(mktemp -d)/flannel
{ echo '#!/usr/bin/python3'; cat "$HERE/flannel-cni.py"; } >"$flannel_cni"
image flannel-cni-plugin --ref "$FLANNEL_CNI_IMAGE" \
    --file "$flannel_cni:/flannel:0755" --from-rootfs "$ROOTFS" --with-libs /usr/bin/cp
# The cluster addons of the local cloud (roles/cluster_addons, inventories/local): metrics-server and
# rancher's local-path-provisioner under the refs of their manifests, and the helper image the
# provisioner runs to make and remove volume directories (/bin/sh with mkdir and rm, from the rootfs;
# named as what it is, not as busybox).
image metrics-server --ref "registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER_VERSION" \
    --file "$NBIN/metrics-server-$METRICS_SERVER_VERSION:/metrics-server" --entrypoint /metrics-server --dir /tmp
image local-path-provisioner --ref "docker.io/rancher/local-path-provisioner:$LOCAL_PATH_VERSION" \
    --file "$NBIN/local-path-provisioner-$LOCAL_PATH_VERSION:/usr/bin/local-path-provisioner" --dir /tmp
image local-path-helper --ref helix.local/local-path-helper:bookworm --from-rootfs "$ROOTFS" \
    --with-libs /usr/bin/dash --with-libs /usr/bin/mkdir --with-libs /usr/bin/rm \
    --symlink /usr/bin/sh:dash --symlink /bin:usr/bin --dir /tmp
echo "$OUT"
