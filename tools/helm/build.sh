#!/usr/bin/env bash
# Builds helm from the Go module pinned in ./go.mod into a per-version cache
# outside the repository, the way tools/controlplane/build.sh builds the test
# control plane. Prints the path of the helm binary. Idempotent: a warm cache
# returns at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../progress.sh
. "$here/../progress.sh"
helm_version=$(awk '$1=="require" && $2=="helm.sh/helm/v3" {print $3}' "$here/go.mod")
out="${ROSTER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/roster}/helm/${helm_version}"
bin="$out/helm"
if [ ! -x "$bin" ]; then
  mkdir -p "$out"
  echo "building helm $helm_version into $out (once per machine and version, about a minute)" >&2
  export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod
  cd "$here"
  # What helm's own Makefile sets: its version, and the Kubernetes version it
  # assumes when none is given (the major/minor of the client-go it links).
  client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go)
  k8s_minor=$(echo "$client_go" | cut -d. -f2)
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  with_progress helm go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$bin.tmp" helm.sh/helm/v3/cmd/helm
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
