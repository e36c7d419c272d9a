#!/usr/bin/env bash
# `make demo`: the local cluster, the three plumb controllers, a Git repository served on
# loopback from examples/, and a GitRepository, a Policy and three Syncs (the dev and prod
# kustomize overlays, and a Helm chart) that end Ready with their workloads Available. Idempotent; `make demo-down` stops it.
set -euo pipefail
DEMO_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$DEMO_SRC/../.." && pwd)
CLUSTER_DIR=${PLUMB_CLUSTER_DIR:-$REPO_ROOT/.cluster}
[[ $CLUSTER_DIR == /* ]] || CLUSTER_DIR=$REPO_ROOT/$CLUSTER_DIR # relative to the repo, as for up.sh
DEMO_DIR=$CLUSTER_DIR/demo
GIT_PORT=${PLUMB_DEMO_GIT_PORT:-18080}
SOURCE_HTTP_PORT=${PLUMB_DEMO_SOURCE_PORT:-18090}
RENDER_HTTP_PORT=${PLUMB_DEMO_RENDER_PORT:-18091}
WEBHOOK_PORT=${PLUMB_DEMO_WEBHOOK_PORT:-18092}
SOURCE_METRICS_PORT=${PLUMB_DEMO_SOURCE_METRICS_PORT:-18180}
RENDER_METRICS_PORT=${PLUMB_DEMO_RENDER_METRICS_PORT:-18181}
SYNC_METRICS_PORT=${PLUMB_DEMO_SYNC_METRICS_PORT:-18182}
NAMESPACE=plumb-demo
export KUBECONFIG=$CLUSTER_DIR/kubeconfig
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
BIN=$TARGET_DIR/debug

say() { printf '\ndemo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# How long each demo process may take to answer after its start.
READY_TIMEOUT=${PLUMB_DEMO_READY_TIMEOUT:-120}

# running NAME: succeeds when the demo process NAME is alive (a zombie, exited but not yet
# reaped, is not).
running() {
  local pidfile=$DEMO_DIR/$1.pid pid state
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# wait_ready NAME WHAT CHECK...: poll CHECK until it succeeds; fail with the end of NAME's log
# as soon as the process exits, or after READY_TIMEOUT seconds.
wait_ready() {
  local name=$1 what=$2 log=$DEMO_DIR/$1.log why=""
  shift 2
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name"; then
      why="it exited before $what"
    elif ((SECONDS >= deadline)); then
      why="no $what after ${READY_TIMEOUT}s"
    fi
    if [[ -n $why ]]; then
      tail -n 20 "$log" | sed 's/^/    /' >&2
      die "$name failed: $why; log: $log"
    fi
    sleep 0.2
  done
}

# http_ok URL: the URL answers with a success status.
http_ok() { curl -sf --max-time 3 -o /dev/null "$1"; }

# port_free NAME VARIABLE PORT: fail early, naming the variable that moves it, when another process
# listens on PORT (a second demo, or a test's, on this machine).
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; then
    die "cannot start $1: port $3 is in use by another process; set $2 to a free port"
  fi
}

# start NAME COMMAND...: run a demo process in the background with its log in $DEMO_DIR.
# PORTS (set by the caller) holds the "VARIABLE=PORT" pairs it will listen on, space-separated.
start() {
  local name=$1 port; shift
  if running "$name"; then echo "  $name already running (pid $(<"$DEMO_DIR/$name.pid"))"; return; fi
  for port in ${PORTS:-}; do port_free "$name" "${port%%=*}" "${port#*=}"; done
  setsid "$@" >>"$DEMO_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DEMO_DIR/$name.pid"
  echo "  $name started (pid $!, log $DEMO_DIR/$name.log)"
}

say "starting the local cluster"
bash "$REPO_ROOT/e2e/cluster/up.sh"

say "building plumb"
(cd "$REPO_ROOT" && cargo build --quiet --bins -p plumb-source -p plumb-render -p plumb-sync -p plumb-git-server -p plumb)
# The render controller renders the chart with the pinned Helm (built once, then cached).
HELM_BIN=$(bash "$REPO_ROOT/crates/helm/go/build.sh") || die "building Helm failed (crates/helm/go/build.sh; Go is needed)"

say "installing the CRDs (this tree's: they replace fields another manager set, e.g. an older install)"
kubectl apply --server-side --force-conflicts --field-manager=plumb-demo -k "$REPO_ROOT/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/gitrepositories.source.plumb.dev crd/syncs.sync.plumb.dev crd/policies.policy.plumb.dev

say "serving a Git repository made from examples/ at http://127.0.0.1:$GIT_PORT/apps.git"
mkdir -p "$DEMO_DIR/git" "$DEMO_DIR/source" "$DEMO_DIR/render"
export GIT_AUTHOR_NAME="plumb demo" GIT_AUTHOR_EMAIL=demo@plumb.dev GIT_COMMITTER_NAME="plumb demo" GIT_COMMITTER_EMAIL=demo@plumb.dev
if [[ ! -d $DEMO_DIR/git/apps.git ]]; then
  git init -q --bare -b main "$DEMO_DIR/git/apps.git"
  rm -rf "$DEMO_DIR/work"
  git init -q -b main "$DEMO_DIR/work"
  cp -r "$REPO_ROOT/examples/apps/." "$DEMO_DIR/work/"
  git -C "$DEMO_DIR/work" add -A
  git -C "$DEMO_DIR/work" commit -qm "greeter: base, dev and prod overlays"
  git -C "$DEMO_DIR/work" remote add origin "$DEMO_DIR/git/apps.git"
  git -C "$DEMO_DIR/work" push -q origin main
fi
# A demo repository made before the chart was part of the demo gets it as one more commit.
if [[ ! -f $DEMO_DIR/work/charts/status-board/Chart.yaml ]]; then
  mkdir -p "$DEMO_DIR/work/charts"
  cp -r "$REPO_ROOT/examples/apps/charts/status-board" "$DEMO_DIR/work/charts/"
  git -C "$DEMO_DIR/work" add -A charts
  git -C "$DEMO_DIR/work" commit -qm "status-board: a Helm chart"
  git -C "$DEMO_DIR/work" push -q origin main
fi
# The "Try next" commits work without a git identity configured on the machine.
git -C "$DEMO_DIR/work" config user.name "plumb demo"
git -C "$DEMO_DIR/work" config user.email demo@plumb.dev
PORTS="PLUMB_DEMO_GIT_PORT=$GIT_PORT" start git-server "$BIN/plumb-git-server" --root "$DEMO_DIR/git" --addr "127.0.0.1:$GIT_PORT"
wait_ready git-server "answer on port $GIT_PORT" http_ok "http://127.0.0.1:$GIT_PORT/apps.git/info/refs?service=git-upload-pack"

# The demo's controllers watch only its namespace, so tests can run against the same cluster.
say "starting the controllers (each its own process)"
PORTS="PLUMB_DEMO_SOURCE_PORT=$SOURCE_HTTP_PORT PLUMB_DEMO_WEBHOOK_PORT=$WEBHOOK_PORT PLUMB_DEMO_SOURCE_METRICS_PORT=$SOURCE_METRICS_PORT" \
start source-controller "$BIN/plumb-source-controller" \
  --storage-path="$DEMO_DIR/source" --storage-addr="127.0.0.1:$SOURCE_HTTP_PORT" \
  --storage-adv-addr="127.0.0.1:$SOURCE_HTTP_PORT" --webhook-addr="127.0.0.1:$WEBHOOK_PORT" \
  --metrics-addr="127.0.0.1:$SOURCE_METRICS_PORT" --watch-namespace="$NAMESPACE"
PORTS="PLUMB_DEMO_RENDER_PORT=$RENDER_HTTP_PORT PLUMB_DEMO_RENDER_METRICS_PORT=$RENDER_METRICS_PORT" \
start render-controller "$BIN/plumb-render-controller" \
  --storage-path="$DEMO_DIR/render" --storage-addr="127.0.0.1:$RENDER_HTTP_PORT" \
  --storage-adv-addr="127.0.0.1:$RENDER_HTTP_PORT" --metrics-addr="127.0.0.1:$RENDER_METRICS_PORT" \
  --watch-label-selector=plumb.dev/demo=true --helm-binary="$HELM_BIN"
PORTS="PLUMB_DEMO_SYNC_METRICS_PORT=$SYNC_METRICS_PORT" \
start sync-controller "$BIN/plumb-sync-controller" --watch-namespace="$NAMESPACE" \
  --metrics-addr="127.0.0.1:$SYNC_METRICS_PORT"
# Each answers /readyz once it has started and serves; one that failed to start says why at once.
wait_ready source-controller "/readyz on port $SOURCE_METRICS_PORT" http_ok "http://127.0.0.1:$SOURCE_METRICS_PORT/readyz"
wait_ready render-controller "/readyz on port $RENDER_METRICS_PORT" http_ok "http://127.0.0.1:$RENDER_METRICS_PORT/readyz"
wait_ready sync-controller "/readyz on port $SYNC_METRICS_PORT" http_ok "http://127.0.0.1:$SYNC_METRICS_PORT/readyz"

say "creating the GitRepository, the Policy and the Syncs in namespace $NAMESPACE"
kubectl apply --server-side --field-manager=plumb-demo -f - <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    plumb.dev/demo: "true"
---
apiVersion: source.plumb.dev/v1
kind: GitRepository
metadata:
  name: apps
  namespace: $NAMESPACE
spec:
  url: http://127.0.0.1:$GIT_PORT/apps.git
  ref:
    branch: main
  interval: 30s
---
apiVersion: sync.plumb.dev/v1
kind: Sync
metadata:
  name: greeter-dev
  namespace: $NAMESPACE
  labels:
    plumb.dev/demo: "true"
spec:
  sourceRef:
    kind: GitRepository
    name: apps
  path: ./overlays/dev
  interval: 5m
  wait: true
  timeout: 2m
---
apiVersion: sync.plumb.dev/v1
kind: Sync
metadata:
  name: greeter-prod
  namespace: $NAMESPACE
  labels:
    plumb.dev/demo: "true"
spec:
  sourceRef:
    kind: GitRepository
    name: apps
  path: ./overlays/prod
  interval: 5m
  wait: true
  timeout: 2m
  dependsOn:
    - name: greeter-dev
---
# A Helm chart from the same repository, rendered by the real Helm; its objects go to this
# namespace (.Release.Namespace).
apiVersion: sync.plumb.dev/v1
kind: Sync
metadata:
  name: status-board
  namespace: $NAMESPACE
  labels:
    plumb.dev/demo: "true"
spec:
  sourceRef:
    kind: GitRepository
    name: apps
  path: ./charts/status-board
  interval: 5m
  wait: true
  timeout: 2m
  helm:
    values:
      title: plumb demo
YAML
kubectl apply --server-side --field-manager=plumb-demo -f "$REPO_ROOT/examples/clusters/local/policy.yaml"

say "waiting for the Syncs to be Ready"
if ! kubectl wait --for=condition=Ready --timeout=240s -n "$NAMESPACE" sync/greeter-dev sync/greeter-prod sync/status-board; then
  kubectl get gitrepositories,syncs -n "$NAMESPACE" -o wide || true
  die "the Syncs did not become Ready; controller logs are in $DEMO_DIR/*.log"
fi
kubectl wait --for=condition=Available --timeout=120s -n greeter-dev deployment/greeter
kubectl wait --for=condition=Available --timeout=120s -n greeter-prod deployment/greeter
kubectl wait --for=condition=Available --timeout=120s -n "$NAMESPACE" deployment/status-board

say "done"
kubectl get gitrepositories -n "$NAMESPACE"
echo
kubectl get policy demo-guardrails
echo
kubectl get syncs -n "$NAMESPACE"
echo
kubectl get deployments -A -l "sync.plumb.dev/namespace=$NAMESPACE"
cat <<NEXT

Try next (export KUBECONFIG=$KUBECONFIG; e2e/scenarios/tests/demo_try_next.rs runs these steps):
  - Commit a change:   cd $DEMO_DIR/work
                       sed -i 's/GREETING=hello\$/GREETING=hi/' overlays/prod/kustomization.yaml
                       git commit -qam 'say hi' && git push -q origin main
                       kubectl annotate -n $NAMESPACE gitrepository/apps --overwrite plumb.dev/requested-at=\$(date +%s)
                       (or wait for the 30s interval) and watch: kubectl get syncs -n $NAMESPACE -w
  - Watch it live:     $BIN/plumb ui -n $NAMESPACE   (then open the URL it prints; Ctrl-C stops it)
  - Heal drift:        kubectl scale -n greeter-prod deployment/greeter --replicas=7
                       kubectl get -n greeter-prod deployment/greeter   (back to 3 replicas at once)
  - Roll back:         git revert --no-edit HEAD && git push -q origin main   (then annotate as above)
  - Be blocked:        sed -i 's/newTag: 1.1.0/newTag: latest/' overlays/dev/kustomization.yaml
                       git commit -qam 'greeter: latest' && git push -q origin main   (then annotate)
                       kubectl get syncs -n $NAMESPACE: greeter-dev is not Ready, and its Status names
                       the rule pinned-images of the Policy demo-guardrails; prod keeps running 1.0.0.
                       Undo it with git revert as above.
  - Chart values:      cd $DEMO_DIR/work
                       sed -i 's/^replicaCount: 1\$/replicaCount: 2/' charts/status-board/values.yaml
                       git commit -qam 'two boards' && git push -q origin main   (then annotate as above)
                       kubectl get -n $NAMESPACE deployment/status-board   (2 replicas, rendered by Helm)
  - Delete a Sync:     kubectl delete sync -n $NAMESPACE greeter-prod
                       what it applied goes with it (prune is on; spec.deletionPolicy decides):
                       kubectl get -n greeter-prod deployment/greeter   (NotFound); make demo brings it back
  - Stop:              make demo-down
NEXT
