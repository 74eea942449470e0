#!/usr/bin/env bash
# Starts the whole API locally: services, database, migrations, development data, the web
# client (built into web/dist), then the all-in-one server on http://127.0.0.1:${PORT:-3000},
# which serves the client at / beside the API.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .env ] && set -a && . ./.env && set +a
scripts/services.sh
# The uploads bucket in the S3 emulator; an existing bucket answers 409, which is fine.
if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
  curl -s -o /dev/null -X PUT "$AWS_ENDPOINT_URL/${UPLOADS_BUCKET:-${APP_NAME:-backend}-uploads}" || true
fi
if command -v npm >/dev/null 2>&1; then
  if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
  fi
  (cd web && npm run --silent build)
else
  echo "dev: npm not found; serving the API without the web client" >&2
fi
cargo build --bin db --bin local
./target/debug/db create-database
./target/debug/db up
./target/debug/db seed
exec ./target/debug/local
