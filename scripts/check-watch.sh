#!/usr/bin/env bash
# Runs the README's `cargo lambda watch` flow and checks it from outside: each route group's
# real binary behind cargo-lambda's emulator, reached under its real paths through the
# workspace's watch router. Asks for /health, a login and /api/v1/users/me.
#
# Uses its own database (backend_watch) and port, so it never disturbs a developer's server.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-lambda >/dev/null 2>&1; then
  pip install --quiet 'cargo-lambda==1.9.2'
fi

PORT_WATCH=${WATCH_PORT:-9010}
export APP_ENV=development
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/backend_watch
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export REDIS_KEY_PREFIX="watch:$$:"
export LOG_LEVEL=warn

cargo build --quiet --bin db
./target/debug/db create-database >/dev/null
./target/debug/db reset >/dev/null
./target/debug/db seed >/dev/null

log=$(mktemp)
health=$(mktemp)
cargo lambda watch --disable-cors --ignore-changes -A 127.0.0.1 -P "$PORT_WATCH" \
  --env-var "APP_ENV=$APP_ENV,DATABASE_URL=$DATABASE_URL,REDIS_URL=$REDIS_URL,REDIS_KEY_PREFIX=$REDIS_KEY_PREFIX,LOG_LEVEL=$LOG_LEVEL" \
  >"$log" 2>&1 &
watch_pid=$!
cleanup() {
  kill "$watch_pid" 2>/dev/null || true
  wait "$watch_pid" 2>/dev/null || true
  rm -f "$log" "$health" "${headers:-}"
}
trap cleanup EXIT

base="http://127.0.0.1:$PORT_WATCH"
fail() {
  echo "check-watch: $*" >&2
  tail -n 40 "$log" >&2
  exit 1
}

# The emulator listens at once; each function compiles on its first request.
for _ in $(seq 1 60); do
  curl -s -o /dev/null "$base/ready" --max-time 2 && break
  sleep 1
done

headers=$(mktemp)
status=$(curl -s -o "$health" -D "$headers" -H 'origin: http://localhost:5173' -w '%{http_code}' \
  --max-time 300 "$base/health") ||
  fail "/health did not answer"
[ "$status" = 200 ] || fail "/health answered $status: $(cat "$health")"
grep -q '"status":"ok"' "$health" || fail "/health body: $(cat "$health")"
# The functions own CORS, as behind API Gateway: one Vary, our allowed origin.
[ "$(grep -ci '^vary:' "$headers")" = 1 ] || fail "CORS headers added twice: $(cat "$headers")"
grep -qi '^access-control-allow-origin: http://localhost:5173' "$headers" ||
  fail "no CORS answer for an allowed origin: $(cat "$headers")"

login=$(curl -s --max-time 300 -H 'content-type: application/json' \
  -d '{"email":"ana@example.com","password":"ana-dev-password-2024!"}' \
  "$base/api/v1/auth/login") || fail "login did not answer"
token=$(printf '%s' "$login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') ||
  fail "login gave no access token: $login"

me=$(curl -s --max-time 300 -H "authorization: Bearer $token" "$base/api/v1/users/me") ||
  fail "/api/v1/users/me did not answer"
printf '%s' "$me" | python3 -c 'import json,sys; u=json.load(sys.stdin); assert u["email"]=="ana@example.com", u' ||
  fail "/api/v1/users/me answered $me"

echo "check-watch: /health, login and /api/v1/users/me answered through cargo lambda watch"
