# Sourced by the build scripts: `with_progress WHAT command...` runs the
# command and, while it runs, says every 30 s that it is still working (a Go
# build of kube-apiserver prints nothing for minutes on two cores).
with_progress() {
  local what=$1 started=$SECONDS ticker rc=0
  shift
  (while sleep 30; do echo "  still building $what ($((SECONDS - started)) s so far)" >&2; done) &
  ticker=$!
  "$@" || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  [ "$rc" = 0 ] && echo "  built $what in $((SECONDS - started)) s" >&2
  return "$rc"
}
