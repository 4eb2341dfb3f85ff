#!/bin/sh
# Entrypoint of the db image built by demo_app/build_images.py (Debian's PostgreSQL 15, dash): the
# part of the official postgres image's docker-entrypoint.sh that the demo relies on.
#
# On an empty $PGDATA: initdb with POSTGRES_USER and POSTGRES_PASSWORD (scram-sha-256 over TCP,
# trust on the unix socket), listen on all addresses, start a server that listens on the unix
# socket only, create POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql (psql) and *.sh (sourced)
# in name order, stop that server. Then, always, exec the command (postgres by default).
#
# Runs as the image's user (uid 70, which /etc/passwd names); it never switches users.
set -eu

# `docker run IMAGE -c foo=bar` passes options to postgres, as the official image does.
if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi

psql_run() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "error: the database is not initialised and POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi

    # initdb creates $PGDATA (mode 0700) below the volume's root, which may hold lost+found.
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options, as in the official image
    printf '%s\n' "$POSTGRES_PASSWORD" | initdb --username="$POSTGRES_USER" --pwfile=/dev/stdin \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 \
        ${POSTGRES_INITDB_ARGS:-}
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
    if [ "$POSTGRES_DB" != postgres ]; then
        psql_run --dbname postgres --set db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql)
                echo "$0: running $f"
                psql_run --dbname "$POSTGRES_DB" -f "$f"
                ;;
            *.sh)
                echo "$0: sourcing $f"
                # shellcheck disable=SC1090 # the init scripts are the user's
                . "$f"
                ;;
            *) if [ -e "$f" ]; then echo "$0: ignoring $f"; fi ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "$0: PostgreSQL init process complete; ready for start up."
fi

exec "$@"
