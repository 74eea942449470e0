#!/usr/bin/env bash
# A signed-in smoke test against a deployed stack, through CloudFront:
# register a throwaway user, log in, read /api/v1/users/me, log out, check the logged-out token
# is refused, then delete the user again.
#   scripts/smoke-auth.sh https://dxxxx.cloudfront.net
set -euo pipefail
base=${1:?usage: smoke-auth.sh BASE_URL}
email="smoke+$(date +%s)-$RANDOM@example.com"
password="smoke-$(openssl rand -hex 12)-Pass"
curl_json() { curl -sS --max-time 15 -H 'content-type: application/json' "$@"; }
expect() {
  local want=$1 got=$2 what=$3
  if [ "$got" != "$want" ]; then echo "smoke: $what answered $got, expected $want" >&2; exit 1; fi
  echo "smoke: $what $got"
}
body=$(mktemp)

status=$(curl_json -o "$body" -w '%{http_code}' -X POST "$base/api/v1/auth/register" \
  -d "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Smoke Test\"}")
expect 201 "$status" "register"

status=$(curl_json -o "$body" -w '%{http_code}' -X POST "$base/api/v1/auth/login" \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}")
expect 200 "$status" "login"
token=$(jq -r .access_token "$body")

status=$(curl -sS --max-time 15 -o "$body" -w '%{http_code}' -H "authorization: Bearer $token" \
  "$base/api/v1/users/me")
expect 200 "$status" "GET /api/v1/users/me"
[ "$(jq -r .email "$body")" = "$email" ] || { echo "smoke: /users/me is someone else" >&2; exit 1; }

status=$(curl_json -o "$body" -w '%{http_code}' -X POST -H "authorization: Bearer $token" \
  "$base/api/v1/auth/logout" -d '{}')
expect 204 "$status" "logout"

status=$(curl -sS --max-time 15 -o "$body" -w '%{http_code}' -H "authorization: Bearer $token" \
  "$base/api/v1/users/me")
expect 401 "$status" "GET /api/v1/users/me after logout"

# Clean up: the throwaway account goes again.
status=$(curl_json -o "$body" -w '%{http_code}' -X POST "$base/api/v1/auth/login" \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}")
expect 200 "$status" "login (cleanup)"
token=$(jq -r .access_token "$body")
status=$(curl_json -o "$body" -w '%{http_code}' -X DELETE -H "authorization: Bearer $token" \
  "$base/api/v1/users/me" -d "{\"current_password\":\"$password\"}")
expect 204 "$status" "DELETE /api/v1/users/me"
echo "smoke: signed-in flow passed"
