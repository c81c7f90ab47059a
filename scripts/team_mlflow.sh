#!/usr/bin/env bash
# A team MLflow server on PostgreSQL, on this machine (README: "A team MLflow server").
#
#   bash scripts/team_mlflow.sh start DIR [PORT]   # http://127.0.0.1:PORT (default 5000)
#   bash scripts/team_mlflow.sh stop DIR
#
# DIR holds everything: the database cluster (DIR/postgres, Debian's postgresql; created on first
# start), the artifact store (DIR/artifacts, served by the server itself: clients upload over HTTP)
# and the logs. PostgreSQL listens on a Unix socket in DIR/postgres only, never on a network
# port; the server listens on 127.0.0.1 (put a proxy with TLS and a login in front to share it).
# As root, PostgreSQL runs as the postgres user, so DIR must be one that user can reach.
set -euo pipefail
cmd="${1:-}" dir="${2:-}" port="${3:-5000}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR [PORT]" >&2
  exit 2
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$pgbin" ]; then
  echo "team_mlflow: PostgreSQL is not installed (bash scripts/setup.sh installs it)" >&2
  exit 1
fi
pgport=5433  # the socket's name (.s.PGSQL.5433); no TCP port is opened
db="$dir/postgres"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$cmd" in
start)
  chmod 755 "$dir"
  if [ ! -f "$db/PG_VERSION" ]; then
    mkdir -p "$db"
    [ "$(id -u)" = 0 ] && chown postgres: "$db"
    as_pg "$pgbin/initdb" -D "$db" -U mlflow -A trust --no-instructions >"$dir/initdb.log"
  fi
  as_pg "$pgbin/pg_ctl" -D "$db" status >/dev/null 2>&1 \
    || as_pg "$pgbin/pg_ctl" -D "$db" -l "$db/server.log" -w -s -o "-k $db -p $pgport -c listen_addresses=''" start
  as_pg "$pgbin/psql" -h "$db" -p "$pgport" -U mlflow -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1 \
    || as_pg "$pgbin/createdb" -h "$db" -p "$pgport" -U mlflow mlflow
  mkdir -p "$dir/artifacts"
  rm -f "$dir/mlflow.pid"
  # its own session (setsid may fork): the pid it writes leads the group that `stop` ends
  setsid sh -c 'echo $$ >"$1/mlflow.pid"; shift; exec "$@"' sh "$dir" \
    mlflow server --backend-store-uri "postgresql+psycopg2://mlflow@/mlflow?host=$db&port=$pgport" \
    --artifacts-destination "$dir/artifacts" --serve-artifacts --host 127.0.0.1 --port "$port" \
    --workers 1 >"$dir/mlflow.log" 2>&1 </dev/null &
  for _ in $(seq 1 20); do [ -s "$dir/mlflow.pid" ] && break; sleep 0.1; done
  for _ in $(seq 1 120); do
    if python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2>/dev/null; then
      echo "team_mlflow: http://127.0.0.1:$port (PostgreSQL in $db, artifacts in $dir/artifacts)"
      exit 0
    fi
    if ! kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null; then
      echo "team_mlflow: the server exited; its log:" >&2
      tail -n 20 "$dir/mlflow.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "team_mlflow: the server did not answer within 60 s ($dir/mlflow.log)" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/mlflow.pid" ]; then
    kill -- "-$(cat "$dir/mlflow.pid")" 2>/dev/null || true  # the server and its workers
    rm -f "$dir/mlflow.pid"
  fi
  if [ -f "$db/postmaster.pid" ]; then
    as_pg "$pgbin/pg_ctl" -D "$db" -w -s -m fast stop
  fi
  ;;
*)
  echo "usage: $0 start|stop DIR [PORT]" >&2
  exit 2
  ;;
esac
