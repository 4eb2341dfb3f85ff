#!/usr/bin/env bash
# The local cloud: the local AWS endpoint with IAM enforced, ECR's data plane (a registry on loopback,
# localcloud/registry.sh, on PORT+1) and the EC2 data plane that boots its instances as nodes
# (localcloud/reconciler.py). docs/local-cloud.md, docs/local-cloud-registry.md.
#
#   localcloud/localcloud.sh up PORT      start them (the EC2 data plane only where this machine can host nodes)
#                                         HELIX_ECR_TOKEN_TTL=SECONDS: ECR tokens' lifetime (default 43200, ECR's 12 h)
#   localcloud/localcloud.sh down PORT    stop them; every node, namespace, bridge, cgroup and image goes
#   localcloud/localcloud.sh env PORT     print the administrator's keys and the CA bundle as shell exports
#   localcloud/localcloud.sh can-host     exit 0 if this machine can host nodes, else say why on stderr
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
action=${1:-} port=${2:-5055}
state_dir=$ROOT/.cache/localcloud
pid_file=$state_dir/reconciler-$port.pid
cert=$ROOT/.cache/moto/cert.pem
admin_env=$ROOT/.cache/moto/admin-$port.env
ec2_env=$ROOT/.cache/moto/ec2-$port.env
registry_port=$((port + 1))
# The key the endpoint signs ECR tokens with and the registry's front checks them with (tests/moto_server.py).
token_key=$state_dir/ecr-token-$port.key

can_host() {
    local why=
    if [[ "$(uname -s)" != Linux ]]; then why="not Linux"
    elif [[ $EUID -ne 0 ]]; then why="not root"
    elif ! command -v systemd-nspawn >/dev/null && ! command -v apt-get >/dev/null; then
        why="no systemd-nspawn, and no apt-get to install it (make node-tools)"
    elif ! command -v go >/dev/null; then why="no Go toolchain for the metadata mock"
    fi
    [[ -z "$why" ]] && return 0
    echo "$why" >&2
    return 1
}

running() { [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

up() {
    cd "$ROOT"
    mkdir -p "$state_dir"
    [[ -s "$token_key" ]] || (umask 077 && head -c 32 /dev/urandom >"$token_key")
    [[ -z "${HELIX_ECR_TOKEN_TTL:-}" || "$HELIX_ECR_TOKEN_TTL" =~ ^[1-9][0-9]*$ ]] || {
        echo "HELIX_ECR_TOKEN_TTL must be a number of seconds, not '$HELIX_ECR_TOKEN_TTL'" >&2; exit 2; }
    HELIX_ECR_TOKEN_KEY=$token_key tools/moto-server.sh start "$port" --enforce-iam
    # ECR's data plane listens on loopback only: it runs whether or not this machine can host nodes.
    if command -v go >/dev/null || [[ -x "${HELIX_CACHE_DIR:-$HOME/.cache/helix}/localcloud/bin/registry" ]]; then
        "$HERE/registry.sh" start "$registry_port" "$port"
    else
        echo "local cloud: no Go toolchain to build the registry; ECR's data plane does not run"
    fi
    if ! why=$(can_host 2>&1); then
        echo "local cloud: this machine cannot host nodes ($why); the endpoint runs, instances stay records"
        return
    fi
    running && { echo "local cloud data plane already running (pid $(cat "$pid_file"))"; return; }
    "$HERE/bins.sh"
    mkdir -p "$state_dir"
    # Every node's systemd, containerd and kubelet take inotify instances of the host's root: with a few
    # clusters, Linux's default of 128 runs out and containerd's CRI plugin fails "too many open files".
    if (( $(sysctl -n fs.inotify.max_user_instances) < 1024 )); then
        echo "local cloud: fs.inotify.max_user_instances raised to 1024 for the nodes"
        sysctl -qw fs.inotify.max_user_instances=1024
    fi
    # shellcheck disable=SC1090
    (set -a && . "$ec2_env" && HELIX_LOCALCLOUD_STATE=/run/helix-localcloud/$port exec setsid "$ROOT/.venv/bin/python" "$HERE/reconciler.py" \
        --endpoint "https://127.0.0.1:$port" --ca-bundle "$cert" --registry-port "$registry_port" >>"$state_dir/reconciler-$port.log" 2>&1 </dev/null) &
    echo $! >"$pid_file"
    sleep 1
    running || { echo "local cloud data plane did not start; see $state_dir/reconciler-$port.log" >&2; exit 1; }
    echo "local cloud data plane started (log: $state_dir/reconciler-$port.log)"
}

down() {
    cd "$ROOT"
    if running; then
        local pid
        pid=$(cat "$pid_file")
        kill -TERM "$pid"
        # It removes every node before it exits.
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
        echo "local cloud data plane stopped; its nodes are removed"
    fi
    rm -f "$pid_file"
    "$HERE/registry.sh" stop "$registry_port"
    tools/moto-server.sh stop "$port"
    rm -f "$token_key"
}

case $action in
    up) up ;;
    down) down ;;
    env) [[ -f "$admin_env" ]] || { echo "no local cloud on port $port (localcloud.sh up $port)" >&2; exit 1; }
         sed 's/^/export /' "$admin_env"
         echo "export AWS_CA_BUNDLE=$cert HELIX_AWS_ENDPOINT_URL=https://127.0.0.1:$port" ;;
    can-host) can_host ;;
    *) echo "usage: $0 up|down|env PORT | can-host" >&2; exit 2 ;;
esac
