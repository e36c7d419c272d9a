#!/usr/bin/env bash
# Start the plumb test cluster on loopback: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok, each its own background
# process, plus fake Nodes that kwok keeps Ready. Writes the admin kubeconfig to
# .cluster/kubeconfig. Idempotent: components already running are left alone,
# and a healthy cluster is reported as such. See README.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=build.sh
source "$CLUSTER_SRC/build.sh"

KUBECTL=${KUBECTL:-kubectl}
START_TIMEOUT=${PLUMB_START_TIMEOUT:-120}

preflight() {
	local tool missing=()
	for tool in curl flock setsid "$KUBECTL"; do
		command -v "$tool" >/dev/null || missing+=("$tool")
	done
	((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (curl and util-linux's flock/setsid, kubectl)"
	local ports=("$APISERVER_PORT" "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$CONTROLLER_MANAGER_PORT" "$SCHEDULER_PORT" "$KWOK_PORT")
	local unique
	unique=$(printf '%s\n' "${ports[@]}" | sort -u | wc -l)
	((unique == ${#ports[@]})) || die "ports must differ: ${ports[*]}"
}

all_running() {
	local c
	for c in "${COMPONENTS[@]}"; do
		pid_of "$c" >/dev/null || return 1
	done
}

# fail NAME MESSAGE: report a failed component with the end of its log, and exit.
fail() {
	local log=$LOG_DIR/$1.log
	warn "error: $1 failed: $2"
	warn "log: $log (last lines below)"
	if [[ -s $log ]]; then
		tail -n 25 "$log" | sed 's/^/    /' >&2
	else
		warn "(the log is empty)"
	fi
	df -h "$CLUSTER_DIR" | sed 's/^/    /' >&2
	exit 1
}

# alive NAME: the process started for NAME has not exited. Unlike pid_of it does
# not look at the command line: just after `start` the child may not have exec'd
# the binary yet, and its command line is still this script's.
alive() {
	local pid state
	pid=$(<"$PID_DIR/$1.pid") || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]]
}

# wait_for NAME WHAT CHECK...: poll CHECK until it succeeds; fail NAME when the
# process exits or START_TIMEOUT passes.
wait_for() {
	local name=$1 what=$2
	shift 2
	local deadline=$((SECONDS + START_TIMEOUT))
	until "$@"; do
		alive "$name" || fail "$name" "the process exited while waiting for $what"
		((SECONDS < deadline)) || fail "$name" "no $what after ${START_TIMEOUT}s"
		sleep 0.2
	done
}

# ports_free NAME PORT...: fail NAME early when another process listens on one of its ports.
ports_free() {
	local name=$1 port
	shift
	for port in "$@"; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			die "cannot start $name: port $port is already in use by another process (set PLUMB_*_PORT, see e2e/cluster/README.md)"
		fi
	done
}

# start NAME BINARY ARGS...: run a component in its own session, detached from
# this shell, with its output in logs/NAME.log and its pid in pids/NAME.pid.
# PORTS (set by the caller) are the ports it will listen on.
start() {
	local name=$1 binary=$2 pid
	shift 2
	if pid=$(pid_of "$name"); then
		say "$name already running (pid $pid)"
		return
	fi
	ports_free "$name" "${PORTS[@]}"
	say "starting $name (log: $LOG_DIR/$name.log)"
	# setsid and nohup exec the binary, so $! is the component's own pid. The
	# lock descriptors are closed: a component must not hold the lock for life.
	setsid nohup "$binary" "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null 8>&- 9>&- &
	echo $! >"$PID_DIR/$name.pid"
}

start_etcd() {
	local PORTS=("$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT")
	start etcd "$BIN/etcd" \
		--name=plumb \
		--data-dir="$CLUSTER_DIR/etcd" \
		--listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster="plumb=http://127.0.0.1:$ETCD_PEER_PORT" \
		--unsafe-no-fsync=true \
		--log-level=warn
	# A throwaway cluster: speed over durability, as envtest does.
	wait_for etcd "healthy /health" curl -sf --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" -o /dev/null
}

start_apiserver() {
	local PORTS=("$APISERVER_PORT")
	start kube-apiserver "$BIN/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--bind-address=127.0.0.1 \
		--secure-port="$APISERVER_PORT" \
		--cert-dir="$CLUSTER_DIR/kube-apiserver" \
		--tls-cert-file="$PKI_DIR/apiserver.crt" \
		--tls-private-key-file="$PKI_DIR/apiserver.key" \
		--client-ca-file="$PKI_DIR/ca.crt" \
		--authorization-mode=RBAC \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI_DIR/sa.pub" \
		--service-account-signing-key-file="$PKI_DIR/sa.key" \
		--service-cluster-ip-range=10.0.0.0/16 \
		--allow-privileged=true \
		--requestheader-client-ca-file="$PKI_DIR/front-proxy-ca.crt" \
		--requestheader-allowed-names=front-proxy-client \
		--requestheader-username-headers=X-Remote-User \
		--requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--proxy-client-cert-file="$PKI_DIR/front-proxy-client.crt" \
		--proxy-client-key-file="$PKI_DIR/front-proxy-client.key" \
		--profiling=false
	wait_for kube-apiserver "ready /readyz on https://127.0.0.1:$APISERVER_PORT" apiserver_ready
}

# component_healthy PORT: the /healthz of a controller-manager or scheduler
# (self-signed serving cert; /healthz is open to anonymous requests).
component_healthy() {
	curl -skf --max-time 2 "https://127.0.0.1:$1/healthz" -o /dev/null
}

start_controller_manager() {
	local kubeconfig=$KUBECONFIG_DIR/kube-controller-manager.kubeconfig
	local PORTS=("$CONTROLLER_MANAGER_PORT")
	# Controllers that need a cloud provider are off; the rest run, with one
	# ServiceAccount each as in a real cluster.
	start kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig="$kubeconfig" \
		--authentication-kubeconfig="$kubeconfig" \
		--authorization-kubeconfig="$kubeconfig" \
		--bind-address=127.0.0.1 \
		--secure-port="$CONTROLLER_MANAGER_PORT" \
		--cert-dir="$CLUSTER_DIR/kube-controller-manager" \
		--leader-elect=false \
		--use-service-account-credentials=true \
		--root-ca-file="$PKI_DIR/ca.crt" \
		--service-account-private-key-file="$PKI_DIR/sa.key" \
		--cluster-signing-cert-file="$PKI_DIR/ca.crt" \
		--cluster-signing-key-file="$PKI_DIR/ca.key" \
		--cluster-name=plumb \
		--service-cluster-ip-range=10.0.0.0/16 \
		--controllers='*,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller' \
		--kube-api-qps="$CLUSTER_QPS" \
		--kube-api-burst="$CLUSTER_BURST" \
		--profiling=false
	wait_for kube-controller-manager "healthy /healthz on port $CONTROLLER_MANAGER_PORT" component_healthy "$CONTROLLER_MANAGER_PORT"
}

start_scheduler() {
	local PORTS=("$SCHEDULER_PORT")
	local kubeconfig=$KUBECONFIG_DIR/kube-scheduler.kubeconfig
	start kube-scheduler "$BIN/kube-scheduler" \
		--kubeconfig="$kubeconfig" \
		--authentication-kubeconfig="$kubeconfig" \
		--authorization-kubeconfig="$kubeconfig" \
		--bind-address=127.0.0.1 \
		--secure-port="$SCHEDULER_PORT" \
		--cert-dir="$CLUSTER_DIR/kube-scheduler" \
		--leader-elect=false \
		--kube-api-qps="$CLUSTER_QPS" \
		--kube-api-burst="$CLUSTER_BURST" \
		--profiling=false
	wait_for kube-scheduler "healthy /healthz on port $SCHEDULER_PORT" component_healthy "$SCHEDULER_PORT"
}

start_kwok() {
	local PORTS=("$KWOK_PORT")
	# kwok reads ~/.kwok/kwok.yaml when it exists; a HOME of its own keeps a
	# user's kwok configuration out of the test cluster.
	mkdir -p "$CLUSTER_DIR/kwok"
	# Node leases: without them the node lifecycle controller judges every fake Node unhealthy
	# after its grace period and sets every Pod NotReady. Our pod stages (kwok-stages.yaml) also
	# make such a Pod Ready again should a Node ever be judged unhealthy.
	HOME=$CLUSTER_DIR/kwok start kwok "$BIN/kwok" \
		--kubeconfig="$KUBECONFIG_DIR/kwok.kubeconfig" \
		--config="$CLUSTER_SRC/kwok-stages.yaml" \
		--node-lease-duration-seconds=40 \
		--manage-all-nodes=true \
		--server-address="127.0.0.1:$KWOK_PORT" \
		--cidr=10.244.0.0/16 \
		--node-ip=10.255.0.1
	wait_for kwok "healthy /healthz on port $KWOK_PORT" curl -sf --max-time 2 "http://127.0.0.1:$KWOK_PORT/healthz" -o /dev/null
}

kubectl_admin() {
	"$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" "$@"
}

node_manifest() {
	local name=$1
	cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $name
  labels:
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    plumb.dev/fake-node: "true"
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
status:
  allocatable: {cpu: "16", memory: 64Gi, pods: "110"}
  capacity: {cpu: "16", memory: 64Gi, pods: "110"}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
    kubeProxyVersion: fake
---
EOF
}

# create_nodes adds the fake Nodes that do not exist yet (status, with its
# allocatable resources, is only taken from the object on create).
create_nodes() {
	local i name manifests=""
	for ((i = 0; i < NODE_COUNT; i++)); do
		name=plumb-node-$i
		kubectl_admin get node "$name" >/dev/null 2>&1 && continue
		manifests+=$(node_manifest "$name")$'\n'
	done
	if [[ -n $manifests ]]; then
		say "creating $NODE_COUNT fake nodes managed by kwok"
		kubectl_admin create -f - <<<"$manifests" >/dev/null || fail kube-apiserver "creating the fake Nodes was refused"
	fi
}

nodes_ready() {
	local ready
	ready=$(kubectl_admin get nodes -l plumb.dev/fake-node=true \
		-o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c '^True$')
	((ready >= NODE_COUNT))
}

default_service_account_exists() {
	kubectl_admin -n default get serviceaccount default >/dev/null 2>&1
}

write_env() {
	cat >"$CLUSTER_DIR/env" <<EOF
# Written by e2e/cluster/up.sh: how the running test cluster was started.
KUBERNETES_VERSION=$(k8s_version)
BIN_DIR=$BIN
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
ETCD_URL=http://127.0.0.1:$ETCD_CLIENT_PORT
KUBECONFIG=$ADMIN_KUBECONFIG
EOF
}

main() {
	preflight
	take_lock
	if all_running && apiserver_ready && [[ -f $ADMIN_KUBECONFIG ]] && nodes_ready; then
		say "already up and healthy: Kubernetes $(k8s_version) at https://127.0.0.1:$APISERVER_PORT"
		say "kubeconfig: $ADMIN_KUBECONFIG"
		return
	fi
	local start_time=$SECONDS
	mkdir -p "$LOG_DIR" "$PID_DIR"
	BIN=$(ensure_binaries)
	say "binaries: $BIN"
	"$BIN/pki" -dir "$PKI_DIR" -server "https://127.0.0.1:$APISERVER_PORT" -kubeconfig-dir "$KUBECONFIG_DIR" ||
		die "generating certificates in $PKI_DIR failed"
	cp "$KUBECONFIG_DIR/admin.kubeconfig" "$ADMIN_KUBECONFIG.tmp"
	mv "$ADMIN_KUBECONFIG.tmp" "$ADMIN_KUBECONFIG"

	start_etcd
	start_apiserver
	start_controller_manager
	start_scheduler
	start_kwok
	create_nodes
	wait_for kwok "$NODE_COUNT Ready nodes" nodes_ready
	wait_for kube-controller-manager "ServiceAccount default/default" default_service_account_exists
	write_env
	say "up in $((SECONDS - start_time))s: Kubernetes $(k8s_version) at https://127.0.0.1:$APISERVER_PORT, $NODE_COUNT kwok nodes"
	say "kubeconfig: $ADMIN_KUBECONFIG    (export KUBECONFIG=$ADMIN_KUBECONFIG)"
}

main "$@"
