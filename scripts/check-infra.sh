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
echo "check-infra: template and parameters are valid"
