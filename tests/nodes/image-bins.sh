#!/usr/bin/env bash
# Build the binaries of the node images that tests/kube/build.sh does not make, from the Go module
# proxy, cached under $HELIX_CACHE_DIR/nodes/bin/<name>-<version>:
#   kube-proxy (same module and version flags as tests/kube/build.sh), pause (a tiny Go program:
#   the real one is C, not a Go module), coredns, flannel, and the CNI plugins flannel delegates to
#   (bridge, host-local, loopback, portmap from containernetworking/plugins), the kubelet's
#   ecr-credential-provider (k8s.io/cloud-provider-aws), and the cluster addons of the local cloud:
#   metrics-server (sigs.k8s.io/metrics-server) and rancher's local-path-provisioner.
# Not built: flannel's own CNI plugin (github.com/flannel-io/cni-plugin is not served by the proxy).
set -euo pipefail
CACHE_DIR="${HELIX_CACHE_DIR:-$HOME/.cache/helix}"
K8S_VERSION="${HELIX_K8S_VERSION:-v1.34.4}"
COREDNS_VERSION="${HELIX_COREDNS_VERSION:-v1.12.1}"
FLANNEL_VERSION="${HELIX_FLANNEL_VERSION:-v0.27.4}"
CNI_PLUGINS_VERSION="${HELIX_CNI_PLUGINS_VERSION:-v1.7.1}"
# The kubelet's ECR credential provider, from the cloud-provider-aws release matching the Kubernetes minor.
CLOUD_PROVIDER_AWS_VERSION="${HELIX_CLOUD_PROVIDER_AWS_VERSION:-v1.34.4}"
# The addons (roles/cluster_addons): the releases its manifests name.
METRICS_SERVER_VERSION="${HELIX_METRICS_SERVER_VERSION:-v0.8.0}"
LOCAL_PATH_VERSION="${HELIX_LOCAL_PATH_VERSION:-v0.0.30}"
BIN="$CACHE_DIR/nodes/bin"
SRC="$CACHE_DIR/nodes/src"
K8S_MOD="$CACHE_DIR/kubernetes/$K8S_VERSION/src/kubernetes"
export GOTOOLCHAIN=local CGO_ENABLED=0
log() { printf '[image-bins] %s\n' "$*" >&2; }
mkdir -p "$BIN" "$SRC"

build() {   # name, then the command that writes $out
    local name=$1; shift
    out="$BIN/$name"
    if [[ -x "$out" ]]; then log "$name: cached"; return; fi
    local t0=$SECONDS
    log "building $name"
    "$@"
    log "$name: $((SECONDS - t0)) s"
}

kube_proxy() {
    [[ -f "$K8S_MOD/go.mod" ]] || { log "run tests/kube/build.sh kubeadm first (it prepares $K8S_MOD)"; exit 1; }
    local minor flags="-s -w" pkg
    minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    (cd "$K8S_MOD" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$flags" -o "$out.tmp" k8s.io/kubernetes/cmd/kube-proxy)
    mv "$out.tmp" "$out"
}

pause() {
    mkdir -p "$SRC/pause"
    cat > "$SRC/pause/go.mod" <<'GO'
module helix.local/pause

go 1.22
GO
    cat > "$SRC/pause/main.go" <<'GO'
// Command pause holds a pod's namespaces open, as registry.k8s.io/pause does, and reaps children.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s == syscall.SIGCHLD {
			for {
				if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
GO
    (cd "$SRC/pause" && go build -trimpath -ldflags "-s -w" -o "$out" .)
}

# `go install` refuses the module (its go.mod has replace directives): build in a writable copy of it.
ecr_credential_provider() {
    local dir copy="$SRC/cloud-provider-aws-$CLOUD_PROVIDER_AWS_VERSION"
    dir=$(GOFLAGS= go mod download -json "k8s.io/cloud-provider-aws@$CLOUD_PROVIDER_AWS_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    rm -rf "$copy" && cp -r "$dir" "$copy" && chmod -R u+w "$copy"
    (cd "$copy" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out" ./cmd/ecr-credential-provider)
    rm -rf "$copy"
}

go_install() {   # module@version [extra -ldflags]; CGO_ENABLED from the environment (flannel needs cgo)
    local gobin="$SRC/gobin-$(basename "$out")"
    GOBIN="$gobin" GOFLAGS= go install -trimpath -ldflags "-s -w ${2:-}" "$1"
    mv "$gobin/$(basename "${1%@*}")" "$out"
}

build kube-proxy-$K8S_VERSION kube_proxy
build pause pause
build coredns-$COREDNS_VERSION go_install "github.com/coredns/coredns@$COREDNS_VERSION"
# flanneld's UDP backend is cgo: with CGO_ENABLED=0 the build fails ("undefined: removeRoute").
CGO_ENABLED=1 build flannel-$FLANNEL_VERSION go_install "github.com/flannel-io/flannel@$FLANNEL_VERSION"
for p in main/bridge ipam/host-local main/loopback meta/portmap; do
    build "$(basename $p)-$CNI_PLUGINS_VERSION" go_install "github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION"
done
build ecr-credential-provider-$CLOUD_PROVIDER_AWS_VERSION ecr_credential_provider
# The version flags of each project's own build (metrics-server's Makefile, local-path's scripts/build).
build metrics-server-$METRICS_SERVER_VERSION go_install "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION" \
    "-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
build local-path-provisioner-$LOCAL_PATH_VERSION go_install "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION" \
    "-X main.VERSION=$LOCAL_PATH_VERSION"
log "binaries in $BIN"
