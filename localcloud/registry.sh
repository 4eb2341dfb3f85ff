#!/usr/bin/env bash
# ECR's data plane for the local cloud: distribution's registry (localcloud/bins.sh builds it) standing
# in for <account>.dkr.ecr.<region>.amazonaws.com. docs/local-cloud-registry.md.
#
#   localcloud/registry.sh start PORT [MOTO_PORT]   serve https://127.0.0.1:PORT/v2/
#   localcloud/registry.sh stop PORT                 stop it; its images go with it
#
# MOTO_PORT: the port of the local AWS endpoint, started with IAM enforced (tools/moto-server.sh start
# MOTO_PORT --enforce-iam); default PORT-1, as localcloud/localcloud.sh places the registry.
#
# The registry speaks TLS with the endpoint's own certificate (.cache/moto/cert.pem, whose names include
# *.dkr.ecr.<region>.amazonaws.com and 127.0.0.1) and accepts exactly the credentials the endpoint's
# ecr:GetAuthorizationToken issues: user AWS and the token's password, fetched at start with the
# endpoint's administrator keys (.cache/moto/admin-MOTO_PORT.env) and kept in an htpasswd file as a
# bcrypt hash. Deleting manifests and blobs is enabled. Everything it keeps - configuration, htpasswd,
# images - is under .cache/localcloud/registry-PORT/, removed on stop; its pid and log are
# .cache/localcloud/registry-PORT.pid and .log beside it. Beside it runs localcloud/ecr_sync.py (on
# PORT+1000, loopback), which records every manifest pushed or deleted in the endpoint's ECR, so that
# DescribeImages sees what the registry holds, as on AWS.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
action=${1:-} port=${2:-}
usage() { echo "usage: $0 start PORT [MOTO_PORT] | stop PORT" >&2; exit 2; }
[[ "$port" =~ ^[0-9]+$ ]] || usage
moto_port=${3:-$((port - 1))}
[[ "$moto_port" =~ ^[0-9]+$ ]] || usage
CACHE_DIR="${HELIX_CACHE_DIR:-$HOME/.cache/helix}"
REGISTRY="$CACHE_DIR/localcloud/bin/registry"
state_dir=$ROOT/.cache/localcloud
dir=$state_dir/registry-$port
pid_file=$state_dir/registry-$port.pid
log=$state_dir/registry-$port.log
# localcloud/ecr_sync.py: records what is pushed to the registry in the endpoint's ECR.
sync_port=$((port + 1000))
sync_pid_file=$state_dir/ecr-sync-$port.pid
cert=$ROOT/.cache/moto/cert.pem key=$ROOT/.cache/moto/key.pem
admin_env=$ROOT/.cache/moto/admin-$moto_port.env
url=https://127.0.0.1:$port

# alive PID: the process exists and has not exited (a child of this shell that exited is a zombie until reaped).
alive() { local state; state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ "$state" != Z* ]]; }
running() { [[ -f "$pid_file" ]] && alive "$(cat "$pid_file")"; }
# The registry is up when /v2/ asks for credentials.
asks_credentials() {
    [[ "$(curl -sS --cacert "$cert" -o /dev/null -w '%{http_code}' "$url/v2/" 2>/dev/null)" == 401 ]]
}

# The htpasswd line for the credentials the endpoint's ECR issues (the password never leaves Python).
htpasswd_line() {
    # shellcheck disable=SC1090
    (set -a && . "$admin_env" && AWS_CA_BUNDLE=$cert exec "$ROOT/.venv/bin/python" - "https://127.0.0.1:$moto_port") <<'PY'
import base64
import sys

import bcrypt
import boto3

ecr = boto3.client("ecr", endpoint_url=sys.argv[1], region_name="us-east-1")
token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
user, password = base64.b64decode(token).decode().split(":", 1)
if user != "AWS":
    sys.exit(f"ECR's token names user {user!r}, not AWS")
print(f"AWS:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}")
PY
}

start() {
    if running; then echo "local ECR registry already running at $url (pid $(cat "$pid_file"))"; return; fi
    [[ -f "$admin_env" ]] || {
        echo "no local AWS endpoint with IAM enforced on port $moto_port ($admin_env is missing)" >&2; exit 1; }
    "$HERE/bins.sh" registry
    rm -rf "$dir"
    mkdir -p "$state_dir"
    # The directory and what the registry is told (htpasswd, the config with its secret) are for their owner only.
    umask_was=$(umask) && umask 077
    mkdir "$dir"
    htpasswd_line >"$dir/htpasswd"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: $(openssl rand -hex 32)
  tls:
    certificate: $cert
    key: $key
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: local ECR (helix local cloud)
    path: $dir/htpasswd
notifications:
  endpoints:
    - name: ecr-sync
      url: http://127.0.0.1:$sync_port/events
      timeout: 5s
      threshold: 3
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
EOF
    umask "$umask_was"
    # shellcheck disable=SC1090
    (set -a && . "$admin_env" && AWS_CA_BUNDLE=$cert exec setsid "$ROOT/.venv/bin/python" "$HERE/ecr_sync.py" \
        --listen "$sync_port" --registry "$url" --endpoint "https://127.0.0.1:$moto_port" >>"$log" 2>&1 </dev/null) &
    echo $! >"$sync_pid_file"
    # No OpenTelemetry exporter: nothing listens for traces here.
    (OTEL_TRACES_EXPORTER=none exec setsid "$REGISTRY" serve "$dir/config.yml" >>"$log" 2>&1 </dev/null) &
    echo $! >"$pid_file"
    for _ in $(seq 100); do
        if asks_credentials; then echo "local ECR registry started at $url (log: $log)"; return; fi
        running || break
        sleep 0.1
    done
    echo "local ECR registry did not answer 401 at $url/v2/; see $log" >&2
    stop >/dev/null
    exit 1
}

stop() {
    if running; then
        local pid
        pid=$(cat "$pid_file")
        kill -TERM "$pid"
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            kill -KILL "$pid"
            while alive "$pid"; do sleep 0.1; done
        fi
        echo "local ECR registry at $url stopped; its images are removed"
    fi
    rm -f "$pid_file"
    if [[ -f "$sync_pid_file" ]]; then
        kill -TERM "$(cat "$sync_pid_file")" 2>/dev/null || true
        rm -f "$sync_pid_file"
    fi
    rm -rf "$dir"
}

case $action in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
