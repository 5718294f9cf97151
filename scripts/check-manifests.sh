#!/usr/bin/env bash
# Validates the Kubernetes manifests in image/kubernetes/ against the API
# schemas, offline, with kubernetes-validate (PyPI; it ships the schemas),
# strictly: unknown fields are errors. The tool lives in a venv under
# $DINDBOX_CACHE (default /var/cache/dindbox).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache=${DINDBOX_CACHE:-/var/cache/dindbox}
venv=$cache/kubernetes-validate
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet kubernetes-validate==1.37.0
fi
"$venv/bin/kubernetes-validate" --strict --quiet image/kubernetes/*.yaml
echo "manifests valid: $(ls image/kubernetes/*.yaml | tr '\n' ' ')"
