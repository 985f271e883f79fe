#!/bin/sh
# Entrypoint of taskstore-test/postgres (built by build-images.sh from the host's PostgreSQL 15):
# like the official image's, for what the tests use. Runs as the image's non-root user
# `postgres`; creates the cluster on first start (trust authentication, UTF8, C locale), then
# execs the server as PID 1, so a signal to the container reaches the postmaster itself.
# Arguments: [postgres] <server options...>.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
if [ "${1:-}" = postgres ]; then shift; fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U postgres --auth=trust --no-sync -E UTF8 --locale=C
  # As the official image with POSTGRES_HOST_AUTH_METHOD=trust: clients of a published port come
  # from the bridge's gateway, not from loopback.
  echo "host all all all trust" >>"$PGDATA/pg_hba.conf"
  echo "taskstore-test/postgres: initdb done"
fi
exec postgres -D "$PGDATA" -c jit=off -c unix_socket_directories=/var/run/postgresql "$@"
