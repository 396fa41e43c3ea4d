#!/usr/bin/env bash
# A private PostgreSQL server for the case DB's tests: `bash scripts/postgres.sh start|stop|status`.
#
# start   installs Debian's `postgresql` package if no server binaries exist under /usr/lib/postgresql
#         (as root: `apt-get update`, then `apt-get install --no-install-recommends postgresql`, with a
#         temporary policy-rc.d returning 101 so the package starts no cluster service of its own; an
#         existing policy-rc.d is put back), initialises a private cluster in var/postgres/data (or, when the
#         `postgres` OS user cannot reach that directory or its socket path would be too long, in
#         /tmp/povwatch-postgres-<uid>), starts it on 127.0.0.1:$POVWATCH_PG_PORT (default 15432) with its unix
#         socket in the data directory, creates role `povwatch` (password `povwatch`) and database
#         `povwatch_test` if missing, and prints the SQLAlchemy URL as its LAST line of output.
# stop    stops that cluster only (pg_ctl stop -m fast); nothing else is touched.
# status  prints whether that cluster is running; exit 0 when it is, 3 when it is not.
#
# All three are idempotent. As root the cluster belongs to the `postgres` OS user (initdb refuses root);
# otherwise to the caller. It is a throw-away test cluster: fsync is off.
# Errors are one line on stderr starting "postgres.sh:", with a non-zero exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${POVWATCH_PG_PORT:-15432}
ROLE=povwatch
PASSWORD=povwatch
DATABASE=povwatch_test
REPO_DATA=$REPO/var/postgres/data
TMP_DATA=/tmp/povwatch-postgres-$(id -u)
WHERE=$REPO/var/postgres/where  # names TMP_DATA when this checkout's cluster lives there
LOCK=/tmp/povwatch-postgres-$(id -u).lock

# The caller's libpq settings must not redirect the tools below.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGOPTIONS PGSERVICE PGSERVICEFILE PGPASSFILE PGSSLMODE PGDATA

die() { echo "postgres.sh: $*" >&2; exit 1; }
usage() { echo "usage: bash scripts/postgres.sh start|stop|status  (port: POVWATCH_PG_PORT, default 15432)" >&2; exit 2; }

case "$PORT" in
  ''|*[!0-9]*) die "POVWATCH_PG_PORT must be a port number, not '$PORT'" ;;
esac
[ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "POVWATCH_PG_PORT must be between 1 and 65535, not $PORT"

if [ "$(id -u)" -eq 0 ]; then
  AS_ROOT=yes
  # run a server tool as the cluster's owner, from a directory that user can surely enter
  as_owner() { (cd / && runuser -u postgres -- "$@"); }
else
  AS_ROOT=no
  as_owner() { (cd / && "$@"); }
fi

# --- the server binaries ---------------------------------------------------------------------------------
BIN=""
# find_bin [MAJOR]: BIN = the bin directory of that major version, or of the newest one installed
find_bin() {
  local want=${1:-} dir
  BIN=""
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] || continue
    if [ -z "$want" ] || [ "$dir" = "/usr/lib/postgresql/$want/bin" ]; then
      BIN=$dir
    fi
  done
  [ -n "$BIN" ]
}

PSQL=""
PG_ISREADY=""
VERSION=""
# use_bin: the client tools of the same version as $BIN (Debian ships psql and pg_isready there too)
use_bin() {
  local name path
  for name in psql pg_isready; do
    if [ -x "$BIN/$name" ]; then
      path=$BIN/$name
    else
      path=$(command -v "$name" 2>/dev/null) || die "'$name' not found (it comes with Debian's postgresql-client package)"
    fi
    case "$name" in psql) PSQL=$path ;; pg_isready) PG_ISREADY=$path ;; esac
  done
  VERSION=$("$BIN/postgres" --version | sed 's/^postgres (PostgreSQL) //')
}

POLICY=/usr/sbin/policy-rc.d
POLICY_SAVED=""
restore_policy() {
  if [ -n "$POLICY_SAVED" ]; then
    mv -f "$POLICY_SAVED" "$POLICY"
    POLICY_SAVED=""
  else
    rm -f "$POLICY"
  fi
}

