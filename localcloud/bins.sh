#!/usr/bin/env bash
# The local cloud's own programs, built once from the Go module proxy and cached by version under
# $HELIX_CACHE_DIR/localcloud/bin (default ~/.cache/helix): AWS's EC2 metadata mock, distribution's
# registry (ECR's data plane, localcloud/registry.sh) and go-containerregistry's crane (a registry
# client for checks and for pushing images to it).
#
#   localcloud/bins.sh [NAME...]    build those (ec2-metadata-mock registry crane), by default all
set -euo pipefail
CACHE_DIR="${HELIX_CACHE_DIR:-$HOME/.cache/helix}"
IMDS_MOCK_VERSION="${HELIX_IMDS_MOCK_VERSION:-v1.13.0}"
REGISTRY_VERSION="${HELIX_REGISTRY_VERSION:-v3.1.2}"
CRANE_VERSION="${HELIX_CRANE_VERSION:-v0.22.1}"
BIN="$CACHE_DIR/localcloud/bin"
mkdir -p "$BIN"
wanted="${*:-ec2-metadata-mock registry crane}"

# build NAME VERSION PACKAGE ABOUT: go install PACKAGE@VERSION into $BIN unless that version is there.
build() {
    local name=$1 version=$2 package=$3 about=$4
    [[ " $wanted " == *" $name "* ]] || return 0
    local stamp="$BIN/.$name-$version"
    if [[ ! -x "$BIN/$name" || ! -f "$stamp" ]]; then
        echo "[localcloud] building $name $version ($about)" >&2
        GOTOOLCHAIN=local GOFLAGS= GOBIN="$BIN" go install "$package@$version"
        rm -f "$BIN/.$name-"* && touch "$stamp"
    fi
}

build ec2-metadata-mock "$IMDS_MOCK_VERSION" github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock "about 40 s"
build registry "$REGISTRY_VERSION" github.com/distribution/distribution/v3/cmd/registry "1 to 3 min"
build crane "$CRANE_VERSION" github.com/google/go-containerregistry/cmd/crane "about 1 min"
