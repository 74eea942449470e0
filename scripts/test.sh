#!/usr/bin/env bash
# Runs every test: unit and integration tests against the real Postgres and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
scripts/check-infra.sh
scripts/check-deps.sh
scripts/check-containers.sh
scripts/check-supply.sh
# The backup tests run the `db` binary, which cargo only builds for its own package's tests.
cargo build --bin db --bin local --bin migrate --bin health
scripts/check-watch.sh
scripts/check-contract.sh
cargo nextest run --workspace --no-fail-fast "$@"
