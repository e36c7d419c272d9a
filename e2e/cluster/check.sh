#!/usr/bin/env bash
# `make cluster-check`: is the local test cluster steady? Prints what it checked and exits 1 when
# not. Steady means: kwok runs, every fake Node is Ready with a Lease renewed within its duration,
# and since kwok started the kube-controller-manager log has no line saying Nodes went NotReady
# (disruption mode) and no NodeNotReady Event was recorded. Older lines (a kwok that ran before,
# e.g. without node leases) are counted and shown, but do not make today's cluster unsteady.
# Health figures (benchmarks, the demo) taken on a cluster that is not steady measure the
# cluster, not plumb. See README.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBECTL=${KUBECTL:-kubectl}
CM_LOG=$LOG_DIR/kube-controller-manager.log
# What the node lifecycle controller logs (at its default verbosity) when Nodes stop reporting.
UNSTEADY_LINES='all Nodes are not-Ready|Entering master disruption mode'

kubectl_admin() { "$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" --request-timeout=10s "$@"; }

# count_lines: how many non-empty lines stdin has (0 without failing).
count_lines() { grep -c . || true; }

problems=0
bad() {
	say "NOT STEADY: $*"
	problems=$((problems + 1))
}

[[ -f $ADMIN_KUBECONFIG ]] || die "no cluster at $CLUSTER_DIR (no kubeconfig); start it with make cluster-up"
apiserver_ready || die "the API server at https://127.0.0.1:$APISERVER_PORT does not answer /readyz"

# The era that counts: since the running kwok started.
kwok_pid=$(pid_of kwok) || die "kwok is not running (its Nodes will turn NotReady); start it with make cluster-up"
since=$(($(date +%s) - $(ps -o etimes= -p "$kwok_pid")))
say "kwok: running since $(date -u -d "@$since" '+%F %T') UTC"

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

# The controller-manager's own account of node health. klog stamps lines "I1129 06:38:33.8...":
# month, day and time without the year, which compare as text within a year.
if [[ -f $CM_LOG ]]; then
	stamp=$(date -u -d "@$since" '+%m%d %H:%M:%S')
	lines=$(grep -E "$UNSTEADY_LINES" "$CM_LOG" || true)
	recent=$(awk -v since="$stamp" '{ if (substr($1, 2) " " substr($2, 1, 8) >= since) print }' <<<"$lines")
	older=$(($(count_lines <<<"$lines") - $(count_lines <<<"$recent")))
	((older == 0)) || say "kube-controller-manager.log: $older NotReady/disruption lines from before kwok started (not counted)"
	if [[ -n $recent ]]; then
		bad "$CM_LOG has $(count_lines <<<"$recent") lines about NotReady Nodes since kwok started; the last:"
		tail -n 3 <<<"$recent" | sed 's/^/    /'
	else
		say "kube-controller-manager.log: no NotReady/disruption lines since kwok started"
	fi
else
	bad "no controller-manager log at $CM_LOG"
fi

# NodeNotReady Events: on a Node when it turned NotReady, on each Pod marked not ready because of
# it. Events live an hour; count those since kwok started.
events=0
while read -r last event_time; do
	when=$last
	[[ -n $when && $when != null ]] || when=$event_time
	[[ -n $when && $when != null ]] || continue
	# An Event whose time cannot be read counts: better a false alarm than a missed flap.
	at=$(date -d "$when" +%s 2>/dev/null || echo "$since")
	if ((at >= since)); then events=$((events + 1)); fi
done < <(kubectl_admin get events -A --field-selector reason=NodeNotReady \
	-o jsonpath='{range .items[*]}{.lastTimestamp}{" "}{.eventTime}{"\n"}{end}' 2>/dev/null)
if ((events > 0)); then
	bad "$events NodeNotReady Events since kwok started (kubectl get events -A --field-selector reason=NodeNotReady)"
else
	say "events: no NodeNotReady since kwok started"
fi

if ((problems > 0)); then
	say "the cluster is NOT steady ($problems problems above)"
	exit 1
fi
say "steady"
