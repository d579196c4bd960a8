#!/usr/bin/env bash
# Checks the Kubernetes manifests with kubectl, without a cluster: renders each kustomization
# (base, overlays/tls, trainer), which fails on bad YAML, a missing or duplicate resource, or a
# patch that matches nothing. With a cluster reachable (KUBECONFIG or --server given as
# PSERVER_VALIDATE_SERVER=1), it also asks the API server to validate them (server-side dry run,
# nothing is created).
#
#   deploy/validate.sh [OUT_DIR]   writes OUT_DIR/<name>.yaml (rendered), default: a temp dir
#
# The test suite (DeployManifestsTest) runs this, then checks every rendered object against the
# Kubernetes API's models (unknown fields, types, required fields) and the properties pserver needs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"

command -v kubectl >/dev/null 2>&1 || {
  echo "validate.sh: kubectl not found (Debian: apt-get install kubernetes-client; bin/test does this)" >&2
  exit 2
}

for k in base overlays/tls trainer; do
  name="${k//\//-}"
  # Newer kubectl warns that 'bases' and 'patchesStrategicMerge' are deprecated; they are kept
  # because Debian 12's kubectl (1.20) knows nothing newer. Warnings are dropped, errors are not.
  if ! kubectl kustomize "$here/$k" >"$out/$name.yaml" 2>"$out/$name.err"; then
    echo "validate.sh: kubectl kustomize $k failed:" >&2
    grep -v "Warning: '" "$out/$name.err" >&2 || true
    exit 1
  fi
  docs=$(grep -c '^kind:' "$out/$name.yaml" || true)
  echo "validate.sh: $k: $docs objects rendered"
  if [ "${PSERVER_VALIDATE_SERVER:-0}" = 1 ]; then
    kubectl apply --dry-run=server -f "$out/$name.yaml" >/dev/null
    echo "validate.sh: $k: accepted by the API server (dry run)"
  fi
done
echo "validate.sh: rendered manifests in $out"
