#!/usr/bin/env bash
# Fails when a function links what it must not, or when a crate depends on one above it.
# `cargo tree -p NAME` resolves features for that package alone, as its own build does.
set -euo pipefail
cd "$(dirname "$0")/.."

# The library crates, lowest first: each may depend only on crates before it.
LAYERS=(platform http-kit migrator migrations domain api pgbackup)
FUNCTIONS=(health auth users uploads migrate backup)
# What each function must never link.
declare -A FORBIDDEN=(
  [health]="argon2 zxcvbn jsonwebtoken aws-sdk-s3 domain api pgbackup flate2"
  [auth]="aws-sdk-s3 pgbackup flate2"
  [users]="pgbackup flate2"
  [uploads]="pgbackup flate2"
  [migrate]="argon2 zxcvbn jsonwebtoken aws-sdk-s3 domain api pgbackup axum"
  [backup]="argon2 zxcvbn jsonwebtoken api axum"
)

# Token signatures are HS256 over ring (domain::sessions::hs256): no function links the other JWT
# algorithms' code.
JWT_ALGORITHMS="rsa p256 p384 ed25519-dalek"

# The AWS SDK speaks HTTP/1.1 through platform::aws's client: no function links HTTP/2, nor the
# SDK's own client, which always brings it.
HTTP2="h2 aws-smithy-http-client"

# Serving the web client (tower-http's `fs` feature, which alone brings http-range-header) is
# the local server's; no function links it.
STATIC_SERVING="http-range-header"

# The shutdown extension is http_kit::lambda's own, over the Runtime API client: lambda-extension
# builds in the Logs and Telemetry API servers, which no function starts.
EXTENSION_SERVERS="lambda-extension"

# Error reports and traces go out through platform::outbound, over the same HTTP/1.1 client as
# the AWS SDK: no second HTTP stack.
SECOND_HTTP_CLIENT="reqwest"

# mimalloc is the `local` server's allocator: each function, one request at a time, keeps glibc's
# and the smaller zip.
SERVER_ALLOCATOR="mimalloc libmimalloc-sys"

# Host names are ASCII (`xn--` for others): `url` takes idna's stub back end, not ICU4X's
# normalizer and its tables (the workspace's Cargo.toml).
UNICODE_HOST_NAMES="icu_normalizer icu_properties"

failed=0
deps_of() { # the workspace and registry packages NAME links, one per line
  cargo tree -p "$1" -e normal --prefix none --offline 2>/dev/null | awk '{print $1}' | sort -u
}

for fn in "${FUNCTIONS[@]}"; do
  linked=$(deps_of "$fn")
  for bad in ${FORBIDDEN[$fn]} $JWT_ALGORITHMS $HTTP2 $STATIC_SERVING $EXTENSION_SERVERS $SECOND_HTTP_CLIENT $SERVER_ALLOCATOR $UNICODE_HOST_NAMES "${FUNCTIONS[@]}"; do
    [ "$bad" = "$fn" ] && continue
    if grep -qx -- "$bad" <<<"$linked"; then
      echo "check-deps: $fn links $bad" >&2
      failed=1
    fi
  done
done

for i in "${!LAYERS[@]}"; do
  crate=${LAYERS[$i]}
  direct=$(cargo tree -p "$crate" -e normal --depth 1 --prefix none --offline 2>/dev/null | tail -n +2 | awk '{print $1}')
  for above in "${LAYERS[@]:$((i + 1))}" "${FUNCTIONS[@]}" local; do
    if grep -qx -- "$above" <<<"$direct"; then
      echo "check-deps: $crate depends on $above, which is above it" >&2
      failed=1
    fi
  done
done

if [ "$failed" = 0 ]; then echo "check-deps: every function links only what it may"; fi
exit "$failed"
