#!/bin/sh
# First start: a cluster owned by POSTGRES_USER with POSTGRES_PASSWORD (scram), database POSTGRES_DB, listening on
# every address; then PostgreSQL in the foreground, as the official image does.
set -eu
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s' "$POSTGRES_PASSWORD" > /tmp/pwfile
  chown postgres /tmp/pwfile
  su postgres -c "initdb -D '$PGDATA' --encoding=UTF8 --locale=C.UTF-8 -U '$POSTGRES_USER' --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256" >/dev/null
  rm -f /tmp/pwfile
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  su postgres -c "pg_ctl -D '$PGDATA' -w start -o '-c listen_addresses='" >/dev/null
  su postgres -c "createdb -U '$POSTGRES_USER' '${POSTGRES_DB:-$POSTGRES_USER}'"
  su postgres -c "pg_ctl -D '$PGDATA' -w stop" >/dev/null
fi
exec su postgres -c "exec postgres -D '$PGDATA'"
