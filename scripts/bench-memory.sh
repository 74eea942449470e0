#!/usr/bin/env bash
# Memory under a burst of sign-ups: the release `local` server, 3 rounds of 200 registrations at
# concurrency 48 (each one an argon2id hash holding a 19 MiB block), with the server's resident
# set size sampled every 100 ms. Prints, per round, the peak RSS and the RSS once the round is
# over, and the answers by status. A benchmark, not a test: the figures go to docs/BENCHMARKS.md.
#
#   scripts/bench-memory.sh                       # glibc malloc with its defaults
#   MALLOC_ARENA_MAX=2 scripts/bench-memory.sh    # any allocator setting, passed to the server
#
# Needs Postgres, Redis and moto (scripts/services.sh) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} PER_ROUND=${PER_ROUND:-200} CONCURRENCY=${CONCURRENCY:-48}
PORT=${PORT:-3193}
DB=postgres://postgres@127.0.0.1:5432/backend_bench_memory
WORK=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

scripts/services.sh >/dev/null
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin local --bin db
psql -q "postgres://postgres@127.0.0.1:5432/postgres" -c "DROP DATABASE IF EXISTS backend_bench_memory WITH (FORCE)"
APP_ENV=development PORT=$PORT LOG_LEVEL=warn RATE_LIMIT_MAX=100000000 DATABASE_URL=$DB \
  ./target/release/local >"$WORK/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/ready" && break; sleep 0.2; done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

register() { # n
  curl -s -o /dev/null -w '%{http_code}\n' -H 'content-type: application/json' \
    -d "{\"email\":\"mem-$1-$RANDOM$RANDOM@example.com\",\"password\":\"correct horse battery staple\",\"name\":\"Mem\"}" \
    "http://127.0.0.1:$PORT/api/v1/auth/register"
}
export -f register
export PORT

echo "idle RSS: $(mib "$(rss_kb)") MiB"
echo "| round | peak RSS (MiB) | RSS after (MiB) | registrations/s | answers |"
echo "|---|---:|---:|---:|---|"
for round in $(seq "$ROUNDS"); do
  peak=0
  started=$(date +%s.%N)
  ( seq "$PER_ROUND" | xargs -P "$CONCURRENCY" -I{} bash -c "register $round-{}" >"$WORK/codes" ) &
  load=$!
  while kill -0 "$load" 2>/dev/null; do
    now=$(rss_kb)
    [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.1
  done
  wait "$load"
  rate=$(awk -v s="$started" -v e="$(date +%s.%N)" -v n="$PER_ROUND" 'BEGIN { printf "%.1f", n / (e - s) }')
  sleep 1
  after=$(rss_kb)
  answers=$(sort "$WORK/codes" | uniq -c | awk '{printf "%s× %s ", $1, $2}')
  echo "| $round | $(mib "$peak") | $(mib "$after") | $rate | $answers|"
done