install_server() {
  [ "$AS_ROOT" = yes ] || die "no PostgreSQL server under /usr/lib/postgresql and not root: install Debian's postgresql package (apt-get install postgresql), then run this again"
  command -v apt-get >/dev/null 2>&1 \
    || die "no PostgreSQL server under /usr/lib/postgresql and apt-get is not available: install PostgreSQL (postgres, initdb, pg_ctl) from the system's packages"
  mkdir -p "$REPO/var/postgres"
  local log=$REPO/var/postgres/install.log rc=0
  : >"$log"
  echo "postgres.sh: installing Debian's postgresql package (log: $log)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >>"$log" 2>&1 || die "apt-get update failed (log: $log): $(tail -n 1 "$log")"
  if [ -e "$POLICY" ]; then
    POLICY_SAVED=$POLICY.povwatch-postgres.$$
    mv -f "$POLICY" "$POLICY_SAVED"
  fi
  trap restore_policy EXIT  # put back whatever policy-rc.d there was, also on an error or an interrupt
  trap 'exit 130' INT TERM
  printf '#!/bin/sh\n# written by scripts/postgres.sh for the duration of one install\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 postgresql >>"$log" 2>&1 9>&- || rc=$?
  restore_policy
  trap - EXIT INT TERM
  [ "$rc" -eq 0 ] || die "apt-get install postgresql failed (exit $rc, log: $log): $(tail -n 1 "$log")"
  if [ -d /run/systemd/system ]; then  # systemd is running: keep the package's own cluster off at boot too
    systemctl disable postgresql >>"$log" 2>&1 || true
  fi
  find_bin || die "the postgresql package is installed but no server binaries are under /usr/lib/postgresql/*/bin"
  echo "postgres.sh: installed $("$BIN/postgres" --version) in $BIN"
}

# --- where the cluster lives -----------------------------------------------------------------------------
DATA=""
# existing_data: DATA = this checkout's initialised cluster (in the repo, or in /tmp if it was put there), or empty
existing_data() {
  DATA=""
  if [ -f "$REPO_DATA/PG_VERSION" ]; then
    DATA=$REPO_DATA
  elif [ "$(cat "$WHERE" 2>/dev/null)" = "$TMP_DATA" ] && [ -f "$TMP_DATA/PG_VERSION" ]; then
    DATA=$TMP_DATA
  fi
}

# usable DIR: DIR exists (creating it), belongs to the cluster owner, who can enter and write it, and the
# socket path inside it fits the kernel's limit (107 bytes)
usable() {
  local dir=$1 sock="$1/.s.PGSQL.$PORT.lock"
  [ "${#sock}" -le 100 ] || return 1
  mkdir -p "$dir" 2>/dev/null || return 1
  if [ "$AS_ROOT" = yes ]; then
    chown postgres:postgres "$dir" || return 1
  fi
  chmod 700 "$dir" || return 1
  as_owner test -d "$dir" -a -w "$dir" -a -x "$dir"
}

choose_data() {
  if usable "$REPO_DATA"; then
    DATA=$REPO_DATA
  else
    rmdir "$REPO_DATA" 2>/dev/null || true
    usable "$TMP_DATA" || die "cannot make a data directory that the cluster owner can use: neither $REPO_DATA nor $TMP_DATA"
    DATA=$TMP_DATA
    { mkdir -p "$(dirname "$WHERE")" && echo "$DATA" >"$WHERE"; } 2>/dev/null || true
    echo "postgres.sh: $REPO_DATA is not reachable by the cluster owner (or its socket path is too long); the cluster lives in $DATA"
  fi
}

init_cluster() {
  # a half-made directory from an interrupted initdb is ours: start it afresh
  if [ -n "$(ls -A "$DATA" 2>/dev/null)" ]; then
    find "$DATA" -mindepth 1 -delete
  fi
  local log=$DATA.initdb.log
  echo "postgres.sh: initialising a cluster in $DATA (PostgreSQL $VERSION)"
  as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C --no-sync >"$log" 2>&1 \
    || die "initdb failed (log: $log): $(tail -n 1 "$log")"
  # settings of this cluster; written by `start` (the port may change), read through an include
  printf "\n# povwatch: settings written by scripts/postgres.sh on each start\ninclude_if_exists = 'povwatch.conf'\n" \
    | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
}

