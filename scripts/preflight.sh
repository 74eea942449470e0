#!/usr/bin/env bash
# Checks, before a deploy, what CloudFormation and the linters cannot: that the environment's
# parameters are real, that its certificate can serve CloudFront, that the account's Lambda
# concurrency can hold what the stack reserves, and that the GitHub variables the pipeline needs
# are set. A person runs it before a deploy by hand; the deploy workflow runs it every time.
#
#   scripts/preflight.sh ENV        # ENV: staging or production (infra/ENV.json)
#
# Refuses (exit 1, one line per problem):
#   - a placeholder parameter value (example.com and friends, the 123456789012 account, an
#     all-zero certificate id, "placeholder", "changeme");
#   - DomainName without CertificateArn, or a certificate outside us-east-1 (CloudFront only uses
#     ACM certificates from us-east-1), or one that is not ISSUED;
#   - a Lambda concurrency quota, or an unreserved concurrency, too small for the reserved
#     concurrency of the stack's functions plus the 100 that Lambda always keeps unreserved;
#   - a missing GitHub variable (AWS_DEPLOY_ROLE_ARN, AWS_CFN_EXECUTION_ROLE_ARN,
#     SAM_ARTIFACTS_BUCKET): read from the
#     environment inside GitHub Actions, else with `gh variable list --env ENV`.
#
# Without a custom domain (no DomainName and no WebOrigin in infra/ENV.json) the web origin is the
# distribution's own domain: when the stack exists, its CloudFrontDomainName output gives it, and
# the preflight prints `web_origin=https://...` (also to $GITHUB_OUTPUT) for sam deploy's
# overrides; on a first create it prints `needs_web_origin=true` and the workflow sets it in a
# second pass from the stack's outputs.
#
# PREFLIGHT_PARAMS_DIR (default infra/) says where ENV.json is read from.
set -euo pipefail
cd "$(dirname "$0")/.."

env_name=${1:?usage: scripts/preflight.sh ENV}
params_dir=${PREFLIGHT_PARAMS_DIR:-infra}
params="$params_dir/$env_name.json"
region=${AWS_REGION:-us-east-1}
stack="backend-$env_name"
[ -f "$params" ] || { echo "preflight: $params does not exist" >&2; exit 1; }
# infra/check_params.py reads the template with PyYAML (there with aws-sam-cli and cfn-lint).
py=python3
python3 -c 'import yaml' 2>/dev/null || py="${TOOLS_VENV:-$HOME/.cache/backend-tools/venv}/bin/python"

refused=0
refuse() { echo "refused  $*" >&2; refused=1; }
ok() { echo "ok       $*"; }
output() {
  echo "$1"
  if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "$1" >> "$GITHUB_OUTPUT"; fi
}
param() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$params" "$1"; }

# 1. Placeholders.
placeholders=$(python3 - "$params" <<'EOF'
import json, re, sys
pattern = re.compile(
    r"example\.(com|org|net)|\b123456789012\b|00000000-0000-0000-0000-000000000000"
    r"|placeholder|changeme|change-me|todo",
    re.IGNORECASE,
)
for name, value in json.load(open(sys.argv[1])).items():
    if pattern.search(str(value)):
        print(f"{name}={value}")
EOF
)
if [ -n "$placeholders" ]; then
  while IFS= read -r line; do
    refuse "$env_name: $line is a placeholder; set the real value in $params and samconfig.toml"
  done <<< "$placeholders"
else
  ok "$env_name: no placeholder parameters"
fi

# 2. The custom domain and its certificate.
domain=$(param DomainName)
cert=$(param CertificateArn)
web_origin=$(param WebOrigin)
if [ -n "$domain" ] && [ -z "$cert" ]; then
  refuse "$env_name: DomainName=$domain needs CertificateArn (an ACM certificate in us-east-1)"
fi
if [ -n "$cert" ]; then
  cert_region=$(echo "$cert" | cut -d: -f4)
  if [ "$cert_region" != "us-east-1" ]; then
    refuse "$env_name: CertificateArn is in $cert_region; CloudFront only uses ACM certificates in us-east-1"
  else
    status=$(aws acm describe-certificate --region us-east-1 --certificate-arn "$cert" \
      --query 'Certificate.Status' --output text 2>/dev/null || echo MISSING)
    if [ "$status" = "ISSUED" ]; then
      ok "$env_name: certificate is issued in us-east-1"
    else
      refuse "$env_name: certificate $cert is $status, not ISSUED"
    fi
  fi
