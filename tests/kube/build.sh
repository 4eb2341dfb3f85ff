#!/usr/bin/env bash
# Build Kubernetes components (and etcd, kwok) from source through the Go module
# proxy, cached by version outside the work tree.
#
# Usage: tests/kube/build.sh [component...]
#   components: kube-apiserver kube-controller-manager kube-scheduler kubectl
#               kubeadm kubelet etcd kwok
#   default:    kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok
#
# Environment:
#   HELIX_K8S_VERSION   Kubernetes release to build            (default v1.34.4)
#   HELIX_ETCD_VERSION  etcd release (go.etcd.io/etcd/server/v3) (default v3.6.5,
#                       the version kubeadm v1.34.x deploys)
#   HELIX_KWOK_VERSION  kwok release (sigs.k8s.io/kwok)         (default v0.8.0)
#   HELIX_CACHE_DIR     cache root                              (default ~/.cache/helix)
#   HELIX_KUBE_REBUILD  1 = rebuild the named components even if cached (the
#                       new binary replaces the old one atomically)
#
# Output: $HELIX_CACHE_DIR/kubernetes/<version>/bin/<component>
# A binary that already exists there is not rebuilt (delete it to force a rebuild).
# The temporary Go modules used for building live in
# $HELIX_CACHE_DIR/kubernetes/<version>/src/ ; GOPATH and GOCACHE stay at their
# defaults (outside the repository).
set -euo pipefail

K8S_VERSION="${HELIX_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${HELIX_ETCD_VERSION:-v3.6.5}"
KWOK_VERSION="${HELIX_KWOK_VERSION:-v0.8.0}"
CACHE_DIR="${HELIX_CACHE_DIR:-$HOME/.cache/helix}"
ROOT="$CACHE_DIR/kubernetes/$K8S_VERSION"
BIN="$ROOT/bin"
SRC="$ROOT/src"

ALL_COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubectl kubeadm kubelet etcd kwok"
DEFAULT_COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok"

