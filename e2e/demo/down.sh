#!/usr/bin/env bash
# `make demo-down`: stop the demo's controllers and git server, then the local cluster.
# With --keep-cluster, only the demo's processes stop; the cluster and the demo's objects in it
# stay (the demo's own test uses this when it started the demo itself).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER_DIR=${PLUMB_CLUSTER_DIR:-$REPO_ROOT/.cluster}
[[ $CLUSTER_DIR == /* ]] || CLUSTER_DIR=$REPO_ROOT/$CLUSTER_DIR
DEMO_DIR=$CLUSTER_DIR/demo
keep_cluster=0
case ${1:-} in
  --keep-cluster) keep_cluster=1 ;;
  "") ;;
  *) echo "usage: $0 [--keep-cluster]" >&2; exit 2 ;;
esac
# alive PID: the process has not exited (a zombie has).
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

stopping=()
for name in sync-controller render-controller source-controller git-server; do
  pidfile=$DEMO_DIR/$name.pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && kill "$pid" 2>/dev/null; then
    stopping+=("$name=$pid")
  fi
  rm -f "$pidfile"
done
# Wait until they are gone (a controller shuts down gracefully), so that a `make demo` right after
# finds their ports free; one still there after 30s is killed.
for entry in "${stopping[@]}"; do
  name=${entry%%=*} pid=${entry#*=}
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || break
    sleep 0.2
  done
  if alive "$pid"; then
    kill -9 "$pid" 2>/dev/null || true
    echo "demo: killed $name (it did not stop within 30s)"
  else
    echo "demo: stopped $name"
  fi
done
((keep_cluster)) || bash "$REPO_ROOT/e2e/cluster/down.sh"
