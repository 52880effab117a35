#!/usr/bin/env bash
# Makes sure a PostgreSQL 16 or newer is running for the Kafka broker-restart chaos run
# (tansu 0.6's PostgreSQL storage sends SQL that PostgreSQL 15 rejects). Uses the local
# server when it is new enough; otherwise starts PostgreSQL 16 from the `pgserver` wheel
# on PyPI (PostgreSQL binaries in a Python wheel; nothing of it is committed) on
# 127.0.0.1:5433, trust auth, data in ${TMPDIR:-/tmp}/seawall-pg16. Prints the
# environment the tests read (CHAOS_POSTGRES_URL). Safe to run again. Needs root (the
# server runs as the `postgres` user) when it has to start its own.
set -euo pipefail

log() { echo "postgres16: $*" >&2; }

if [ -n "${CHAOS_POSTGRES_URL:-}" ]; then
  exit 0
fi

local_major=$(psql -h 127.0.0.1 -U postgres -d postgres -tAc 'show server_version_num' 2>/dev/null || echo 0)
if [ "${local_major:-0}" -ge 160000 ]; then
  echo "export CHAOS_POSTGRES_URL='postgres://postgres@127.0.0.1:5432'"
  exit 0
fi

port=5433
url="postgres://postgres@127.0.0.1:$port"
if psql "$url/postgres" -tAc 'select 1' >/dev/null 2>&1; then
  echo "export CHAOS_POSTGRES_URL='$url'"
  exit 0
fi

home="${TMPDIR:-/tmp}/seawall-pg16"
bin="$home/wheel/pgserver/pginstall/bin"
if [ ! -x "$bin/postgres" ]; then
  log "fetching PostgreSQL 16 (the pgserver wheel from PyPI)"
  rm -rf "$home/wheel" "$home/download"
  mkdir -p "$home/wheel" "$home/download"
  python3 -m pip download --quiet --no-deps --only-binary=:all: "pgserver==0.1.4" -d "$home/download" >&2
  python3 -m zipfile -e "$home"/download/pgserver-*.whl "$home/wheel"
  chmod +x "$bin"/*
fi
"$bin/postgres" --version >&2
chown -R postgres "$home"
if [ ! -f "$home/data/PG_VERSION" ]; then
  su postgres -s /bin/sh -c "'$bin/initdb' -D '$home/data' -A trust -U postgres" >"$home/initdb.log" 2>&1 ||
    { log "initdb failed; see $home/initdb.log"; exit 1; }
fi
# Every standard stream redirected, so `$(scripts/postgres16.sh)` does not wait on the server.
su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$home/data' -l '$home/server.log' -w -o '-p $port -k $home -c listen_addresses=127.0.0.1' start" </dev/null >&2 ||
  { log "the server did not start; see $home/server.log"; exit 1; }
echo "export CHAOS_POSTGRES_URL='$url'"