log() { printf '[kube-build] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not installed (need Go >= 1.24)"

# v1.34.4 -> major 1, minor 34, staging modules v0.34.4
[[ "$K8S_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)(-[0-9A-Za-z.-]+)?$ ]] \
    || die "HELIX_K8S_VERSION must look like v1.MINOR.PATCH, got '$K8S_VERSION'"
K8S_MINOR="${BASH_REMATCH[1]}"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

if [[ $# -eq 0 ]]; then
    set -- $DEFAULT_COMPONENTS
fi
for c in "$@"; do
    case " $ALL_COMPONENTS " in
        *" $c "*) ;;
        *) die "unknown component '$c' (known: $ALL_COMPONENTS)" ;;
    esac
done

# Never let the go command download another toolchain; use what is installed.
export GOTOOLCHAIN=local
export CGO_ENABLED=0
# Keep whatever GOFLAGS the environment has (e.g. -buildvcs=false) and add -mod=mod.
BUILD_GOFLAGS="$(go env GOFLAGS) -mod=mod"

mkdir -p "$BIN" "$SRC"

missing=()
for c in "$@"; do
    if [[ -x "$BIN/$c" && "${HELIX_KUBE_REBUILD:-0}" != 1 ]]; then
        log "$c: cached at $BIN/$c"
    else
        missing+=("$c")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    log "nothing to build for $K8S_VERSION"
    exit 0
fi

# One build at a time per cache directory (CI and a developer may race).
exec 9>"$ROOT/.build.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

now() { date +%s; }
declare -A TOOK=()

# ---------------------------------------------------------------------------
# Kubernetes: temporary module requiring k8s.io/kubernetes, staging modules
# replaced by their published versions.
# ---------------------------------------------------------------------------
K8S_MOD="$SRC/kubernetes"
prepare_k8s_module() {
    [[ -f "$K8S_MOD/.ready" ]] && return 0
    local t0; t0=$(now)
    log "preparing Go module for k8s.io/kubernetes@$K8S_VERSION (staging modules $STAGING_VERSION)"
    mkdir -p "$K8S_MOD"
    # Fetches k8s.io/kubernetes' go.mod (and the module zip) through the proxy.
    local info upstream_mod
    info="$(cd "$K8S_MOD" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$K8S_VERSION")" \
        || die "cannot download k8s.io/kubernetes@$K8S_VERSION: $info"
    upstream_mod="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "$upstream_mod" ]] || die "go.mod of k8s.io/kubernetes@$K8S_VERSION not found (got '$upstream_mod')"
    # Release time of the tag, used as buildDate (reproducible builds).
    local info_file
    info_file="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p')"
    if [[ -f "$info_file" ]]; then
        sed -n 's/.*"Time": *"\([0-9T:-]*\)[^"]*".*/\1Z/p' "$info_file" > "$K8S_MOD/.build-date"
    fi

    # Staging modules: lines 'k8s.io/xxx => ./staging/src/k8s.io/xxx'.
    local staging
    staging="$(sed -n 's#^[[:space:]]*\([^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$upstream_mod")"
    [[ -n "$staging" ]] || die "no staging replace directives found in $upstream_mod"
    # Mirror the upstream go/godebug lines: GODEBUG defaults come from the main module.
    local go_line godebug_line
    go_line="$(grep -m1 '^go ' "$upstream_mod" || echo 'go 1.24.0')"
    godebug_line="$(grep -m1 '^godebug ' "$upstream_mod" || true)"
    {
        echo "// Generated by tests/kube/build.sh; builds k8s.io/kubernetes $K8S_VERSION."
        echo "module helix.local/kubernetes-build"
        echo
        echo "$go_line"
        [[ -n "$godebug_line" ]] && echo "$godebug_line"
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        echo "replace ("
        local m
        for m in $staging; do
            echo "	$m => $m $STAGING_VERSION"
        done
        echo ")"
    } > "$K8S_MOD/go.mod"
    : > "$K8S_MOD/go.sum"
    touch "$K8S_MOD/.ready"
    TOOK[prepare-kubernetes]=$(( $(now) - t0 ))
}

k8s_ldflags() {
    local build_date=""
    [[ -s "$K8S_MOD/.build-date" ]] && build_date="$(head -n1 "$K8S_MOD/.build-date")"
    [[ "$build_date" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$ ]] || build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    local flags="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$K8S_VERSION"
        flags+=" -X $pkg.gitMajor=1"
        flags+=" -X $pkg.gitMinor=$K8S_MINOR"
        flags+=" -X $pkg.gitTreeState=clean"
        # The tag's commit is not known offline; empty beats the '$Format:%H$' placeholder.
        flags+=" -X $pkg.gitCommit="
        flags+=" -X $pkg.buildDate=$build_date"
    done
    printf '%s' "$flags"
}

build_k8s() {
    local c="$1"
    prepare_k8s_module
    local t0; t0=$(now)
    log "building $c $K8S_VERSION"
    (cd "$K8S_MOD" && GOFLAGS="$BUILD_GOFLAGS" go build -trimpath \
        -ldflags "$(k8s_ldflags)" \
        -o "$BIN/.$c.tmp" "k8s.io/kubernetes/cmd/$c") || die "go build of $c failed"
    mv -f "$BIN/.$c.tmp" "$BIN/$c"
    TOOK[$c]=$(( $(now) - t0 ))
}

# ---------------------------------------------------------------------------
# etcd: tiny main calling etcdmain.Main (the server module's own main package
# cannot be 'go install'ed because its go.mod has relative replace directives).
# ---------------------------------------------------------------------------
build_etcd() {
    local t0; t0=$(now)
    local mod="$SRC/etcd-$ETCD_VERSION"
    log "building etcd $ETCD_VERSION"
    mkdir -p "$mod"
    if [[ ! -f "$mod/main.go" ]]; then
        cat > "$mod/go.mod" <<EOF
// Generated by tests/kube/build.sh; builds etcd $ETCD_VERSION.
module helix.local/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
        : > "$mod/go.sum"
        cat > "$mod/main.go" <<'EOF'
// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
    fi
    (cd "$mod" && GOFLAGS="$BUILD_GOFLAGS" go build -trimpath \
        -ldflags "-s -w" -o "$BIN/.etcd.tmp" .) || die "go build of etcd failed"
    mv -f "$BIN/.etcd.tmp" "$BIN/etcd"
    TOOK[etcd]=$(( $(now) - t0 ))
}

# ---------------------------------------------------------------------------
# kwok: plain module build of sigs.k8s.io/kwok/cmd/kwok at a fixed version.
# ---------------------------------------------------------------------------
build_kwok() {
    local t0; t0=$(now)
    local gobin="$SRC/kwok-$KWOK_VERSION-bin"
    log "building kwok $KWOK_VERSION"
    mkdir -p "$gobin"
    # 'go install pkg@version' ignores any go.mod in the current directory; run
    # it from the cache dir so nothing is written into the repository.
    (cd "$SRC" && GOBIN="$gobin" GOFLAGS="$(go env GOFLAGS)" go install -trimpath \
        -ldflags "-s -w" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION") || die "go install of kwok failed"
    mv -f "$gobin/kwok" "$BIN/kwok"
    TOOK[kwok]=$(( $(now) - t0 ))
}

total0=$(now)
for c in "${missing[@]}"; do
    if [[ -x "$BIN/$c" && "${HELIX_KUBE_REBUILD:-0}" != 1 ]]; then   # built meanwhile by a concurrent run
        log "$c: cached at $BIN/$c"
        continue
    fi
    case "$c" in
        etcd) build_etcd ;;
        kwok) build_kwok ;;
        *) build_k8s "$c" ;;
    esac
    log "$c: built in ${TOOK[$c]}s"
done
total=$(( $(now) - total0 ))

log "summary (seconds, wall clock; Go build cache shared between components):"
for k in prepare-kubernetes "${missing[@]}"; do
    [[ -n "${TOOK[$k]:-}" ]] && printf '[kube-build]   %-24s %5ss\n' "$k" "${TOOK[$k]}" >&2
done
printf '[kube-build]   %-24s %5ss\n' "total" "$total" >&2
log "binaries in $BIN"
