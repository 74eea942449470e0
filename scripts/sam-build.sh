#!/usr/bin/env bash
# Builds every function for Lambda (arm64) exactly as the deploy does: `sam build`. Each function's
# BuildMethod (rust-cargolambda) runs `cargo lambda build --release --arm64 --bin <name>` in its
# own crate's folder, so that each links only the crates and features it uses itself (one build
# of the whole workspace would unify features across all of them). The result is
# .aws-sam/build/<LogicalId>/bootstrap, which `sam deploy` zips; this prints each zip's size.
#
#   scripts/sam-build.sh           the release profile the deploy ships (fat LTO, one codegen unit)
#   scripts/sam-build.sh --check   the same build without LTO, our crates at opt-level 0 (the
#                                  dependencies keep the profile's per-package levels, which no
#                                  environment variable can override for "*"): proves that the
#                                  template builds, in a fraction of the time (CI); its sizes are
#                                  not the shipped ones
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--check" ]; then
  export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=0
fi

# The SAM CLI and cargo-lambda (which brings zig, the cross linker) in a virtual env of their own:
# the SAM CLI pins botocore versions that moto must not share.
if ! command -v sam >/dev/null 2>&1 || ! command -v cargo-lambda >/dev/null 2>&1; then
  sam_venv="${SAM_VENV:-$HOME/.cache/backend-tools/sam}"
  if [ ! -x "$sam_venv/bin/sam" ] || [ ! -x "$sam_venv/bin/cargo-lambda" ]; then
    echo "sam-build: installing aws-sam-cli and cargo-lambda into $sam_venv"
    [ -x "$sam_venv/bin/python" ] || python3 -m venv "$sam_venv"
    "$sam_venv/bin/pip" install --quiet 'aws-sam-cli==1.170.0' 'cargo-lambda==1.9.2'
  fi
  export PATH="$sam_venv/bin:$PATH"
fi
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi

SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
  sam build --template-file template.yaml

# Every function of the template has its bootstrap, an aarch64 executable.
functions=$(python3 - <<'EOF'
import re
ids = re.findall(r"^  (\w+):\n    Type: AWS::Serverless::Function\n", open("template.yaml").read(), re.M)
print(" ".join(ids))
EOF
)
[ -n "$functions" ] || { echo "sam-build: no function found in template.yaml"; exit 1; }
zips=$(mktemp -d)
trap 'rm -rf "$zips"' EXIT
for id in $functions; do
  bootstrap=".aws-sam/build/$id/bootstrap"
  if [ ! -x "$bootstrap" ]; then
    echo "sam-build: $bootstrap was not built"
    exit 1
  fi
  # ELF header: e_machine 0xB7 (183) is AArch64.
  machine=$(od -An -t u2 -j 18 -N 2 "$bootstrap" | tr -d ' ')
  if [ "$machine" != 183 ]; then
    echo "sam-build: $bootstrap is not an arm64 executable (e_machine $machine)"
    exit 1
  fi
  (cd ".aws-sam/build/$id" && python3 -m zipfile -c "$zips/$id.zip" bootstrap)
  printf '%-16s bootstrap %9d bytes, zip %9d bytes\n' "$id" \
    "$(stat -c %s "$bootstrap")" "$(stat -c %s "$zips/$id.zip")"
done
