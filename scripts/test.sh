#!/usr/bin/env bash
# Runs every test: unit and integration tests against the real Postgres and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
scripts/check-infra.sh
cargo nextest run --workspace --no-fail-fast "$@"
