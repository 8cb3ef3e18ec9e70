#!/usr/bin/env bash
# Bring this machine to what the test suite needs, from nothing: the Debian packages whose
# programs the tests start (PostgreSQL's initdb/pg_ctl, pgbouncer, redis-server, rabbitmq-server,
# libfaketime for the soak's skewed clocks), the running services, and the DATABASE_URL database.
# Used by `make test` (and so by .ci/run).
#
# Idempotent and silent when everything is there already. Prints what it does otherwise, and
# stops with a message and exit status 1 when something cannot be had: nothing is skipped.
#
#   DATABASE_URL        PostgreSQL the suite runs on (created if missing)
#                       default postgres://postgres@127.0.0.1:5432/django_idempotency
#   REDIS_URL           Redis of the Celery test (started if down), default redis://127.0.0.1:6379/0
#   AMQP_URL            RabbitMQ (started if down), default amqp://guest:guest@127.0.0.1:5672//
#   MARIADB_URL         MariaDB of the MariaDB runs (started if down, database created if missing),
#                       default mysql://root@127.0.0.1:3306/django_idempotency
#   BOOTSTRAP_SERVICES  which of "postgres redis rabbitmq mariadb" to ensure (default: all four)
#   BOOTSTRAP_INSTALL   0: never apt-get install, only report what is missing (default 1)
set -euo pipefail

DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/django_idempotency}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672//}"
MARIADB_URL="${MARIADB_URL:-mysql://root@127.0.0.1:3306/django_idempotency}"
BOOTSTRAP_SERVICES="${BOOTSTRAP_SERVICES:-postgres redis rabbitmq mariadb}"
BOOTSTRAP_INSTALL="${BOOTSTRAP_INSTALL:-1}"

