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
for name in sync-controller render-controller source-controller git-server; do
  pidfile=$DEMO_DIR/$name.pid
  if [[ -f $pidfile ]] && kill -0 "$(<"$pidfile")" 2>/dev/null; then
    kill "$(<"$pidfile")" && echo "demo: stopped $name"
  fi
  rm -f "$pidfile"
done
((keep_cluster)) || bash "$REPO_ROOT/e2e/cluster/down.sh"
