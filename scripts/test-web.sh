#!/usr/bin/env bash
# The web client end to end: installs Debian's Chromium and the client's npm packages when
# missing, builds web/, starts the debug `local` server on a free port against the real
# Postgres, Redis and moto (its own database, bucket and Redis prefix), runs the browser test
# (web/e2e/, node's test runner with playwright-core), then stops the server.
# Screenshots of each step stay in web/e2e/artifacts/ (git-ignored).
#
#   scripts/test-web.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Chromium (no browser download: playwright-core drives the system's). CHROMIUM names
# another build, e.g. the Google Chrome of a CI image.
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  echo "test-web: installing chromium"
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# npm ci only when the lock file is newer than what is installed.
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd web && npm run --silent build)

target=${CARGO_TARGET_DIR:-target}
cargo build --quiet --bin local --bin db

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export APP_ENV=development
export PORT=$port
export APP_URL="http://localhost:$port"
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/backend_web
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export REDIS_KEY_PREFIX="web:$$:"
# One browser on one address makes every request of the run.
export RATE_LIMIT_MAX=100000
# Short-lived access tokens, so the test sees the client renew one before it expires.
export JWT_EXPIRES_IN=70s
export LOG_LEVEL=${LOG_LEVEL:-warn}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:5000}
export UPLOADS_BUCKET=backend-uploads-web
export WEB_DIST="$PWD/web/dist"
# The S3 emulator takes an unsigned CreateBucket; an existing bucket answers 409, which is fine.
curl -s -o /dev/null -X PUT "$AWS_ENDPOINT_URL/$UPLOADS_BUCKET"

"$target/debug/db" create-database >/dev/null
"$target/debug/db" reset >/dev/null
"$target/debug/db" seed >/dev/null

log=$(mktemp)
"$target/debug/local" >"$log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

base="http://localhost:$port"
for _ in $(seq 1 100); do
  curl -s -o /dev/null --max-time 1 "$base/ready" && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.2
done

status=0
(cd web && BASE_URL="$base" node --test --test-reporter=spec e2e/) || status=$?
if [ "$status" != 0 ]; then
  echo "test-web: the browser test failed (screenshots in web/e2e/artifacts/); server log:" >&2
  tail -n 40 "$log" >&2
  exit "$status"
fi
