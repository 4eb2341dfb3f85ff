#!/usr/bin/env bash
# Run the three images of demo_app/build_images.py together, without Kubernetes or a container
# engine, the way their pods run them, and check that they work: the db initialises its data
# directory and runs init.sql, the api reaches it and serves /healthz, /readyz and /api/messages, the
# ui serves index.html and /healthz and proxies /api/ to the api.
#
#     sudo demo_app/test_images.sh [IMAGES_DIR]
#
# IMAGES_DIR holds ui.tar, api.tar and db.tar; without it the images are built into a temporary
# directory first. Needs root (namespaces, mounts, chroot); as another user it skips with a message.
# The containers' output is shown on failure, or always with SHOW_LOGS=1.
#
# Each image is read as containerd would (index.json -> manifest -> config and layer, digests
# checked), its layer unpacked, and its Entrypoint + Cmd started with its Env, User and WorkingDir in
# new mount, PID and UTS namespaces and a network namespace of its own (veth links db-api and
# api-ui; /etc/hosts names db and api), on a root filesystem that is read-only as the pods'
# readOnlyRootFilesystem makes it, with the pods' writable mounts: /tmp (ui, db), the db's data
# volume (with lost+found at its root, group 70 as fsGroup makes it) and /var/run/postgresql. The
# probes of roles/application run as the pods' would. Everything started is stopped with the image's
# StopSignal (SIGKILL after 10 s), and the namespaces and files go, also on failure; a process
# left in a test network namespace fails the test.
set -euo pipefail

if [[ $(id -u) != 0 ]]; then
    echo "test_images.sh: skipped: needs root (namespaces, mounts, chroot)"
    exit 0
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-$HERE/../.venv/bin/python}
WORK=$(mktemp -d /tmp/helix-demo-images.XXXXXX)
RUN_ID=$$
NETNS=("helix-img-db-$RUN_ID" "helix-img-api-$RUN_ID" "helix-img-ui-$RUN_ID")
DB_NS=${NETNS[0]} API_NS=${NETNS[1]} UI_NS=${NETNS[2]}
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
declare -A PIDS=()

log() { echo "[test_images] $*" >&2; }

# init_of PID: the first child of PID (unshare's forked child: PID 1 of the container's namespace).
init_of() {
    local init=""
    read -r init _ <"/proc/$1/task/$1/children" || true
    echo "$init"
}
fail() {
    log "FAILED: $*"
    exit 1
}

# stop TIER: the image's StopSignal to its PID 1, SIGKILL to that PID 1 after 10 s. A SIGKILL from
# outside ends a PID namespace's init and with it every process of the namespace. (unshare's
# --kill-child does not: the kernel clears the parent-death signal when the process changes user.)
stop() {
    local tier=$1 pid=${PIDS[$1]:-} init signal
    [[ -n $pid ]] || return 0
    unset "PIDS[$tier]"
    init=$(init_of "$pid" 2>/dev/null)
    if [[ -n $init ]]; then
        signal=$(cat "$WORK/$tier/stopsignal")
        kill "-${signal#SIG}" "$init" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$init" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$init" 2>/dev/null; then
            log "$tier ignored $signal for 10 s (as PID 1 without a handler); SIGKILL"
            kill -KILL "$init" 2>/dev/null || true
        fi
    else
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true # unshare returns when its child, the namespace's init, is gone
}

