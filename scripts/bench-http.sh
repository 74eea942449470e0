#!/usr/bin/env bash
# Load run on loopback: GET /health and GET /api/v1/users/me (valid token) against the `local`
# server (release build), and against the Express peer of ../shared/peers/express when it is
# installed in $PEER_DIR (copy it there and `npm ci`). Runs are interleaved A/B/A.
# Needs wrk (apt-get install wrk), Postgres, Redis and moto (scripts/services.sh).
# Usage: scripts/bench-http.sh [duration, default 10s] [connections, default 32]
set -eu
cd "$(dirname "$0")/.."
DURATION=${1:-10s} CONNS=${2:-32}
PEER_DIR=${PEER_DIR:-/tmp/peer-express}
OURS=127.0.0.1:3191 PEER=127.0.0.1:3197
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

scripts/services.sh >/dev/null
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --bin local --bin db >/dev/null 2>&1
DATABASE_URL=postgres://postgres@127.0.0.1:5432/backend_bench_http ./target/release/db create-database >/dev/null
APP_ENV=development PORT=3191 LOG_LEVEL=warn RATE_LIMIT_MAX=100000000 DB_POOL_MAX=10 \
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/backend_bench_http ./target/release/local >/tmp/bench-local.log 2>&1 &
pids+=($!)
if [ -f "$PEER_DIR/server.js" ]; then
  (cd "$PEER_DIR" && WORKERS=${PEER_WORKERS:-2} PORT=3197 LOG_LEVEL=warn RATE_LIMIT_MAX=100000000 node server.js >/tmp/bench-peer.log 2>&1) &
  pids+=($!)
fi
for _ in $(seq 100); do curl -fs -o /dev/null "http://$OURS/ready" && break; sleep 0.2; done

token() { # host
  local email="bench-$(date +%s%N)@example.com"
  curl -fs -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"correct horse battery staple\",\"name\":\"Bench\"}" \
    "http://$1/api/v1/auth/register" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

run() { # label host path [token]
  local auth=()
  [ -n "${4:-}" ] && auth=(-H "authorization: Bearer $4")
  wrk -t2 -c"$CONNS" -d2s "${auth[@]}" "http://$2$3" >/dev/null
  wrk -t2 -c"$CONNS" -d"$DURATION" --latency "${auth[@]}" "http://$2$3" >/tmp/wrk.out
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' /tmp/wrk.out)
  p50=$(awk '$1=="50%" {print $2}' /tmp/wrk.out)
  p99=$(awk '$1=="99%" {print $2}' /tmp/wrk.out)
  non2xx=$(awk '/Non-2xx/ {print $NF}' /tmp/wrk.out)
  echo "| $1 | $3 | $rps | $p50 | $p99 | ${non2xx:-0} |"
}

echo "| server | route | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
ours_token=$(token "$OURS")
peer_token=""
if [ -f "$PEER_DIR/server.js" ]; then
  for _ in $(seq 100); do curl -fs -o /dev/null "http://$PEER/ready" && break; sleep 0.2; done
  peer_token=$(token "$PEER")
fi
for round in A B A; do
  if [ "$round" = A ]; then
    run "rust local" "$OURS" /health
    run "rust local" "$OURS" /api/v1/users/me "$ours_token"
  elif [ -n "$peer_token" ]; then
    run "express (WORKERS=${PEER_WORKERS:-2})" "$PEER" /health
    run "express (WORKERS=${PEER_WORKERS:-2})" "$PEER" /api/v1/users/me "$peer_token"
  fi
done
