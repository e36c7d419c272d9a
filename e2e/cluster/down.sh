#!/usr/bin/env bash
# Stop the plumb test cluster started by up.sh (by its pid files) and remove its
# data. The build cache is kept. See README.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STOP_TIMEOUT=${PLUMB_STOP_TIMEOUT:-20}

# stop NAME: SIGTERM, then SIGKILL if the component has not exited in time.
stop() {
	local name=$1 pid deadline
	if ! pid=$(pid_of "$name"); then
		rm -f "$PID_DIR/$name.pid"
		return
	fi
	say "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while [[ -e /proc/$pid ]] && ((SECONDS < deadline)); do
		sleep 0.1
	done
	if [[ -e /proc/$pid ]]; then
		warn "$name did not exit in ${STOP_TIMEOUT}s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$PID_DIR/$name.pid"
}

main() {
	if [[ ! -d $CLUSTER_DIR ]]; then
		say "nothing to do: $CLUSTER_DIR does not exist"
		return
	fi
	take_lock
	local i
	for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
		stop "${COMPONENTS[i]}"
	done
	say "removing the cluster's data in $CLUSTER_DIR"
	# Everything up.sh wrote, but not the lock file another run may be waiting on.
	rm -rf "$PKI_DIR" "$LOG_DIR" "$PID_DIR" "$KUBECONFIG_DIR" "$ADMIN_KUBECONFIG" "$CLUSTER_DIR/env" \
		"$CLUSTER_DIR/etcd" "$CLUSTER_DIR/kwok" "$CLUSTER_DIR/kube-apiserver" \
		"$CLUSTER_DIR/kube-controller-manager" "$CLUSTER_DIR/kube-scheduler"
	say "down"
}

main "$@"
