#!/usr/bin/env bash
# `make cluster-check`: is the local test cluster steady? Prints what it checked and exits 1 when
# not. Steady means: every fake Node is Ready with a Lease renewed within its duration, the
# kube-controller-manager log has no line saying Nodes went NotReady (disruption mode), and no
# NodeNotReady Event exists (Events live an hour). Health figures (benchmarks, the demo) taken on
# a cluster that is not steady measure the cluster, not plumb. See README.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBECTL=${KUBECTL:-kubectl}
CM_LOG=$LOG_DIR/kube-controller-manager.log
# What the node lifecycle controller logs (at its default verbosity) when Nodes stop reporting.
UNSTEADY_LINES='all Nodes are not-Ready|Entering master disruption mode'

kubectl_admin() { "$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" --request-timeout=10s "$@"; }

problems=0
bad() {
	say "NOT STEADY: $*"
	problems=$((problems + 1))
}

[[ -f $ADMIN_KUBECONFIG ]] || die "no cluster at $CLUSTER_DIR (no kubeconfig); start it with make cluster-up"
apiserver_ready || die "the API server at https://127.0.0.1:$APISERVER_PORT does not answer /readyz"

# Every node Ready, and its Lease renewed within the Lease's own duration.
nodes=$(kubectl_admin get nodes -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
total=0 ready=0
while read -r name status; do
	[[ -n $name ]] || continue
	total=$((total + 1))
	if [[ $status == True ]]; then ready=$((ready + 1)); else bad "node $name is Ready=$status"; fi
done <<<"$nodes"
((total > 0)) || bad "the cluster has no nodes"
say "nodes: $ready/$total Ready"

now=$(date +%s)
leases=$(kubectl_admin get leases -n kube-node-lease -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.renewTime}{" "}{.spec.leaseDurationSeconds}{"\n"}{end}')
while read -r name _; do
	[[ -n $name ]] || continue
	line=$(grep "^$name " <<<"$leases" || true)
	if [[ -z $line ]]; then
		bad "node $name has no Lease in kube-node-lease (is kwok running with --node-lease-duration-seconds?)"
		continue
	fi
	read -r _ renew duration <<<"$line"
	age=$((now - $(date -d "$renew" +%s)))
	if ((age > duration)); then
		bad "node $name's Lease was last renewed ${age}s ago (duration ${duration}s)"
	fi
done <<<"$nodes"
say "node leases: checked (renewed within their duration unless reported above)"

# The controller-manager's own account of node health since the cluster started.
if [[ -f $CM_LOG ]]; then
	count=$(grep -cE "$UNSTEADY_LINES" "$CM_LOG" || true)
	if ((count > 0)); then
		bad "$CM_LOG has $count lines about NotReady Nodes; the last:"
		grep -E "$UNSTEADY_LINES" "$CM_LOG" | tail -n 3 | sed 's/^/    /'
	else
		say "kube-controller-manager.log: no NotReady/disruption lines"
	fi
else
	bad "no controller-manager log at $CM_LOG"
fi

# NodeNotReady Events: on a Node when it turned NotReady, on each Pod marked not ready because of it.
events=$(kubectl_admin get events -A --field-selector reason=NodeNotReady --no-headers 2>/dev/null | wc -l)
if ((events > 0)); then
	bad "$events NodeNotReady Events in the last hour (kubectl get events -A --field-selector reason=NodeNotReady)"
else
	say "events: no NodeNotReady"
fi

if ((problems > 0)); then
	say "the cluster is NOT steady ($problems problems above)"
	exit 1
fi
say "steady"
