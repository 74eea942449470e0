#!/usr/bin/env bash
# Soak: 10 minutes of a mixed profile at 64 connections (registrations, logins, refreshes,
# /users/me, upload creation) against the release `local` server with real Postgres, Redis and
# moto, sampling the server's RSS, threads, open descriptors, Postgres connections and Redis
# clients every 10 s (tests/benches/soak.rs). Fails when one of them grows without bound.
# A benchmark, not a test: the curve goes to docs/BENCHMARKS.md.
#
#   scripts/bench-soak.sh                 # 600 s, 64 connections
#   SOAK_SECS=120 scripts/bench-soak.sh   # a shorter run
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-3195}
DB=postgres://postgres@127.0.0.1:5432/backend_bench_soak
pid="" redis_pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; true' EXIT

scripts/services.sh >/dev/null
# A Redis of the soak's own, so that its client count is the server's alone.
redis-server --port 6392 --save '' --appendonly no >/tmp/bench-soak-redis.log 2>&1 &
redis_pid=$!
export REDIS_URL=redis://127.0.0.1:6392 SOAK_REDIS_URL=redis://127.0.0.1:6392
# The uploads bucket in the S3 emulator (an existing one answers 409).
curl -s -o /dev/null -X PUT http://127.0.0.1:5000/backend-uploads || true
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --quiet --bin local --bin db
  cargo bench --quiet --no-run --bench soak -p integration-tests
fi
psql -q "postgres://postgres@127.0.0.1:5432/postgres" -c "DROP DATABASE IF EXISTS backend_bench_soak WITH (FORCE)"
DATABASE_URL=$DB ./target/release/db create-database >/dev/null
AWS_ENDPOINT_URL=http://127.0.0.1:5000 APP_ENV=development PORT=$PORT LOG_LEVEL=warn RATE_LIMIT_MAX=100000000 DATABASE_URL=$DB \
  ./target/release/local >/tmp/bench-soak-server.log 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/ready" && break; sleep 0.2; done
echo "server: release local, pid $pid, $(nproc) cores; $(date -u +%FT%TZ)"
SOAK_URL=http://127.0.0.1:$PORT SOAK_PID=$pid SOAK_DATABASE_URL=$DB \
  cargo bench --quiet --bench soak -p integration-tests
