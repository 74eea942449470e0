#!/usr/bin/env bash
# Builds each function for Lambda (arm64) in its own cargo invocation, so that each links only
# the crates and features it uses itself (one workspace-wide build would unify features across
# all of them). Each binary lands in target/lambda/<name>/bootstrap. `--zip` also writes
# target/lambda/<name>.zip (what Lambda receives) and prints its size.
set -euo pipefail
cd "$(dirname "$0")/.."
FUNCTIONS=(health auth users uploads migrate backup)
zip=0
[ "${1:-}" = "--zip" ] && zip=1

for fn in "${FUNCTIONS[@]}"; do
  cargo lambda build --release --arm64 -p "$fn"
done
if [ "$zip" = 1 ]; then
  for fn in "${FUNCTIONS[@]}"; do
    (cd "target/lambda/$fn" && rm -f "../$fn.zip" && python3 -m zipfile -c "../$fn.zip" bootstrap)
    printf '%-8s %8d bytes zipped\n' "$fn" "$(stat -c %s "target/lambda/$fn.zip")"
  done
fi