fi
if [ -z "$domain" ] && [ -z "$web_origin" ]; then
  output "needs_web_origin=true"
  cf_domain=$(aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='CloudFrontDomainName'].OutputValue" --output text \
    2>/dev/null || true)
  if [ -n "$cf_domain" ] && [ "$cf_domain" != "None" ]; then
    output "web_origin=https://$cf_domain"
    ok "$env_name: no custom domain; the web origin is https://$cf_domain (stack output)"
  else
    output "web_origin="
    ok "$env_name: no custom domain and no stack yet; the web origin is set after the first create"
  fi
fi

# 3. Lambda concurrency. Lambda keeps at least 100 of the account's concurrency unreserved
# (Lambda developer guide, "Configuring reserved concurrency"), so what the stack reserves must
# fit in the quota minus 100, and in what is unreserved now, counting what the stack's own
# functions already hold.
read -r needed functions < <("$py" - "$params" "$env_name" <<'EOF'
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("check_params", "infra/check_params.py")
cp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cp)
template = cp.load_template()
params = {k: str(v) for k, v in json.load(open(sys.argv[1])).items()}
total, names = 0, []
for name, resource in template["Resources"].items():
    if resource.get("Type") != "AWS::Serverless::Function":
        continue
    if name in cp.CONCURRENCY_PARAMETERS:
        total += int(cp.parameter(template, params, cp.CONCURRENCY_PARAMETERS[name]))
    else:
        total += int(resource["Properties"].get("ReservedConcurrentExecutions", 0))
    names.append(name.removesuffix("Function").lower())
print(total, ",".join(sorted(names)))
EOF
)
quota=$(aws service-quotas get-service-quota --region "$region" --service-code lambda \
  --quota-code L-B99A9384 --query 'Quota.Value' --output text 2>/dev/null || echo "")
unreserved=$(aws lambda get-account-settings --region "$region" \
  --query 'AccountLimit.UnreservedConcurrentExecutions' --output text 2>/dev/null || echo "")
if [ -z "$quota" ] || [ -z "$unreserved" ]; then
  refuse "$env_name: could not read the Lambda concurrency quota (service-quotas L-B99A9384) or the account settings"
else
  quota=${quota%.*}
  ours=0
  for fn in ${functions//,/ }; do
    held=$(aws lambda get-function-concurrency --region "$region" --function-name "$stack-$fn" \
      --query 'ReservedConcurrentExecutions' --output text 2>/dev/null || echo 0)
    [[ "$held" =~ ^[0-9]+$ ]] || held=0
    ours=$((ours + held))
  done
  after=$((unreserved - (needed - ours)))
  if [ "$quota" -lt $((needed + 100)) ]; then
    refuse "$env_name: the Lambda concurrency quota is $quota; $stack reserves $needed and Lambda keeps 100 unreserved: request at least $((needed + 100)) (Service Quotas, L-B99A9384)"
  elif [ "$after" -lt 100 ]; then
    refuse "$env_name: $stack reserves $needed (holds $ours now); $unreserved is unreserved, which would leave $after, under the 100 Lambda keeps: raise the quota or lower the *Concurrency parameters"
  else
    ok "$env_name: Lambda concurrency quota $quota, $stack reserves $needed, $after stays unreserved"
  fi
fi

# 4. GitHub variables of the environment.
required_vars=(AWS_DEPLOY_ROLE_ARN AWS_CFN_EXECUTION_ROLE_ARN SAM_ARTIFACTS_BUCKET)
if [ "${GITHUB_ACTIONS:-}" = "true" ]; then
  for v in "${required_vars[@]}"; do
    if [ -z "${!v:-}" ]; then
      refuse "$env_name: the GitHub variable $v is not set on the $env_name environment (infra/README.md)"
    else
      ok "$env_name: GitHub variable $v is set"
    fi
  done
elif command -v gh > /dev/null 2>&1; then
  if ! listed=$(gh variable list --env "$env_name" --json name --jq '.[].name' 2>/dev/null); then
    refuse "$env_name: gh could not list the variables of the $env_name environment"
    listed=""
  fi
  for v in "${required_vars[@]}"; do
    if grep -qx "$v" <<< "$listed"; then
      ok "$env_name: GitHub variable $v is set"
    else
      refuse "$env_name: the GitHub variable $v is not set on the $env_name environment (infra/README.md)"
    fi
  done
else
  refuse "$env_name: cannot check the GitHub variables: install gh (and gh auth login), or run inside GitHub Actions"
fi

if [ "$refused" = 1 ]; then
  echo "preflight: $env_name is not ready to deploy" >&2
  exit 1
fi
echo "preflight: $env_name is ready to deploy"
