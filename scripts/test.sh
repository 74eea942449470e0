#!/usr/bin/env bash
# Runs every test: unit and integration tests against the real Postgres and Redis, and the web
# client end to end in headless Chromium (scripts/test-web.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
# nginx, for the test that serves the web image's configuration (tests/it/containers.rs). Debian
# would start it as a service on port 80: policy-rc.d says no for the install's duration.
if [ ! -x /usr/sbin/nginx ]; then
  echo "test: installing nginx"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  $sudo apt-get install -y -q --no-install-recommends nginx >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends nginx >/dev/null; }
  [ -z "$own_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi
scripts/check-infra.sh
scripts/check-deps.sh
scripts/check-containers.sh
scripts/check-supply.sh
# The backup tests run the `db` binary, which cargo only builds for its own package's tests.
cargo build --bin db --bin local --bin migrate --bin health
scripts/check-watch.sh
scripts/check-contract.sh
scripts/test-web.sh
cargo nextest run --workspace --no-fail-fast "$@"