cleanup() {
    local status=$? tier ns pids
    for tier in ui api db; do stop "$tier"; done
    # Whatever still runs in the test's network namespaces is the test's: kill it, then say so.
    for ns in "${NETNS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [[ -n $pids ]]; then
            log "killing processes left in $ns: $pids"
            # shellcheck disable=SC2086 # a list of pids
            kill -KILL $pids 2>/dev/null || true
            sleep 0.5
            status=1
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
    if [[ $status != 0 || -n ${SHOW_LOGS:-} ]]; then
        for tier in db api ui; do
            if [[ -s $WORK/$tier.log ]]; then
                log "--- $tier's output"
                cat "$WORK/$tier.log" >&2
            fi
        done
    fi
    # The mounts lived in the stopped processes' mount namespaces; refuse to delete through one.
    if grep -q " $WORK/" /proc/self/mountinfo; then
        log "mounts remain below $WORK; not deleting it"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT

# unpack TIER ARCHIVE: $WORK/TIER/root and the config's argv, env, user, workdir, stopsignal.
unpack() {
    local tier=$1 archive=$2
    mkdir -p "$WORK/$tier/root"
    "$PYTHON" - "$archive" "$WORK/$tier" <<'PY'
import hashlib, json, subprocess, sys, tarfile
from pathlib import Path

archive, out = sys.argv[1], Path(sys.argv[2])
with tarfile.open(archive) as tar:
    def blob(descriptor):
        data = tar.extractfile("blobs/sha256/" + descriptor["digest"].split(":")[1]).read()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == descriptor["digest"], descriptor
        assert len(data) == descriptor["size"], descriptor
        return data

    index = json.load(tar.extractfile("index.json"))
    (descriptor,) = index["manifests"]
    manifest = json.loads(blob(descriptor))
    config = json.loads(blob(manifest["config"]))
    (docker,) = json.load(tar.extractfile("manifest.json"))
    assert docker["Config"].endswith(manifest["config"]["digest"].split(":")[1]), docker
    assert [layer.split("/")[-1] for layer in docker["Layers"]] == [
        layer["digest"].split(":")[1] for layer in manifest["layers"]
    ], docker
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"]):
        raw = subprocess.run(["gzip", "-dc"], input=blob(layer), capture_output=True, check=True).stdout
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == diff_id, diff_id
        subprocess.run(["tar", "-x", "-C", str(out / "root"), "--numeric-owner", "-p"], input=raw, check=True)
c = config["config"]
argv = (c.get("Entrypoint") or []) + (c.get("Cmd") or [])
(out / "argv").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
(out / "env").write_bytes(b"".join(e.encode() + b"\0" for e in c.get("Env") or []))
(out / "user").write_text(c.get("User") or "0:0")
(out / "workdir").write_text(c.get("WorkingDir") or "/")
(out / "stopsignal").write_text(c.get("StopSignal") or "SIGTERM")
print(f"{descriptor['annotations']['io.containerd.image.name']} {descriptor['digest']}: {argv} as {c.get('User')}")
PY
}

# The container's side: new mount, PID and UTS namespaces, in the tier's network namespace.
cat >"$WORK/inside.sh" <<'INSIDE'
#!/usr/bin/env bash
# inside.sh ROOT TIER MOUNTS -- ENV... -- ARGV...: mount what the pod has, make the root read-only,
# exec ARGV with only ENV, as the image's user, in its working directory, chrooted into ROOT.
set -euo pipefail
root=$1 tier=$2 mounts=$3
shift 3
[[ $1 == -- ]] && shift
env=()
while [[ $1 != -- ]]; do env+=("$1"); shift; done
shift
user=$(cat "$root/../user") workdir=$(cat "$root/../workdir")
hostname "$tier"
inside() { # the host path of a directory of the image, refusing symlinks that leave it
    local path
    path=$(realpath -e "$root$1")
    [[ $path == "$root"/* ]] || { echo "inside.sh: $1 leaves the image ($path)" >&2; exit 1; }
    echo "$path"
}
mount --bind "$root" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$(inside /proc)"
dev=$(inside /dev)
mount -t tmpfs -o nosuid,mode=755,size=64k tmpfs "$dev"
for node in null zero full random urandom tty; do
    touch "$dev/$node"
    mount --bind "/dev/$node" "$dev/$node"
done
mkdir "$dev/shm" "$dev/pts"
mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=64m shm "$dev/shm"
ln -s /proc/self/fd "$dev/fd"
ln -s /proc/self/fd/0 "$dev/stdin"
ln -s /proc/self/fd/1 "$dev/stdout"
ln -s /proc/self/fd/2 "$dev/stderr"
for spec in $mounts; do # tmpfs:PATH:MODE:GID or bind:HOST_DIR:PATH
    IFS=: read -r kind a b c <<<"$spec"
    case $kind in
        tmpfs) mount -t tmpfs -o "nosuid,nodev,mode=$b,gid=$c" tmpfs "$(inside "$a")" ;;
        bind) mount --bind "$a" "$(inside "$b")" ;;
    esac
done
mount -o remount,bind,ro "$root"
exec env -i "${env[@]}" setpriv --no-new-privs \
    unshare --root="$root" --wd="$workdir" --setgid="${user#*:}" --setuid="${user%%:*}" -- "$@"
INSIDE

# start TIER NETNS MOUNTS VAR=VALUE...: the image's command with its Env and VAR=VALUE, in the background.
start() {
    local tier=$1 ns=$2 mounts=$3
    shift 3
    local -a argv env
    mapfile -d '' argv <"$WORK/$tier/argv"
    mapfile -d '' env <"$WORK/$tier/env"
    # runc gives the container's user its stdout and stderr (fixStdioPermissions): nginx opens /dev/stdout.
    touch "$WORK/$tier.log"
    chown "$(cat "$WORK/$tier/user")" "$WORK/$tier.log"
    ip netns exec "$ns" unshare --mount --propagation private --pid --uts --fork --kill-child \
        bash "$WORK/inside.sh" "$WORK/$tier/root" "$tier" "$mounts" -- "${env[@]}" "$@" -- "${argv[@]}" \
        >>"$WORK/$tier.log" 2>&1 &
    PIDS[$tier]=$!
}

# in_container TIER COMMAND...: COMMAND in the running container's namespaces and root, as its user,
# with its Env (what a kubelet exec probe does).
in_container() {
    local tier=$1 pid=${PIDS[$1]} init user
    shift
    local -a env
    mapfile -d '' env <"$WORK/$tier/env"
    init=$(init_of "$pid")
    user=$(cat "$WORK/$tier/user")
    env -i "${env[@]}" POSTGRES_USER=app POSTGRES_DB=app nsenter --target "$init" --mount --uts --net --pid \
        --root --wd --setgid "${user#*:}" --setuid "${user%%:*}" "$@"
}

# wait_for DESCRIPTION SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
    local what=$1 seconds=$2 tier
    shift 2
    for _ in $(seq $((seconds * 5))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        for tier in "${!PIDS[@]}"; do
            kill -0 "${PIDS[$tier]}" 2>/dev/null || fail "$tier exited while waiting for $what"
        done
        sleep 0.2
    done
    fail "$what: not within $seconds s"
}

# http NETNS PATH...: curl in the network namespace (the host's curl, as the kubelet's probe is its own).
http() {
    local ns=$1
    shift
    ip netns exec "$ns" curl -fsS --max-time 5 "$@"
}

expect() { # expect DESCRIPTION ACTUAL PATTERN (a glob: \[ for a literal [)
    # shellcheck disable=SC2053 # the pattern is a glob on purpose
    if [[ $2 == $3 ]]; then log "ok: $1"; else fail "$1: got '$2', wanted '$3'"; fi
}

images=${1:-}
if [[ -z $images ]]; then
    images=$WORK/images
    log "building the images into $images"
    "$PYTHON" "$HERE/build_images.py" --out "$images" --tag test >/dev/null
fi
for tier in db api ui; do
    unpack "$tier" "$images/$tier.tar"
done

# The pods' network: one namespace per pod, db <-> api <-> ui, names in /etc/hosts (which the
# kubelet mounts into containers; here written into the unpacked copy before it goes read-only).
for ns in "${NETNS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$DB_NS" link add eth0 type veth peer name db0 netns "$API_NS"
ip -n "$API_NS" link add ui0 type veth peer name eth0 netns "$UI_NS"
ip -n "$DB_NS" addr add 10.255.1.1/30 dev eth0
ip -n "$API_NS" addr add 10.255.1.2/30 dev db0
ip -n "$API_NS" addr add 10.255.2.1/30 dev ui0
ip -n "$UI_NS" addr add 10.255.2.2/30 dev eth0
for link in "$DB_NS eth0" "$API_NS db0" "$API_NS ui0" "$UI_NS eth0"; do
    read -r ns dev <<<"$link"
    ip -n "$ns" link set "$dev" up
done
for tier in db api ui; do
    printf '127.0.0.1 localhost\n10.255.1.1 db\n10.255.2.1 api\n' >"$WORK/$tier/root/etc/hosts"
done

# db: the StatefulSet's volumes (an EBS volume: lost+found at its root, group 70 by fsGroup).
volume=$WORK/db-volume
mkdir -p "$volume/lost+found"
chmod 700 "$volume/lost+found"
chown 0:70 "$volume"
chmod 2775 "$volume"
start db "$DB_NS" "bind:$volume:/var/lib/postgresql/data tmpfs:/run/postgresql:2777:70 tmpfs:/tmp:1777:70" \
    POSTGRES_DB=app POSTGRES_USER=app "POSTGRES_PASSWORD=$PASSWORD"
db_ready() { sed -n '/init process complete/,$p' "$WORK/db.log" | grep -q "ready to accept connections"; }
wait_for "the db initialised and ready" 120 db_ready
log "ok: db initialised its data directory and is ready (log: 'database system is ready to accept connections')"
# shellcheck disable=SC2016 # expanded by the container's sh, as in the StatefulSet's probe
in_container db sh -c 'pg_isready -q -U "$POSTGRES_USER" -d "$POSTGRES_DB"' || fail "the db's readiness probe"
log "ok: the db's readiness probe (sh -c pg_isready ...) as uid 70"
rows=$(in_container db psql -U app -d app -tAc "SELECT text FROM messages")
expect "init.sql made the messages table with its row" "$rows" "hello from the helix demo database"
expect "the db's data directory is below the volume" "$(ls "$volume")" $'lost+found\npgdata'
# initdb makes it 0700; the volume's setgid bit (fsGroup) is inherited, as on a real volume.
expect "PGDATA is owned by uid 70, mode 0700" "$(stat -c %u:%a "$volume/pgdata")" "70:?700"
grep -q "running /docker-entrypoint-initdb.d/10-init.sql" "$WORK/db.log" || fail "the entrypoint ran init.sql"

# api: the Deployment's environment; no writable mounts.
start api "$API_NS" "" PORT=8080 DB_HOST=db DB_PORT=5432 DB_NAME=app DB_USER=app "DB_PASSWORD=$PASSWORD"
wait_for "the api's /healthz" 30 http "$API_NS" http://127.0.0.1:8080/healthz
expect "api /healthz" "$(http "$API_NS" http://127.0.0.1:8080/healthz)" '{"status": "ok", "host": "api"}'
expect "api /readyz (db over TCP, scram-sha-256)" "$(http "$API_NS" http://127.0.0.1:8080/readyz)" \
    '{"status": "ready"}'
expect "api POST /api/messages" \
    "$(http "$API_NS" -X POST -H 'Content-Type: application/json' -d '{"text": "from test_images"}' \
        http://127.0.0.1:8080/api/messages)" '{"id": 2, "text": "from test_images"}'
expect "api GET /api/messages" "$(http "$API_NS" http://127.0.0.1:8080/api/messages)" \
    '\[{"id": 2, "text": "from test_images", "created": "*"}, {"id": 1, "text": "hello from the helix demo database"*}\]'

# ui: the Deployment's /tmp; /api/ goes to the api's namespace.
start ui "$UI_NS" "tmpfs:/tmp:1777:101"
wait_for "the ui's /healthz" 30 http "$UI_NS" http://127.0.0.1:8080/healthz
expect "ui /healthz" "$(http "$UI_NS" http://127.0.0.1:8080/healthz)" "ok"
http "$UI_NS" -o "$WORK/index.html" http://127.0.0.1:8080/
cmp -s "$WORK/index.html" "$HERE/ui/index.html" || fail "ui / is not demo_app/ui/index.html"
log "ok: ui / serves demo_app/ui/index.html"
expect "ui /api/messages (proxied to the api)" "$(http "$UI_NS" http://127.0.0.1:8080/api/messages)" \
    '\[{"id": 2, "text": "from test_images"*'

for tier in db api ui; do
    init=$(init_of "${PIDS[$tier]}")
    expect "$tier runs as the image's user (uid gid)" \
        "$(awk '/^Uid:/ {u=$2} /^Gid:/ {g=$2} END {print u":"g}' "/proc/$init/status")" "$(cat "$WORK/$tier/user")"
done
if in_container ui sh -c ': >/etc/written' 2>/dev/null; then fail "the ui's root filesystem is writable"; fi
log "ok: the root filesystems are read-only"

for tier in ui api db; do stop "$tier"; done
grep -q "database system is shut down" "$WORK/db.log" || fail "the db did not shut down cleanly on SIGINT"
log "ok: the db shut down cleanly on its StopSignal (SIGINT)"
log "all checks passed"
