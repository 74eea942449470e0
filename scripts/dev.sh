#!/usr/bin/env bash
# Starts the whole API locally: services, database, migrations, development data, then the
# all-in-one server on http://127.0.0.1:${PORT:-3000}.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .env ] && set -a && . ./.env && set +a
scripts/services.sh
cargo build --bin db --bin local
./target/debug/db create-database
./target/debug/db up
./target/debug/db seed
exec ./target/debug/local
