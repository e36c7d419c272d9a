#!/usr/bin/env bash
# `make demo-down`: stop the demo's controllers and git server, then the local cluster.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEMO_DIR=${PLUMB_CLUSTER_DIR:-$REPO_ROOT/.cluster}/demo
for name in sync-controller render-controller source-controller git-server; do
  pidfile=$DEMO_DIR/$name.pid
  if [[ -f $pidfile ]] && kill -0 "$(<"$pidfile")" 2>/dev/null; then
    kill "$(<"$pidfile")" && echo "demo: stopped $name"
  fi
  rm -f "$pidfile"
done
bash "$REPO_ROOT/e2e/cluster/down.sh"
