#!/usr/bin/env bash
# ECR's data plane for the local cloud, standing in for <account>.dkr.ecr.<region>.amazonaws.com:
# localcloud/ecr_front.py, a TLS front on 127.0.0.1:PORT, in front of distribution's registry
# (localcloud/bins.sh builds it) on 127.0.0.1:PORT+1000. docs/local-cloud-registry.md.
#
#   localcloud/registry.sh start PORT [MOTO_PORT]   serve https://127.0.0.1:PORT/v2/
#   localcloud/registry.sh stop PORT                 stop it; its images go with it
#
# MOTO_PORT: the port of the local AWS endpoint, started by localcloud/localcloud.sh up MOTO_PORT (IAM
# enforced, ECR tokens signed with .cache/localcloud/ecr-token-MOTO_PORT.key); default PORT-1, as
# localcloud.sh places the registry.
#
# The front speaks TLS with the endpoint's own certificate (.cache/moto/cert.pem, whose names include
# *.dkr.ecr.<region>.amazonaws.com and 127.0.0.1), accepts exactly the unexpired tokens the endpoint's
# ecr:GetAuthorizationToken issues, serves only the repositories the endpoint's ECR has, records every
# manifest pushed or deleted in that ECR before it answers, and removes the data of a repository deleted
# from ECR. It calls the endpoint with its administrator keys (.cache/moto/admin-MOTO_PORT.env).
# Everything kept - configuration, the registry's htpasswd, images - is under
# .cache/localcloud/registry-PORT/, removed on stop; the front's pid and log (the registry's too) are
# .cache/localcloud/registry-PORT.pid and .log beside it.
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
cert=$ROOT/.cache/moto/cert.pem key=$ROOT/.cache/moto/key.pem
admin_env=$ROOT/.cache/moto/admin-$moto_port.env
token_key=$state_dir/ecr-token-$moto_port.key
url=https://127.0.0.1:$port

# alive PID: the process exists and has not exited (a child of this shell that exited is a zombie until reaped).
alive() { local state; state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ "$state" != Z* ]]; }
running() { [[ -f "$pid_file" ]] && alive "$(cat "$pid_file")"; }
# The front is up when /v2/ asks for credentials.
asks_credentials() {
    [[ "$(curl -sS --cacert "$cert" -o /dev/null -w '%{http_code}' "$url/v2/" 2>/dev/null)" == 401 ]]
}

start() {
    if running; then echo "local ECR registry already running at $url (pid $(cat "$pid_file"))"; return; fi
    [[ -f "$admin_env" ]] || {
        echo "no local AWS endpoint with IAM enforced on port $moto_port ($admin_env is missing)" >&2; exit 1; }
    [[ -f "$token_key" ]] || {
        echo "no ECR token key for the endpoint on port $moto_port ($token_key is missing; localcloud/localcloud.sh up $moto_port makes it)" >&2
        exit 1; }
    "$HERE/bins.sh" registry
    rm -rf "$dir"
    mkdir -p "$state_dir"
    # shellcheck disable=SC1090
    (set -a && . "$admin_env" && AWS_CA_BUNDLE=$cert exec setsid "$ROOT/.venv/bin/python" "$HERE/ecr_front.py" \
        --listen "$port" --registry-port "$((port + 1000))" --dir "$dir" --endpoint "https://127.0.0.1:$moto_port" \
        --cert "$cert" --key "$key" --token-key "$token_key" --registry-bin "$REGISTRY" >>"$log" 2>&1 </dev/null) &
    echo $! >"$pid_file"
    for _ in $(seq 150); do
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
        # The front stops the registry before it exits.
        kill -TERM "$pid"
        for _ in $(seq 150); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            # Its process group (setsid at start): the front and the registry it started.
            kill -KILL -- "-$pid" 2>/dev/null || true
            while alive "$pid"; do sleep 0.1; done
        fi
        echo "local ECR registry at $url stopped; its images are removed"
    fi
    rm -f "$pid_file"
    # A registry started before the front replaced localcloud/ecr_sync.py has that process beside it.
    if [[ -f "$state_dir/ecr-sync-$port.pid" ]]; then
        kill -TERM "$(cat "$state_dir/ecr-sync-$port.pid")" 2>/dev/null || true
        rm -f "$state_dir/ecr-sync-$port.pid"
    fi
    rm -rf "$dir"
}

case $action in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
