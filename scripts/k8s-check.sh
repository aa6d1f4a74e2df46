#!/usr/bin/env bash
# Checks deploy/k8s offline, with no cluster: renders both overlays with `kubectl kustomize`,
# validates every rendered object against the Kubernetes schema of a pinned version, strictly (an
# unknown field fails), and checks the wiring the project relies on (scripts/k8s_check.py: the
# API's replicas, probes, PodDisruptionBudget, security context, resources and termination grace;
# its shared PostgreSQL database (in the emulator overlay a StatefulSet on a volumeClaimTemplate,
# the URL's password from a Secret through $(VAR)); no per-pod SQLite emptyDir; the CronJob's
# policy; in the entra overlay, workload identity on every token-acquiring pod
# template and no Secret anywhere), passes each service's shipped settings through the service's
# own parser when the binaries are built (every key must exist in the code), then breaks the
# renderings in memory to show each check fails when it should.
#
#   bash scripts/k8s-check.sh
#
# Needs kubectl (client only; its built-in kustomize) and python3 with venv; installs the
# validator, kubernetes-validate (with PyYAML), into .venv/k8s on first use. Without kubectl it
# says so and skips, or fails when REQUIRE_KUBECTL=1 (as .ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

# The validator and the Kubernetes version whose schema it checks against: change them here only.
# 1.32 is this machine's kubectl (v1.32) and the oldest version the manifests are meant for: a
# field added after it fails here.
VALIDATOR_VERSION=1.37.0
KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.32.0}
OVERLAYS=(emulator entra)

if ! command -v kubectl >/dev/null 2>&1; then
  if [ "${REQUIRE_KUBECTL:-0}" = 1 ]; then
    echo "k8s-check: kubectl is not installed (REQUIRE_KUBECTL=1): cannot render deploy/k8s" >&2
    exit 1
  fi
  echo "k8s-check: skipped: kubectl is not installed (it renders deploy/k8s with its kustomize)"
  exit 0
fi

venv=.venv/k8s
. scripts/lib/venv.sh
# python_venv installs only when the import fails: a venv holding another version is made anew.
if [ -x "$venv/bin/python" ] &&
  [ "$("$venv/bin/python" -c 'import kubernetes_validate; print(kubernetes_validate.__version__)' 2>/dev/null)" != "$VALIDATOR_VERSION" ]; then
  rm -rf "$venv"
fi
python_venv k8s-check "$venv" kubernetes_validate "kubernetes-validate==$VALIDATOR_VERSION"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "k8s-check: kubectl $(kubectl version --client 2>/dev/null | paste -sd' ')"
renderings=()
for overlay in "${OVERLAYS[@]}"; do
  if ! kubectl kustomize "deploy/k8s/$overlay" >"$work/$overlay.yaml" 2>"$work/$overlay.err"; then
    echo "FAIL $overlay: kubectl kustomize deploy/k8s/$overlay: $(tr '\n' ' ' <"$work/$overlay.err")"
    exit 1
  fi
  renderings+=("$overlay=$work/$overlay.yaml")
done

# The services' own parsers too, where the binaries are built (`cargo test --workspace` builds
# them, so under .ci/run they are); skipped, saying so, where they are not.
"$venv/bin/python" scripts/k8s_check.py --kubernetes-version "$KUBERNETES_VERSION" --self-test \
  --binaries "${CARGO_TARGET_DIR:-target}/debug" "${renderings[@]}"
