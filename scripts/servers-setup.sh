#!/usr/bin/env bash
# Makes the machine's PostgreSQL and MariaDB servers ready for dualwrite's connectors and
# tests, idempotently: starts a server that is down, and changes (then restarts) only
# what is not already as needed.
#
# - PostgreSQL: wal_level=logical (logical decoding for capture), through ALTER SYSTEM.
# - MariaDB: the binary log on, in ROW format, with a server id (binlog capture), and
#   column names in the log's table maps (binlog_row_metadata = FULL, so capture reads
#   rows logged before an ALTER TABLE by name), through /etc/mysql/conf.d/dualwrite.cnf.
#
# Called by .ci/run and by the tests that need the servers (dualwrite-tests' `servers`
# support); safe to run any number of times, also concurrently (a lock serializes runs;
# the servers it starts do not inherit it).
# Needs root (it edits server configuration and restarts the servers).
set -euo pipefail

exec 9>/tmp/dualwrite-servers-setup.lock
flock 9

PG_PORT=5432
MY_PORT=3306

log() { echo "servers-setup: $*" >&2; }

pg_query() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAXc "$1"; }

pg_cluster_version() { ls /etc/postgresql | sort -V | tail -n 1; }

wait_for() { # $1: what, $2...: command that succeeds when ready
    local what=$1; shift
    for _ in $(seq 1 120); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    log "$what did not come up within 60 s"
    return 1
}

setup_postgres() {
    local version
    version=$(pg_cluster_version)
    if ! pg_query "SELECT 1" >/dev/null 2>&1; then
        log "PostgreSQL $version is down; starting it"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start 9>&- || true
        wait_for PostgreSQL pg_query "SELECT 1"
    fi
    if [ "$(pg_query 'SHOW wal_level')" != logical ]; then
        log "PostgreSQL: setting wal_level=logical and restarting"
        pg_query "ALTER SYSTEM SET wal_level = logical" >/dev/null
        pg_ctlcluster --skip-systemctl-redirect "$version" main restart 9>&-
        wait_for PostgreSQL pg_query "SELECT 1"
        [ "$(pg_query 'SHOW wal_level')" = logical ] || { log "wal_level is still not logical"; exit 1; }
    fi
}

my_query() { mysql -h 127.0.0.1 -P "$MY_PORT" -u root -NBe "$1"; }

start_mariadb() {
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 9>&-
    wait_for MariaDB my_query "SELECT 1"
}

setup_mariadb() {
    local conf=/etc/mysql/conf.d/dualwrite.cnf
    local wanted
    wanted=$'# Written by dualwrite scripts/servers-setup.sh: binlog capture needs these.\n[mysqld]\nlog_bin = mysql-bin\nbinlog_format = ROW\nbinlog_row_image = FULL\nserver_id = 1\nloose-binlog_row_metadata = FULL\n'
    local changed=0
    mkdir -p /etc/mysql/conf.d
    if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "${wanted%$'\n'}" ]; then
        printf '%s' "$wanted" >"$conf"
        changed=1
    fi
    if ! grep -qs '^!includedir /etc/mysql/conf.d' /etc/mysql/my.cnf; then
        printf '\n!includedir /etc/mysql/conf.d/\n' >>/etc/mysql/my.cnf
        changed=1
    fi
    if ! my_query "SELECT 1" >/dev/null 2>&1; then
        log "MariaDB is down; starting it"
        start_mariadb
    fi
    local state
    state=$(my_query "SELECT CONCAT(@@log_bin, ' ', @@binlog_format, ' ', @@server_id)")
    if [ "$state" != "ON ROW 1" ]; then
        log "MariaDB: turning on the ROW binlog ($state now) and restarting"
        mysqladmin -h 127.0.0.1 -P "$MY_PORT" -u root shutdown
        for _ in $(seq 1 120); do pgrep -x mariadbd >/dev/null || break; sleep 0.5; done
        start_mariadb
        state=$(my_query "SELECT CONCAT(@@log_bin, ' ', @@binlog_format, ' ', @@server_id)")
        [ "$state" = "ON ROW 1" ] || { log "MariaDB settings are still $state"; exit 1; }
    elif [ "$changed" = 1 ]; then
        log "MariaDB configuration written; the running server already has it"
    fi
    # Dynamic (MariaDB 10.5+): set on the running server too, no restart needed.
    local metadata
    metadata=$(my_query "SELECT @@GLOBAL.binlog_row_metadata" 2>/dev/null || echo unsupported)
    if [ "$metadata" != FULL ] && [ "$metadata" != unsupported ]; then
        log "MariaDB: binlog_row_metadata=FULL (was $metadata)"
        my_query "SET GLOBAL binlog_row_metadata = 'FULL'"
    fi
}

setup_postgres
setup_mariadb
log "PostgreSQL (wal_level=logical) and MariaDB (ROW binlog) are ready"
