# Shared settings and helpers of the plumb test cluster scripts (sourced, not run).
# shellcheck shell=bash

CLUSTER_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLUSTER_SRC/../.." && pwd)

# Where the running cluster keeps its state: pki, etcd data, logs, pids, kubeconfigs.
CLUSTER_DIR=${PLUMB_CLUSTER_DIR:-$REPO_ROOT/.cluster}
[[ $CLUSTER_DIR == /* ]] || CLUSTER_DIR=$REPO_ROOT/$CLUSTER_DIR # relative to the repo, as for the Rust tests
# Where built binaries are cached, by Kubernetes version and source hash.
CACHE_DIR=${PLUMB_CACHE_DIR:-${HOME:?HOME is not set}/.cache/plumb}

APISERVER_PORT=${PLUMB_APISERVER_PORT:-16443}
ETCD_CLIENT_PORT=${PLUMB_ETCD_CLIENT_PORT:-16379}
ETCD_PEER_PORT=${PLUMB_ETCD_PEER_PORT:-16380}
CONTROLLER_MANAGER_PORT=${PLUMB_CONTROLLER_MANAGER_PORT:-16257}
SCHEDULER_PORT=${PLUMB_SCHEDULER_PORT:-16259}
KWOK_PORT=${PLUMB_KWOK_PORT:-16247}
NODE_COUNT=${PLUMB_NODE_COUNT:-3}
# Client-side rate limits of kube-controller-manager and kube-scheduler (--kube-api-qps and
# --kube-api-burst). Their own defaults (20/30 and 50/100) cap how fast the cluster reports on
# what is applied to it: the deployment controller writes about four times per new Deployment
# (its ReplicaSet and three status updates), so at 20 requests/s a thousand new Deployments
# are observed no sooner than 200 s later, whoever applied them. This cluster runs tests and
# benchmarks on fake nodes, so by default it lifts them as `kwokctl --disable-qps-limits` does;
# PLUMB_CLUSTER_QPS=20 PLUMB_CLUSTER_BURST=30 gives a controller-manager with stock limits.
CLUSTER_QPS=${PLUMB_CLUSTER_QPS:-5000}
CLUSTER_BURST=${PLUMB_CLUSTER_BURST:-10000}

PKI_DIR=$CLUSTER_DIR/pki
LOG_DIR=$CLUSTER_DIR/logs
PID_DIR=$CLUSTER_DIR/pids
KUBECONFIG_DIR=$CLUSTER_DIR/kubeconfigs
ADMIN_KUBECONFIG=$CLUSTER_DIR/kubeconfig
LOCK_FILE=$CLUSTER_DIR/.lock

# Start order; down.sh stops in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

say() { printf 'cluster: %s\n' "$*"; }
warn() { printf 'cluster: %s\n' "$*" >&2; }
die() {
	warn "error: $*"
	exit 1
}

# k8s_version prints the pinned Kubernetes release, read from go.mod.
k8s_version() {
	awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$CLUSTER_SRC/go.mod"
}

# Take the cluster lock (fd 9) so that concurrent up.sh/down.sh runs, e.g. from
# parallel test binaries, take turns. Held until the script exits.
take_lock() {
	mkdir -p "$CLUSTER_DIR"
	exec 9>"$LOCK_FILE"
	if ! flock -n 9; then
		say "another up.sh/down.sh holds $LOCK_FILE; waiting for it"
		flock -w "${PLUMB_LOCK_TIMEOUT:-3600}" 9 || die "timed out waiting for $LOCK_FILE"
	fi
}

# pid_of NAME prints the pid of a running component started from this
# CLUSTER_DIR, or fails. The command line check guards against a reused pid.
pid_of() {
	local pidfile=$PID_DIR/$1.pid pid
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CLUSTER_DIR/" || return 1
	echo "$pid"
}

# apiserver_ready succeeds when kube-apiserver answers /readyz with ok.
apiserver_ready() {
	curl -sf --max-time 3 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
		"https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1
}
