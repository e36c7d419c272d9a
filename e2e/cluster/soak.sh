#!/usr/bin/env bash
# Does the cluster stay steady? `bash e2e/cluster/soak.sh [MINUTES]` (default 10) creates a
# Deployment of 3 replicas in a namespace of its own, waits until it is Available, then every 10 s
# for MINUTES checks that it is still Available with every replica ready and every Node Ready;
# prints each deviation as it sees it, ends with `check.sh`, deletes its namespace, and exits 1
# when anything was not steady. See README.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBECTL=${KUBECTL:-kubectl}
MINUTES=${1:-10}
NAMESPACE=plumb-soak-$(date +%s)-$$

kubectl_admin() { "$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" --request-timeout=10s "$@"; }

cleanup() { kubectl_admin delete namespace "$NAMESPACE" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

kubectl_admin create namespace "$NAMESPACE" >/dev/null
kubectl_admin create deployment soak -n "$NAMESPACE" --image=registry.example.com/soak:1.0.0 --replicas=3 >/dev/null
kubectl_admin wait -n "$NAMESPACE" --for=condition=Available --timeout=120s deployment/soak >/dev/null ||
	die "deployment $NAMESPACE/soak did not become Available"
say "soak: deployment $NAMESPACE/soak Available; watching it and the Nodes for $MINUTES minutes"

deviations=0 checks=0
end=$((SECONDS + MINUTES * 60))
while ((SECONDS < end)); do
	sleep 10
	checks=$((checks + 1))
	available=$(kubectl_admin get deployment soak -n "$NAMESPACE" -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>&1) || true
	ready=$(kubectl_admin get deployment soak -n "$NAMESPACE" -o jsonpath='{.status.readyReplicas}' 2>&1) || true
	not_ready=$(kubectl_admin get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>&1 | grep -v '=True$' || true)
	if [[ $available != True || $ready != 3 || -n $not_ready ]]; then
		deviations=$((deviations + 1))
		say "soak: $(date -u +%H:%M:%S) NOT STEADY: Available=$available readyReplicas=$ready ${not_ready:+nodes not Ready: $not_ready}"
	fi
done
say "soak: $checks checks over $MINUTES minutes, $deviations not steady"
status=0
bash "$CLUSTER_SRC/check.sh" || status=1
((deviations == 0)) || status=1
exit "$status"
