#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server:
#
#   scripts/with-postgres.sh cargo test -p kedai-engine
#
# Starts one server in a new temporary directory (initdb, trust
# authentication, user postgres, listening on 127.0.0.1 only, on a free
# port), exports KEDAI_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:PORT/postgres
# (the tests create a database of their own on it), runs the command, and
# always stops the server and removes the directory afterwards. Exits with
# the command's status.
#
# Needs the PostgreSQL server binaries (pg_config --bindir, else the newest
# /usr/lib/postgresql/*/bin). PostgreSQL refuses to run as root: as root,
# the directory is handed to the postgres user and every server command
# runs through runuser.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi

bindir=""
if command -v pg_config >/dev/null 2>&1; then
  bindir=$(pg_config --bindir 2>/dev/null || true)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ] || [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pg_ctl" ]; then
  bindir=""
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n); do
    if [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      bindir=$dir
    fi
  done
fi
if [ -z "$bindir" ]; then
  echo "with-postgres: PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin)" >&2
  exit 1
fi

as_server() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/kedai-pg-XXXXXXXX")
started=""
cleanup() {
  if [ -n "$started" ]; then
    as_server "$bindir/pg_ctl" stop -D "$dir/data" -m immediate -w -t 10 >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
fi
if ! as_server "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale --no-sync \
  >"$dir/initdb.log" 2>&1; then
  echo "with-postgres: initdb failed:" >&2
  tail -n 20 "$dir/initdb.log" >&2
  exit 1
fi

# A free port: the kernel picks one for a socket bound to port 0. If another
# process takes it before the server binds it, try again with another.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    # No python: a random high port that nothing listens on yet.
    local port
    while :; do
      port=$((20000 + RANDOM % 40000))
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "$port"
        return
      fi
    done
  fi
}

for attempt in 1 2 3 4 5; do
  port=$(free_port)
  if as_server "$bindir/pg_ctl" start -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=400" \
    >/dev/null 2>&1; then
    started=1
    break
  fi
  # Stop a server that came up too late for the wait, then decide.
  as_server "$bindir/pg_ctl" stop -D "$dir/data" -m immediate -w -t 10 >/dev/null 2>&1 || true
  if ! grep -qE "could not bind|already in use" "$dir/server.log" 2>/dev/null || [ "$attempt" -eq 5 ]; then
    echo "with-postgres: the server did not start:" >&2
    tail -n 20 "$dir/server.log" >&2 || true
    exit 1
  fi
done

export KEDAI_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2

status=0
"$@" || status=$?
exit "$status"
