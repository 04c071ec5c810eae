#!/usr/bin/env bash
# Checks the Helm chart charts/roster: `helm lint --strict` and `helm template`
# with the default values and with each values file under charts/roster/ci/,
# for the Kubernetes version of the test control plane. Also checks that the
# chart's CRDs (templates over files/crds.yaml, so `helm upgrade` upgrades
# them) are the generated ones in crds/ (a symlink, not a copy that can
# drift) and that a packaged chart carries them.
#
# helm comes from $HELM, else tools/helm/build.sh builds it. The stronger
# check, applying the rendered chart to a real API server with
# `kubectl apply --dry-run=server`, is the integration test tests/integration/chart.rs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chart="$root/charts/roster"
HELM=${HELM:-$("$root/tools/helm/build.sh")}
kube_version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$root/tools/controlplane/kubernetes/go.mod")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# helm logs every symlink it follows; the CRDs are one on purpose.
helm() {
  local rc=0
  "$HELM" "$@" 2>"$work/stderr" || rc=$?
  grep -v 'found symbolic link in path' "$work/stderr" >&2 || true
  return $rc
}

echo "chart: the CRDs are crds/roster.dev.yaml"
if [ ! -L "$chart/files/crds.yaml" ] || ! cmp -s "$chart/files/crds.yaml" "$root/crds/roster.dev.yaml"; then
  echo "charts/roster/files/crds.yaml must be a symlink to ../../../crds/roster.dev.yaml" >&2
  exit 1
fi

for values in "" "$chart"/ci/*-values.yaml; do
  args=(--kube-version "$kube_version" --namespace roster-system)
  name=defaults
  if [ -n "$values" ]; then
    args+=(--values "$values")
    name=${values#"$root/"}
  fi
  echo "chart: helm lint --strict ($name)"
  helm lint --strict --quiet "${args[@]}" "$chart"
  echo "chart: helm template ($name)"
  helm template roster "$chart" "${args[@]}" >"$work/rendered.yaml"
  crds=$(grep -c '^kind: CustomResourceDefinition$' "$work/rendered.yaml" || true)
  expected=$(grep -c '^kind: CustomResourceDefinition$' "$root/crds/roster.dev.yaml")
  if [ "$crds" != "$expected" ]; then
    echo "helm template rendered $crds CRDs, crds/roster.dev.yaml has $expected" >&2
    exit 1
  fi
done

echo "chart: helm package carries the CRDs"
helm package --destination "$work" "$chart" >/dev/null
tar -xmzf "$work"/roster-*.tgz -C "$work" roster/files/crds.yaml
cmp "$work/roster/files/crds.yaml" "$root/crds/roster.dev.yaml"
echo "chart: ok"
