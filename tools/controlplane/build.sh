#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kubectl, etcd) from the Go
# modules pinned in ./kubernetes and ./etcd, into a per-version cache outside
# the repository. Prints the directory holding the binaries. Idempotent: a
# warm cache returns at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../progress.sh
. "$here/../progress.sh"
k8s_version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")
etcd_version=$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")
minor=$(echo "$k8s_version" | cut -d. -f2)
out="${ROSTER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/roster}/controlplane/${k8s_version}-etcd${etcd_version}"
mkdir -p "$out"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod
build() { # dir package output [ldflags]
  local dir=$1 pkg=$2 bin=$3 ldflags=${4:-}
  if [ -x "$out/$bin" ]; then return; fi
  echo "building $bin into $out (once per machine and version; kube-apiserver takes a few minutes on two cores)" >&2
  (cd "$dir" && with_progress "$bin" go build -trimpath -buildvcs=false -ldflags "-s -w $ldflags" -o "$out/$bin.tmp" "$pkg")
  mv "$out/$bin.tmp" "$out/$bin"
}
v=k8s.io/component-base/version
kldflags="-X $v.gitVersion=$k8s_version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
build "$here/etcd" . etcd
build "$here/kubernetes" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$kldflags"
build "$here/kubernetes" k8s.io/kubernetes/cmd/kubectl kubectl "$kldflags"
echo "$out"
