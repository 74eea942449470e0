#!/usr/bin/env bash
# Load runs on loopback against the release `local` server with real Postgres, Redis and moto,
# and against the Express peer of ../shared/peers/express when it is installed in $PEER_DIR
# (copy it there and `npm ci`). Ours and the peer alternate, endpoint by endpoint, in one run.
#
# - GET /health, GET /api/v1/users/me, GET /api/v1/uploads (a list of 10; ours only: the peer
#   has no uploads): wrk with scripts/bench-wrk.lua for the percentiles.
# - POST /api/v1/auth/refresh, and a mixed profile (90 % GET /users/me, 10 % refresh): the
#   session-per-connection generator of tests/benches/load.rs, since a refresh token rotates on
#   every use.
# Then the round trips per request of a cached /users/me: Redis `INFO commandstats` and the
#   bench database's transactions (`pg_stat_database.xact_commit`) before and after a run.
#
# Needs wrk (apt-get install wrk), Postgres, Redis and moto (scripts/services.sh).
# Usage: scripts/bench-http.sh [seconds, default 30] [connections, default 64]
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-30} CONNS=${2:-64}
PEER_DIR=${PEER_DIR:-/tmp/peer-express}
OURS=127.0.0.1:3191 PEER=127.0.0.1:3197
OURS_DB=backend_bench_http
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

scripts/services.sh >/dev/null
# The uploads bucket in the S3 emulator (an existing one answers 409).
curl -s -o /dev/null -X PUT http://127.0.0.1:5000/backend-uploads || true
# A Redis of the bench's own, so that its command counts are the servers' alone.
REDIS_PORT=6391
redis-server --port $REDIS_PORT --save '' --appendonly no >/tmp/bench-redis.log 2>&1 &
pids+=($!)
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --quiet --bin local --bin db
  cargo bench --quiet --no-run --bench load -p integration-tests
fi
psql -q "postgres://postgres@127.0.0.1:5432/postgres" -c "DROP DATABASE IF EXISTS $OURS_DB WITH (FORCE)"
DATABASE_URL=postgres://postgres@127.0.0.1:5432/$OURS_DB ./target/release/db create-database >/dev/null
AWS_ENDPOINT_URL=http://127.0.0.1:5000 APP_ENV=development PORT=3191 LOG_LEVEL=warn RATE_LIMIT_MAX=1000000000 DB_POOL_MAX=10 \
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/$OURS_DB ./target/release/local >/tmp/bench-local.log 2>&1 &
pids+=($!)
peer=""
if [ -f "$PEER_DIR/server.js" ]; then
  (cd "$PEER_DIR" && WORKERS=${PEER_WORKERS:-2} PORT=3197 LOG_LEVEL=warn RATE_LIMIT_MAX=1000000000 exec node server.js >/tmp/bench-peer.log 2>&1) &
  pids+=($!)
  peer="express (WORKERS=${PEER_WORKERS:-2})"
fi
for _ in $(seq 100); do curl -fs -o /dev/null "http://$OURS/ready" && break; sleep 0.2; done
[ -n "$peer" ] && for _ in $(seq 100); do curl -fs -o /dev/null "http://$PEER/ready" && break; sleep 0.2; done