# running: is the server of $DATA up? (pg_ctl status: 0 running, 3 not running, 4 no usable data dir)
running() {
  as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 || return 1
  # a postmaster killed with SIGKILL stays a zombie until reaped, and pg_ctl takes that for running
  local pid i
  pid=$(sed -n 1p "$DATA/postmaster.pid" 2>/dev/null || true)
  for i in $(seq 1 20); do
    [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" = Z ] || break
    sleep 0.5
  done
  as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

running_port() { sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true; }

conf_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

write_settings() {
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $PORT"
    echo "unix_socket_directories = $(conf_quote "$DATA")"
    echo "fsync = off                # a throw-away test cluster"
    echo "synchronous_commit = off"
    echo "full_page_writes = off"
    echo "max_connections = 100"
  } | as_owner tee "$DATA/povwatch.conf" >/dev/null
}

start_server() {
  local log=$DATA/server.log ready rc=0
  ready=$("$PG_ISREADY" -h 127.0.0.1 -p "$PORT" -t 2 2>&1) || rc=$?
  if [ "$rc" -le 1 ]; then  # 0 accepting, 1 rejecting (starting up): some other server has the port
    die "port $PORT on 127.0.0.1 is taken by another PostgreSQL server ($ready); set POVWATCH_PG_PORT to a free port"
  fi
  write_settings
  local before
  before=$(stat -c %s "$log" 2>/dev/null || echo 0)
  # 9>&-: the server must not inherit (and so hold for ever) this script's lock
  if ! as_owner "$BIN/pg_ctl" -D "$DATA" -l "$log" -w -t 60 start >/dev/null 2>&1 9>&-; then
    local new why  # what this start wrote to the log
    new=$(tail -c +"$((before + 1))" "$log" 2>/dev/null || true)
    why=$(grep -m 1 'could not bind' <<<"$new" || grep -E 'FATAL|PANIC' <<<"$new" | tail -n 1 || tail -n 1 <<<"$new")
    die "PostgreSQL did not start (log: $log): $why"
  fi
  local i
  for i in $(seq 1 60); do
    "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT" -t 1 && return 0
    sleep 0.5
  done
  die "PostgreSQL started but does not answer on 127.0.0.1:$PORT within 30 s (log: $log)"
}

# psql_admin ARGS...: psql as the superuser through the unix socket in the data directory
psql_admin() {
  as_owner "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$DATA" -p "$PORT" -U postgres -d postgres "$@"
}

ensure_role_and_database() {
  local out sql
  sql="DO \$\$ BEGIN
         IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
           CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD';
         END IF;
       END \$\$;"
  out=$(psql_admin -c "$sql" 2>&1) || die "could not create role $ROLE: $(printf '%s\n' "$out" | tail -n 1)"
  if [ -z "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'" 2>/dev/null)" ]; then
    out=$(psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE" 2>&1) \
      || die "could not create database $DATABASE: $(printf '%s\n' "$out" | tail -n 1)"
  fi
}

# --- commands --------------------------------------------------------------------------------------------
cmd_start() {
  find_bin || install_server
  if [ "$AS_ROOT" = yes ]; then
    id postgres >/dev/null 2>&1 || die "the 'postgres' OS user does not exist (Debian's postgresql-common creates it); the server cannot run as root"
  fi
  existing_data
  if [ -z "$DATA" ]; then
    choose_data
  elif [ "$DATA" = "$TMP_DATA" ]; then
    echo "postgres.sh: the cluster lives in $DATA"
  fi
  if [ -f "$DATA/PG_VERSION" ]; then  # (the /tmp one may have been made from another checkout)
    local made_by
    made_by=$(cat "$DATA/PG_VERSION")
    find_bin "$made_by" || die "the cluster in $DATA was made by PostgreSQL $made_by, which is not installed: remove $DATA to start afresh"
    use_bin
  else
    use_bin
    init_cluster
  fi
  if running; then
    local port
    port=$(running_port)
    [ "$port" = "$PORT" ] \
      || die "the cluster in $DATA is already running on port $port, not $PORT: stop it first (bash scripts/postgres.sh stop) or set POVWATCH_PG_PORT=$port"
    echo "postgres.sh: already running on 127.0.0.1:$PORT (data: $DATA)"
  else
    start_server
    echo "postgres.sh: started PostgreSQL $VERSION on 127.0.0.1:$PORT (data: $DATA)"
  fi
  ensure_role_and_database
  echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
}

cmd_stop() {
  existing_data
  if [ -z "$DATA" ]; then
    echo "postgres.sh: no cluster initialised; nothing to stop"
    return 0
  fi
  find_bin "$(cat "$DATA/PG_VERSION")" || die "no PostgreSQL $(cat "$DATA/PG_VERSION") binaries under /usr/lib/postgresql to stop the cluster in $DATA"
  if ! running; then
    echo "postgres.sh: not running (data: $DATA)"
    return 0
  fi
  local out
  out=$(as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop 2>&1) \
    || die "pg_ctl stop failed: $(printf '%s\n' "$out" | tail -n 1)"
  echo "postgres.sh: stopped (data: $DATA)"
}

cmd_status() {
  existing_data
  if [ -z "$DATA" ]; then
    echo "postgres.sh: not running (no cluster initialised)"
    return 3
  fi
  if find_bin "$(cat "$DATA/PG_VERSION")" && running; then
    echo "postgres.sh: running on 127.0.0.1:$(running_port) (data: $DATA)"
    return 0
  fi
  echo "postgres.sh: not running (data: $DATA)"
  return 3
}

[ $# -eq 1 ] || usage
case "$1" in
  start)
    exec 9>"$LOCK"; flock -w 900 9 || die "another scripts/postgres.sh is still busy (lock: $LOCK)"
    cmd_start ;;
  stop)
    exec 9>"$LOCK"; flock -w 900 9 || die "another scripts/postgres.sh is still busy (lock: $LOCK)"
    cmd_stop ;;
  status) rc=0; cmd_status || rc=$?; exit "$rc" ;;
  *) usage ;;
esac
