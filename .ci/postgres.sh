# A throwaway PostgreSQL server for the tests, on this machine only.
#
#   . .ci/postgres.sh                  # in a shell (or .ci/run): start it, export its URL
#   bash .ci/postgres.sh CMD ARGS...   # start it, run CMD with the URL set, stop it
#
# When sourced, it exports TASKCATALOG_TEST_POSTGRES (postgresql://postgres@127.0.0.1:PORT/postgres)
# and stops the server when the sourcing shell exits (added to its EXIT trap,
# whatever that trap already does). The tests create a database of their own
# per test on it and drop it after (tests/db_engines.py).
#
# The server: Debian's PostgreSQL binaries (/usr/lib/postgresql/N/bin, or
# initdb on PATH), installed with apt-get when missing (about 12 s); a new
# cluster in a folder under /tmp (initdb refuses to run as root, so as root
# it runs as the `postgres` user, through runuser, in a folder owned by it);
# trust authentication (but for one role, see _TC_PG_PASSWORD_ROLE),
# listening on 127.0.0.1 only, on a free port, with
# fsync off (a crash loses a test database, nothing else). About 1 s when the
# binaries are there. With TASKCATALOG_TEST_POSTGRES already set, nothing is
# started: that server is used.

# The role the wrong-password tests log in as (tests/test_db_postgres.py, PASSWORD_ROLE).
_TC_PG_PASSWORD_ROLE=taskcatalog_password_test

_tc_pg_fail() {
  echo "postgres.sh: $*" >&2
  return 1
}

# The folder holding initdb and pg_ctl: on PATH, or Debian's newest version.
_tc_pg_bindir() {
  local found
  if found=$(command -v initdb 2>/dev/null) && [ -x "$(dirname "$found")/pg_ctl" ]; then
    dirname "$found"
    return 0
  fi
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] && [ -x "$found/initdb" ] && [ -x "$found/pg_ctl" ] && echo "$found"
}

_tc_pg_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; fi
  command -v apt-get >/dev/null 2>&1 || { _tc_pg_fail "no PostgreSQL found and no apt-get to install it"; return 1; }
  echo "=== installing postgresql (apt-get) for the PostgreSQL tests" >&2
  $sudo apt-get update -qq >/dev/null \
    && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
    || { _tc_pg_fail "apt-get could not install postgresql"; return 1; }
}

# A TCP port nobody listens on at 127.0.0.1 right now.
_tc_pg_free_port() {
  local python
  python=$(command -v python3 || command -v python) || { _tc_pg_fail "no python to pick a free port"; return 1; }
  "$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Run a command as the cluster's owner: `postgres` when we are root (initdb
# refuses root), else ourselves.
_tc_pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

tc_postgres_stop() {
  if [ -n "${_TC_PG_DIR:-}" ] && [ -d "$_TC_PG_DIR" ]; then
    _tc_pg_as_owner "$_TC_PG_BIN/pg_ctl" stop -D "$_TC_PG_DIR/data" -m immediate -w >/dev/null 2>&1
    rm -rf "$_TC_PG_DIR"
  fi
  _TC_PG_DIR=""
}

tc_postgres_start() {
  if [ -n "${TASKCATALOG_TEST_POSTGRES:-}" ]; then
    return 0  # a server was given
  fi
  _TC_PG_BIN=$(_tc_pg_bindir)
  if [ -z "$_TC_PG_BIN" ]; then
    _tc_pg_install || return 1
    _TC_PG_BIN=$(_tc_pg_bindir)
    [ -n "$_TC_PG_BIN" ] || { _tc_pg_fail "postgresql installed, but no initdb and pg_ctl found"; return 1; }
  fi
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    _tc_pg_fail "running as root, and there is no postgres user to run the server as"
    return 1
  fi
  _TC_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/taskcatalog-postgres.XXXXXX") || return 1
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$_TC_PG_DIR"; fi
  chmod 700 "$_TC_PG_DIR"
  local port log="$_TC_PG_DIR/server.log"
  if ! _tc_pg_as_owner "$_TC_PG_BIN/initdb" -D "$_TC_PG_DIR/data" -U postgres --auth=trust \
       --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$_TC_PG_DIR/initdb.log" 2>&1; then
    cat "$_TC_PG_DIR/initdb.log" >&2
    tc_postgres_stop
    _tc_pg_fail "initdb failed"
    return 1
  fi
  # One role must log in with a password over TCP (scram-sha-256; every other
  # user stays trust): the wrong-password tests. The tests create the role
  # (with its password) themselves, so they also run on a server given from
  # outside whose pg_hba.conf checks passwords; the first matching line wins.
  if ! _tc_pg_as_owner sed -i "1i host all $_TC_PG_PASSWORD_ROLE 127.0.0.1/32 scram-sha-256" "$_TC_PG_DIR/data/pg_hba.conf"; then
    tc_postgres_stop
    _tc_pg_fail "cannot edit pg_hba.conf"
    return 1
  fi
  # A port may be taken between choosing and listening: try a few.
  local attempt
  for attempt in 1 2 3; do
    port=$(_tc_pg_free_port) || { tc_postgres_stop; return 1; }
    if _tc_pg_as_owner "$_TC_PG_BIN/pg_ctl" start -D "$_TC_PG_DIR/data" -w -t 60 -l "$log" \
         -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$_TC_PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
         >/dev/null 2>&1; then
      export TASKCATALOG_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$port/postgres"
      echo "=== PostgreSQL $("$_TC_PG_BIN/pg_ctl" --version | awk '{print $3}') for the tests at $TASKCATALOG_TEST_POSTGRES" >&2
      return 0
    fi
  done
  cat "$log" >&2 2>/dev/null
  tc_postgres_stop
  _tc_pg_fail "the PostgreSQL server did not start"
}

# Add tc_postgres_stop to the EXIT trap of the shell that sourced this,
# keeping what that trap already does.
_tc_pg_trap() {
  local previous
  previous=$(trap -p EXIT)
  if [ -n "$previous" ]; then
    eval "set -- $previous"  # trap -- 'COMMAND' EXIT
    trap "tc_postgres_stop; $3" EXIT
  else
    trap tc_postgres_stop EXIT
  fi
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced: start, export the URL, stop when the shell exits. The status is
  # the start's, for the caller to check.
  tc_postgres_start && _tc_pg_trap
else
  set -uo pipefail
  if [ $# -eq 0 ]; then
    echo "usage: . .ci/postgres.sh   or   bash .ci/postgres.sh COMMAND [ARGS...]" >&2
    exit 2
  fi
  tc_postgres_start || exit 1
  trap tc_postgres_stop EXIT
  "$@"
fi