log() { echo "bootstrap: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
wanted() { [[ " $BOOTSTRAP_SERVICES " == *" $1 "* ]]; }

# Poll "$@" for up to $1 seconds.
wait_for() {
    local seconds=$1
    shift
    local _
    for _ in $(seq "$((seconds * 5))"); do
        if "$@"; then return 0; fi
        sleep 0.2
    done
    return 1
}

# host and port of a URL such as scheme://user:pass@host:port/path
url_host() {
    local rest=${1#*://}
    rest=${rest%%/*}
    rest=${rest##*@}
    echo "${rest%%:*}"
}
url_port() {
    local rest=${1#*://}
    rest=${rest%%/*}
    rest=${rest##*@}
    if [[ $rest == *:* ]]; then echo "${rest##*:}"; else echo "$2"; fi
}
# A TCP connect, without needing any client program.
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# -- Debian packages --------------------------------------------------------------------------

missing=()
need() { # need PACKAGE TEST-COMMAND...
    local package=$1
    shift
    if ! "$@" >/dev/null 2>&1; then missing+=("$package"); fi
}
have_initdb() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
have() { command -v "$1" || [ -x "/usr/sbin/$1" ]; }

if wanted postgres; then
    need postgresql have_initdb
    need postgresql-client have psql
    need pgbouncer have pgbouncer
fi
if wanted redis; then
    need redis-server have redis-server
    need redis-tools have redis-cli
fi
if wanted rabbitmq; then need rabbitmq-server have rabbitmq-server; fi
if wanted mariadb; then
    need mariadb-server have mariadbd
    need mariadb-client have mariadb
    # What pip needs to build mysqlclient (the test group): headers, pkg-config, a compiler.
    need libmariadb-dev test -e /usr/include/mariadb/mysql.h
    need pkg-config have pkg-config
    need build-essential have gcc
fi
# The soak (tests/soak/) skews its servers' clocks with libfaketime (LD_PRELOAD).
have_libfaketime() { compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" >/dev/null; }
need libfaketime have_libfaketime
# The browser tests (tests/e2e/test_browser.py): headless chromium, driven by chromium-driver.
need chromium have chromium
need chromium-driver have chromedriver

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$BOOTSTRAP_INSTALL" != 1 ] || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        die "missing Debian packages: ${missing[*]} (install them: apt-get install ${missing[*]})"
    fi
    log "installing ${missing[*]}"
    # Installing a server package must not try to start it through systemd (there is none).
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null; } || die "apt-get install ${missing[*]} failed"
fi

# -- PostgreSQL -------------------------------------------------------------------------------

psql_ok() { psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1; }

ensure_postgres() {
    case $DATABASE_URL in
    postgres://* | postgresql://*) ;;
    *) die "DATABASE_URL must be postgres://... (got $DATABASE_URL)" ;;
    esac
    local host port
    host=$(url_host "$DATABASE_URL")
    port=$(url_port "$DATABASE_URL" 5432)
    if ! pg_isready -q -h "$host" -p "$port"; then
        local clusters
        clusters=$(ls /etc/postgresql 2>/dev/null || true)
        [ -n "$clusters" ] || die "PostgreSQL is not answering on $host:$port and no local cluster exists"
        log "PostgreSQL is not answering on $host:$port; starting cluster(s) $clusters"
        local version
        for version in $clusters; do
            pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
        done
        wait_for 30 pg_isready -q -h "$host" -p "$port" \
            || die "PostgreSQL is still not answering on $host:$port"
    fi
    if ! psql_ok "$DATABASE_URL"; then
        local name=${DATABASE_URL##*/}
        name=${name%%\?*}
        local maintenance="${DATABASE_URL%/*}/postgres"
        psql_ok "$maintenance" || die "cannot connect to $maintenance (user, password, pg_hba.conf?)"
        log "creating database $name"
        psql "$maintenance" -qc "CREATE DATABASE \"$name\"" >/dev/null \
            || die "cannot create database $name"
        psql_ok "$DATABASE_URL" || die "cannot connect to $DATABASE_URL"
    fi
}

# -- Redis ------------------------------------------------------------------------------------

ensure_redis() {
    local host port
    host=$(url_host "$REDIS_URL")
    port=$(url_port "$REDIS_URL" 6379)
    redis_up() { [ "$(redis-cli -h "$host" -p "$port" ping 2>/dev/null)" = PONG ]; }
    redis_up && return 0
    log "Redis is not answering on $host:$port; starting it"
    redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
        >/dev/null || true
    wait_for 15 redis_up || die "Redis is still not answering on $host:$port"
}

# -- RabbitMQ ---------------------------------------------------------------------------------

ensure_rabbitmq() {
    local host port
    host=$(url_host "$AMQP_URL")
    port=$(url_port "$AMQP_URL" 5672)
    tcp_open "$host" "$port" && return 0
    log "RabbitMQ is not answering on $host:$port; starting it"
    # -detached forks the Erlang VM away from this shell; it needs a minute on a slow machine.
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_for 90 tcp_open "$host" "$port" || die "RabbitMQ is still not answering on $host:$port"
}

# -- MariaDB ----------------------------------------------------------------------------------

ensure_mariadb() {
    local host port name
    host=$(url_host "$MARIADB_URL")
    port=$(url_port "$MARIADB_URL" 3306)
    name=${MARIADB_URL##*/}
    name=${name%%\?*}
    mariadb_ok() { mariadb -h "$host" -P "$port" -u root -e 'SELECT 1' >/dev/null 2>&1; }
    if ! mariadb_ok; then
        log "MariaDB is not answering on $host:$port; starting it"
        /etc/init.d/mariadb start >/dev/null 2>&1 || true
        wait_for 60 mariadb_ok || die "MariaDB is still not answering on $host:$port (root, no password?)"
    fi
    # And the second alias of tests/settings.py: `manage.py check` in a test opens it on MySQL
    # (Django's field checks ask the server's version), where PostgreSQL opens nothing.
    local database
    for database in "$name" "${name}_other"; do
        if ! mariadb -h "$host" -P "$port" -u root -e "USE \`$database\`" >/dev/null 2>&1; then
            log "creating MariaDB database $database"
            mariadb -h "$host" -P "$port" -u root \
                -e "CREATE DATABASE \`$database\` CHARACTER SET utf8mb4" \
                || die "cannot create database $database"
        fi
    done
}

if wanted postgres; then ensure_postgres; fi
if wanted redis; then ensure_redis; fi
if wanted rabbitmq; then ensure_rabbitmq; fi
if wanted mariadb; then ensure_mariadb; fi
