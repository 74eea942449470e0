#!/usr/bin/env bash
# What the per-request EMF metric line costs on a cached GET /api/v1/users/me: the release
# `local` server with real Postgres and Redis, run with EMF_METRICS=true and =false.
#
# 1. Instructions (valgrind's callgrind; repeatable whatever else the machine is doing): the
#    server under callgrind answers N sequential requests, once per setting; the difference of
#    the two totals over N is what the metric line adds to a request, and the total of a run
#    with N requests less one with none, over N, is what a request costs in all.
# 2. Throughput: wrk at 64 connections, the two settings alternating, ROUNDS rounds of SECS
#    seconds each; the median req/s of each setting.
#
# Needs valgrind and wrk (apt-get install valgrind wrk), Postgres, Redis (scripts/services.sh).
# Usage: scripts/bench-metrics.sh        (N=2000, ROUNDS=5, SECS=10 by default)
set -eu
cd "$(dirname "$0")/.."
N=${N:-2000} ROUNDS=${ROUNDS:-5} SECS=${SECS:-10} CONNS=${CONNS:-64}
DB=postgres://postgres@127.0.0.1:5432/backend_bench_metrics
PORT=3193
WORK=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$WORK"' EXIT

scripts/services.sh >/dev/null
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin local --bin db
psql -q "postgres://postgres@127.0.0.1:5432/postgres" -c "DROP DATABASE IF EXISTS backend_bench_metrics WITH (FORCE)"
DATABASE_URL=$DB ./target/release/db create-database >/dev/null
DATABASE_URL=$DB ./target/release/db up >/dev/null

export APP_ENV=development PORT LOG_LEVEL=warn RATE_LIMIT_MAX=1000000000 DB_POOL_MAX=10 \
  DATABASE_URL=$DB REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX="bench-metrics-$$:"

start() { # metrics(true|false) [wrapper...]
  local metrics=$1
  shift
  EMF_METRICS=$metrics "$@" ./target/release/local >"$WORK/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/ready" && return; sleep 0.1; done
  echo "the server did not start"; cat "$WORK/server.log"; exit 1
}
stop() {
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
}

token() {
  curl -fs -H 'content-type: application/json' \
    -d "{\"email\":\"bench-$(date +%s%N)@example.com\",\"password\":\"correct horse battery staple\",\"name\":\"Bench\"}" \
    "http://127.0.0.1:$PORT/api/v1/auth/register" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# Sequential requests from one keep-alive connection (curl reuses it across the URL list).
requests() { # n token
  [ "$1" -gt 0 ] || return 0
  local urls
  urls=$(for _ in $(seq "$1"); do echo "url = \"http://127.0.0.1:$PORT/api/v1/users/me\""; echo "output = /dev/null"; done)
  curl -fsS -K - -H "authorization: Bearer $2" <<<"$urls"
}

# The token's user and the profile cache exist before any measured run.
start true
TOKEN=$(token)
requests 20 "$TOKEN"
stop

instructions() { # metrics n
  start "$1" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" --trace-children=no
  requests 20 "$TOKEN" # warm: the pools' connections and the cache, in both settings
  requests "$2" "$TOKEN"
  stop
  local total
  total=$(for f in "$WORK"/cg.*; do grep -m1 '^summary:' "$f" | awk '{print $2}'; done | paste -sd+ | bc)
  rm -f "$WORK"/cg.*
  echo "$total"
}
echo "callgrind: $N sequential GET /api/v1/users/me after 20 warm-up requests"
base_on=$(instructions true 0)
with_on=$(instructions true "$N")
with_off=$(instructions false "$N")
base_off=$(instructions false 0)
python3 - "$N" "$base_on" "$with_on" "$base_off" "$with_off" <<'PY'
import sys
n, base_on, with_on, base_off, with_off = map(int, sys.argv[1:])
per_on = (with_on - base_on) / n
per_off = (with_off - base_off) / n
print(f"| EMF_METRICS | instructions per request |")
print(f"|---|---:|")
print(f"| true | {per_on:,.0f} |")
print(f"| false | {per_off:,.0f} |")
print(f"the metric line adds {per_on - per_off:,.0f} instructions, {100 * (per_on - per_off) / per_off:.1f} % of a request")
PY

echo
echo "wrk: $CONNS connections, $ROUNDS rounds of ${SECS} s per setting, alternating; $(nproc) cores; $(date -u +%FT%TZ)"
for round in $(seq "$ROUNDS"); do
  for metrics in true false; do
    start "$metrics"
    wrk -t2 -c"$CONNS" -d2s -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/users/me" >/dev/null
    rps=$(wrk -t2 -c"$CONNS" -d"${SECS}s" -H "authorization: Bearer $TOKEN" \
      "http://127.0.0.1:$PORT/api/v1/users/me" | awk '/Requests\/sec/ {print $2}')
    echo "$metrics $rps" >>"$WORK/rps"
    echo "round $round EMF_METRICS=$metrics: $rps req/s"
    stop
  done
done
python3 - "$WORK/rps" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
on = [float(r) for m, r in rows if m == "true"]
off = [float(r) for m, r in rows if m == "false"]
mon, moff = statistics.median(on), statistics.median(off)
print(f"median req/s: EMF_METRICS=true {mon:,.0f}, false {moff:,.0f}: {100 * (moff - mon) / moff:+.1f} % less with the metric line")
print(f"spread: true {min(on):,.0f}-{max(on):,.0f}, false {min(off):,.0f}-{max(off):,.0f}")
PY
