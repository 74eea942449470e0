#!/usr/bin/env bash
# Invokes the migrate function with {"command":"up"} and fails when it reports a function error.
#   scripts/invoke-migrate.sh FUNCTION_NAME
set -euo pipefail
fn=${1:?usage: invoke-migrate.sh FUNCTION_NAME}
out=$(mktemp -d)
aws lambda invoke --function-name "$fn" \
  --cli-binary-format raw-in-base64-out --payload '{"command":"up"}' \
  --cli-read-timeout 900 --log-type Tail \
  "$out/response.json" > "$out/invoke.json"
jq -r '.LogResult // empty' "$out/invoke.json" | base64 -d || true
echo "migrate answered: $(cat "$out/response.json")"
if jq -e 'has("FunctionError")' "$out/invoke.json" > /dev/null; then
  echo "::error::migrate failed ($(jq -r .FunctionError "$out/invoke.json"))"
  exit 1
fi
