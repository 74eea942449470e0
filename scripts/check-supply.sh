#!/usr/bin/env bash
# Offline checks of what the repository holds and pulls in:
#   - cargo deny: licenses, bans and sources of the Rust dependency graph (deny.toml). The
#     advisories check needs the RustSec database and runs in GitHub CI instead.
#   - detect-secrets: no credential committed. Every finding that is no credential is in
#     .secrets.baseline, marked as audited, and its file is explained in docs/security.md.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${TOOLS_VENV:-$HOME/.cache/backend-tools/venv}"

# cargo-deny from crates.io, built once (about 16 minutes on two cores) and kept in ~/.cargo/bin;
# GitHub CI installs a prebuilt one instead.
if ! cargo deny --version >/dev/null 2>&1; then
  echo "check-supply: installing cargo-deny (once per machine)"
  cargo install cargo-deny --locked --version 0.20.2
fi
cargo deny --log-level error check --hide-inclusion-graph licenses bans sources

if [ ! -x "$tools/bin/detect-secrets" ]; then
  echo "check-supply: installing detect-secrets into $tools"
  [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet 'detect-secrets==1.5.0'
fi
# A scan against a copy of the baseline: a new finding lands in the copy unaudited and fails
# below; the committed baseline changes only by hand (`detect-secrets scan --baseline
# .secrets.baseline`, then `detect-secrets audit .secrets.baseline` and a line in
# docs/security.md).
scan=$(mktemp)
trap 'rm -f "$scan"' EXIT
cp .secrets.baseline "$scan"
"$tools/bin/detect-secrets" scan --baseline "$scan" --exclude-files '^\.secrets\.baseline$'
# An audited finding is marked is_secret: false; a new one has no mark. Every file with an
# accepted finding is explained in docs/security.md.
"$tools/bin/python" - "$scan" <<'PY'
import json, sys
baseline = json.load(open(sys.argv[1]))
new = [
    f"  {path}:{f['line_number']}: {f['type']}"
    for path, findings in sorted(baseline["results"].items())
    for f in findings
    if f.get("is_secret") is not False
]
if new:
    print("check-supply: detect-secrets found what looks like a credential:", *new,
          "Remove it (and rotate it if it was real), or, if it is no credential, audit it into",
          ".secrets.baseline (detect-secrets audit) and explain it in docs/security.md.",
          sep="\n", file=sys.stderr)
    sys.exit(1)
doc = open("docs/security.md", encoding="utf-8").read()
missing = sorted(p for p in baseline["results"] if f"`{p}`" not in doc)
if missing:
    print("check-supply: accepted detect-secrets findings with no explanation in docs/security.md:",
          *missing, sep="\n  ", file=sys.stderr)
    sys.exit(1)
PY
echo "check-supply: dependencies' licenses, bans and sources pass; no credential committed"
