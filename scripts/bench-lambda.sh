#!/usr/bin/env bash
# Each HTTP function's release binary under a local Lambda Runtime API (tests/benches/lambda_sim.rs),
# with real Postgres, Redis and moto: cold start (exec -> first /next, exec -> first response)
# and warm invocations, and the process's memory after many invocations; then the Express
# peer's process start to its first answer, when it is installed in $PEER_DIR (see
# bench-http.sh). A benchmark, not a test: the figures go to docs/BENCHMARKS.md.
#
#   scripts/bench-lambda.sh            # 10 cold starts per case, 200 sequential logins
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10} LOGINS=${LOGINS:-200}
DB=postgres://postgres@127.0.0.1:5432/backend_bench_lambda
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

scripts/services.sh >/dev/null
PEER_DIR=${PEER_DIR:-/tmp/peer-express}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin auth --bin health --bin users --bin uploads --bin db
SIM=$(cargo bench --quiet --no-run --bench lambda_sim -p integration-tests --message-format=json |
  python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
psql -q "postgres://postgres@127.0.0.1:5432/postgres" -c "DROP DATABASE IF EXISTS backend_bench_lambda WITH (FORCE)"
DATABASE_URL=$DB ./target/release/db create-database >/dev/null
DATABASE_URL=$DB ./target/release/db up >/dev/null
DATABASE_URL=$DB ./target/release/db seed >/dev/null

# API Gateway events for /ready and /health, from the stored /health event.
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
event = json.load(open("tests/fixtures/events/health.json"))
for path in ("/ready", "/health"):
    e = json.loads(json.dumps(event))
    e["rawPath"] = path
    e["routeKey"] = "$default"
    e["requestContext"]["http"]["path"] = path
    json.dump(e, open(f"{work}/{path.strip('/')}.json", "w"))
PY

# Keys of its own on the shared Redis: its logins, all from the stored event's client IP, would
# otherwise leave that IP's rate-limit count (15 min) under the default prefix, for any other
# function started on the same event to find.
export APP_ENV=development LOG_LEVEL=warn RATE_LIMIT_MAX=100000000 DATABASE_URL=$DB \
  REDIS_KEY_PREFIX=bench-lambda:
sim() { "$SIM" "$@"; }
median() { # field, from the JSON lines on stdin
  python3 -c "import json,statistics,sys; v=[json.loads(l)['$1'] for l in sys.stdin if l.strip()]; print(round(statistics.median(v), 2))"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); $(date -u +%FT%TZ)"
echo "| function | event | exec -> first /next (ms) | exec -> first response (ms) | first invocation (ms) | warm invocation (ms) | RSS after (MiB) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for case in "health ready" "health health" "users ready" "uploads ready" "auth ready"; do
  set -- $case
  : >"$WORK/runs"
  for _ in $(seq "$RUNS"); do
    sim --event "$WORK/$2.json" --count 20 -- "./target/release/$1" >>"$WORK/runs"
  done
  echo "| $1 | /$2 | $(median exec_to_next_ms <"$WORK/runs") | $(median first_response_ms <"$WORK/runs") | $(median first_invocation_ms <"$WORK/runs") | $(median warm_median_ms <"$WORK/runs") | $(median rss_mib <"$WORK/runs") |"
done

echo
echo "auth, $LOGINS sequential logins (seed user):"
sim --event tests/fixtures/events/auth_login.json --count "$LOGINS" -- ./target/release/auth

if [ -f "$PEER_DIR/server.js" ]; then
  echo
  echo "express peer (WORKERS=1), process start -> first 200 from /ready, $RUNS runs:"
  : >"$WORK/runs"
  for _ in $(seq "$RUNS"); do
    sim --http http://127.0.0.1:3198/ready -- env -C "$PEER_DIR" WORKERS=1 PORT=3198 LOG_LEVEL=warn \
      DATABASE_URL=postgres://postgres@127.0.0.1:5432/peer_express_cold node server.js >>"$WORK/runs"
  done
  echo "median $(median first_response_ms <"$WORK/runs") ms, RSS $(median rss_mib <"$WORK/runs") MiB"
fi
