#!/usr/bin/env python3
"""Checks the per-environment parameters against template.yaml and prints them for `sam deploy`.

    python3 infra/check_params.py check [ENV ...]   # default: every infra/<env>.json
    python3 infra/check_params.py overrides ENV     # one line of Key=Value pairs

`check` fails (exit 1) when, for an environment:
  - infra/<env>.json names a parameter the template does not have, misses one without a default
    (other than those the pipeline passes: PIPELINE_PARAMETERS), or gives a value outside the parameter's AllowedValues / AllowedPattern / MinValue / MaxValue;
  - samconfig.toml's [<env>.deploy.parameters] parameter_overrides differ from infra/<env>.json;
  - the connection budget does not hold:
        (sum of every function's reserved concurrency) x DbPoolMax
            <= Budget of the instance class in the template's DbInstanceLimits mapping
    (Budget is 70 % of the class's max_connections; see the comment at the top of template.yaml).

Needs Python 3.11+ (tomllib) and PyYAML (installed with aws-sam-cli and cfn-lint).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
INFRA = ROOT / "infra"

# Parameters that size a function's reserved concurrency; the other functions' value is read from
# the template, where it is a fixed number.
CONCURRENCY_PARAMETERS = {
    "HealthFunction": "HealthConcurrency",
    "AuthFunction": "AuthConcurrency",
    "UsersFunction": "UsersConcurrency",
    "UploadsFunction": "UploadsConcurrency",
}

# Parameters the deploy pipeline passes on every deploy, from the commit being deployed (its
# revision, the images it built and pushed), never from infra/<env>.json.
PIPELINE_PARAMETERS = {"DeployedRevision", "BackupImageUri", "DrillDatabaseImageUri"}


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: short-form intrinsics (!Ref, !Sub, ...) become plain values."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        value: object = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"!{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict:
    with TEMPLATE.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


def load_env_parameters(env: str) -> dict[str, str]:
    path = INFRA / f"{env}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, (str, int)) for v in data.values()):
        raise SystemExit(f"{path}: expected one JSON object of parameter names to string values")
    return {k: str(v) for k, v in data.items()}


def samconfig_overrides(env: str) -> dict[str, str] | None:
    with SAMCONFIG.open("rb") as f:
        config = tomllib.load(f)
    raw = config.get(env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides")
    if raw is None:
        return None
    pairs = shlex.split(raw) if isinstance(raw, str) else list(raw)
    return dict(pair.split("=", 1) for pair in pairs)


def check_values(template: dict, params: dict[str, str], env: str) -> list[str]:
    errors = []
    declared = template["Parameters"]
    for name in params.keys() - declared.keys():
        errors.append(f"{env}: {name} is not a parameter of template.yaml")
    for name, spec in declared.items():
        if name not in params:
            if "Default" not in spec and name not in PIPELINE_PARAMETERS:
                errors.append(f"{env}: {name} has no default and is missing")
            continue
        value = params[name]
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(a) for a in allowed]:
            errors.append(f"{env}: {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            errors.append(f"{env}: {name}={value!r} does not match {pattern}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                errors.append(f"{env}: {name}={value!r} is not a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                errors.append(f"{env}: {name}={value} is below {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                errors.append(f"{env}: {name}={value} is above {spec['MaxValue']}")
        if re.search(r"[\s\"']", value):
            errors.append(f"{env}: {name} holds whitespace or quotes, which sam's overrides cannot carry")
    if params.get("Environment") != env:
        errors.append(f"{env}: Environment must be {env!r} in infra/{env}.json")
    if params.get("DomainName") and not params.get("CertificateArn"):
        errors.append(f"{env}: DomainName needs CertificateArn")
    if params.get("HostedZoneId") and not params.get("DomainName"):
        errors.append(f"{env}: HostedZoneId needs DomainName")
    return errors


def parameter(template: dict, params: dict[str, str], name: str) -> str:
    return params.get(name, str(template["Parameters"][name].get("Default", "")))


def connection_budget(template: dict, params: dict[str, str], env: str) -> tuple[list[str], str]:
    errors = []
    functions = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }
    total = 0
    parts = []
    for name, resource in sorted(functions.items()):
        if name in CONCURRENCY_PARAMETERS:
            reserved = int(parameter(template, params, CONCURRENCY_PARAMETERS[name]))
        else:
            reserved = resource["Properties"].get("ReservedConcurrentExecutions")
            if not isinstance(reserved, int):
                errors.append(f"{name} has no fixed ReservedConcurrentExecutions to count")
                continue
        total += reserved
        parts.append(f"{name.removesuffix('Function').lower()} {reserved}")
    pool = int(parameter(template, params, "DbPoolMax"))
    instance_class = parameter(template, params, "DBInstanceClass")
    limits = template["Mappings"]["DbInstanceLimits"].get(instance_class)
    if limits is None:
        errors.append(f"{env}: {instance_class} is not in the DbInstanceLimits mapping")
        return errors, ""
    needed = total * pool
    summary = (
        f"{env}: ({' + '.join(parts)} = {total}) x DbPoolMax {pool} = {needed} connections; "
        f"budget on {instance_class} is {limits['Budget']} (70 % of ~{limits['MaxConnections']})"
    )
    if needed > limits["Budget"]:
        errors.append(f"{summary}: over budget")
    return errors, summary


def check(envs: list[str]) -> int:
    template = load_template()
    failures = []
    for env in envs:
        params = load_env_parameters(env)
        errors = check_values(template, params, env)
        overrides = samconfig_overrides(env)
        if overrides is None:
            errors.append(f"{env}: samconfig.toml has no [{env}.deploy.parameters] parameter_overrides")
        elif overrides != params:
            differ = sorted(k for k in overrides.keys() | params.keys() if overrides.get(k) != params.get(k))
            errors.append(f"{env}: samconfig.toml and infra/{env}.json differ on {', '.join(differ)}")
        budget_errors, summary = connection_budget(template, params, env)
        errors += budget_errors
        if summary and not budget_errors:
            print(f"ok  {summary}")
        failures += errors
    for error in failures:
        print(f"error  {error}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "check":
        envs = argv[1:] or sorted(p.stem for p in INFRA.glob("*.json"))
        return check(envs)
    if len(argv) == 2 and argv[0] == "overrides":
        params = load_env_parameters(argv[1])
        print(" ".join(f"{k}={v}" for k, v in params.items()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
