#!/usr/bin/env bash
# The local cloud's own programs, built once from the Go module proxy and cached by version under
# $HELIX_CACHE_DIR/localcloud/bin (default ~/.cache/helix): AWS's EC2 metadata mock.
set -euo pipefail
CACHE_DIR="${HELIX_CACHE_DIR:-$HOME/.cache/helix}"
IMDS_MOCK_VERSION="${HELIX_IMDS_MOCK_VERSION:-v1.13.0}"
BIN="$CACHE_DIR/localcloud/bin"
mkdir -p "$BIN"
stamp="$BIN/.ec2-metadata-mock-$IMDS_MOCK_VERSION"
if [[ ! -x "$BIN/ec2-metadata-mock" || ! -f "$stamp" ]]; then
    echo "[localcloud] building ec2-metadata-mock $IMDS_MOCK_VERSION (about 40 s)" >&2
    GOTOOLCHAIN=local GOFLAGS= GOBIN="$BIN" go install \
        "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$IMDS_MOCK_VERSION"
    rm -f "$BIN"/.ec2-metadata-mock-* && touch "$stamp"
fi