token() { # host
  curl -fs -H 'content-type: application/json' \
    -d "{\"email\":\"bench-$(date +%s%N)@example.com\",\"password\":\"correct horse battery staple\",\"name\":\"Bench\"}" \
    "http://$1/api/v1/auth/register" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

wrk_row() { # label host path [token]
  local auth=()
  [ -n "${4:-}" ] && auth=(-H "authorization: Bearer $4")
  wrk -t2 -c"$CONNS" -d3s "${auth[@]}" "http://$2$3" >/dev/null
  wrk -t2 -c"$CONNS" -d"${SECS}s" -s scripts/bench-wrk.lua "${auth[@]}" "http://$2$3" |
    awk -v label="$1" -v path="$3" '$1=="RESULT" {printf "| %s | GET %s | %s | %s ms | %s ms | %s ms | %.2f %% |\n", label, path, $2, $3, $4, $5, ($6 / $7) * 100}'
}

load_row() { # label host profile
  LOAD_URL="http://$2" LOAD_PROFILE=$3 LOAD_CONNECTIONS=$CONNS LOAD_SECS=$SECS LOAD_LABEL="$1" \
    cargo bench --quiet --bench load -p integration-tests 2>/dev/null
}

ours_token=$(token "$OURS")
peer_token=""
[ -n "$peer" ] && peer_token=$(token "$PEER")
for _ in $(seq 10); do
  curl -fs -o /dev/null -H "authorization: Bearer $ours_token" -H 'content-type: application/json' \
    -d '{"filename":"report.pdf","content_type":"application/pdf","size":1024}' "http://$OURS/api/v1/uploads"
done

echo "$CONNS connections, ${SECS} s per row after a 3 s warm-up; $(nproc) cores; $(date -u +%FT%TZ)"
echo
echo "| server | request | req/s | p50 | p95 | p99 | errors |"
echo "|---|---|---:|---:|---:|---:|---:|"
wrk_row "rust local" "$OURS" /health
[ -n "$peer" ] && wrk_row "$peer" "$PEER" /health
wrk_row "rust local" "$OURS" /api/v1/users/me "$ours_token"
[ -n "$peer" ] && wrk_row "$peer" "$PEER" /api/v1/users/me "$peer_token"
wrk_row "rust local" "$OURS" /api/v1/uploads "$ours_token"
load_row "rust local" "$OURS" refresh
[ -n "$peer" ] && load_row "$peer" "$PEER" refresh
load_row "rust local" "$OURS" mixed
[ -n "$peer" ] && load_row "$peer" "$PEER" mixed

# Round trips of a cached GET /users/me: counted over a 5 s run of ours alone.
commandstats() { redis-cli -p $REDIS_PORT INFO commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ {print $1, $3}'; }
xacts() { psql -Atq "postgres://postgres@127.0.0.1:5432/postgres" -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$OURS_DB'"; }
wrk -t2 -c"$CONNS" -d2s -H "authorization: Bearer $ours_token" "http://$OURS/api/v1/users/me" >/dev/null
sleep 1.5
before_redis=$(commandstats) before_pg=$(xacts)
requests=$(wrk -t2 -c"$CONNS" -d5s -s scripts/bench-wrk.lua -H "authorization: Bearer $ours_token" "http://$OURS/api/v1/users/me" | awk '$1=="RESULT" {print $7}')
sleep 11 # a backend publishes its statistics within 10 s of going idle (PGSTAT_IDLE_INTERVAL)
after_redis=$(commandstats) after_pg=$(xacts)
echo
echo "Per cached GET /api/v1/users/me ($requests requests):"
echo
echo "| counter | per request |"
echo "|---|---:|"
join <(echo "$before_redis" | sort) <(echo "$after_redis" | sort) -a2 -e0 -o 0,1.2,2.2 |
  awk -v n="$requests" '{d = $3 - $2; if (d > 0) printf "| Redis %s | %.3f |\n", substr($1, 9), d / n}'
echo "(Commands a Lua script runs are counted too: \`evalsha\` is the one round trip; the"
echo "\`incr\`, \`pttl\` and \`get\` under it run inside it.)"
awk -v n="$requests" -v a="$before_pg" -v b="$after_pg" 'BEGIN { printf "| Postgres transactions (bench database) | %.3f |\n", (b - a) / n }'

# Round trips of a refresh: 200 in a row on one session, each with the previous answer's token.
refresh_token=$(curl -fs -H 'content-type: application/json' \
  -d "{\"email\":\"chain-$(date +%s%N)@example.com\",\"password\":\"correct horse battery staple\",\"name\":\"Chain\"}" \
  "http://$OURS/api/v1/auth/register" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
sleep 1.5
before_redis=$(commandstats) before_pg=$(xacts)
python3 - "$OURS" "$refresh_token" <<'PY'
import json, sys, urllib.request
host, token = sys.argv[1], sys.argv[2]
for _ in range(200):
    req = urllib.request.Request(f"http://{host}/api/v1/auth/refresh", method="POST",
                                 data=json.dumps({"refresh_token": token}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as res:
        token = json.load(res)["refresh_token"]
PY
sleep 11
after_redis=$(commandstats) after_pg=$(xacts)
echo
echo "Per POST /api/v1/auth/refresh (200 in a row):"
echo
echo "| counter | per request |"
echo "|---|---:|"
join <(echo "$before_redis" | sort) <(echo "$after_redis" | sort) -a2 -e0 -o 0,1.2,2.2 |
  awk '{d = $3 - $2; if (d > 0) printf "| Redis %s | %.3f |\n", substr($1, 9), d / 200}'
awk -v a="$before_pg" -v b="$after_pg" 'BEGIN { printf "| Postgres transactions (bench database) | %.3f |\n", (b - a) / 200 }'
