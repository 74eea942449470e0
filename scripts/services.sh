#!/usr/bin/env bash
# Makes sure the services the API and its tests talk to are up on their loopback ports:
# Postgres 127.0.0.1:5432 and Redis 127.0.0.1:6379. Starts a stopped local install; on a machine
# without them, run `docker compose up -d` first.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do
    if $check; then return 0; fi
    sleep 0.5
  done
  echo "services: $what did not come up" >&2
  return 1
}

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "services: starting Postgres"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
    wait_for Postgres pg_up
  else
    echo "services: Postgres is not running on 127.0.0.1:5432; start it (docker compose up -d)" >&2
    exit 1
  fi
fi

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis redis_up
  else
    echo "services: Redis is not running on 127.0.0.1:6379; start it (docker compose up -d)" >&2
    exit 1
  fi
fi
# moto: the S3 and Secrets Manager API on 127.0.0.1:5000 (tests and local uploads).
moto_up() { (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; }
if ! moto_up; then
  if ! command -v moto_server >/dev/null 2>&1; then
    # A virtual env of its own: moto pins botocore, which must not disturb a system awscli.
    tools="${TOOLS_VENV:-$HOME/.cache/backend-tools/venv}"
    if [ ! -x "$tools/bin/moto_server" ]; then
      echo "services: installing moto into $tools"
      python3 -m venv "$tools"
      "$tools/bin/pip" install --quiet 'moto[server]'
    fi
    export PATH="$tools/bin:$PATH"
  fi
  echo "services: starting moto"
  mkdir -p "${TMPDIR:-/tmp}"
  nohup moto_server -H 127.0.0.1 -p 5000 >"${TMPDIR:-/tmp}/moto.log" 2>&1 &
  wait_for moto moto_up
fi
# A second moto on 127.0.0.1:5001 for the backup tests, from the tools virtual env at a version
# whose multipart uploads complete cleanly (5.2.0 to 5.2.4 answer CompleteMultipartUpload with
# the wrong XML root: getmoto/moto#10055).
moto_multipart_up() { (exec 3<>/dev/tcp/127.0.0.1/5001) 2>/dev/null; }
if ! moto_multipart_up; then
  tools="${TOOLS_VENV:-$HOME/.cache/backend-tools/venv}"
  if ! "$tools/bin/python" -c 'import moto, sys; sys.exit(tuple(map(int, moto.__version__.split(".")[:3])) < (5, 2, 5))' 2>/dev/null; then
    echo "services: installing moto 5.2.5 into $tools"
    [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet 'moto[server]>=5.2.5'
  fi
  echo "services: starting moto for multipart uploads"
  nohup "$tools/bin/moto_server" -H 127.0.0.1 -p 5001 >"${TMPDIR:-/tmp}/moto-5001.log" 2>&1 &
  wait_for "moto (5001)" moto_multipart_up
fi
echo "services: Postgres, Redis and moto are up"
