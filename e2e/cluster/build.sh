#!/usr/bin/env bash
# Build the test cluster's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok and our pki tool) unless the cache already has them, and
# print the directory that holds them. up.sh calls this; it can also be run alone
# to warm the cache.
#
# Cache: ${PLUMB_CACHE_DIR:-~/.cache/plumb}/cluster-<k8s version>-<source hash>/bin,
# where the hash covers everything that goes into the build (go.mod, go.sum, our
# Go sources, this script, e2e/lib/go.sh), so a changed pin builds anew and an
# unchanged one never does.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../lib/go.sh
source "$CLUSTER_SRC/../lib/go.sh"

BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok pki)

# source_hash prints a short hash of every input of the build.
source_hash() {
	(
		cd "$CLUSTER_SRC"
		{
			printf '%s\n' go.mod go.sum kwok/go.mod kwok/go.sum build.sh ../lib/go.sh
			find cmd -name '*.go'
		} | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12
	)
}


# compile OUT_DIR: build all binaries into OUT_DIR.
compile() {
	local out=$1 version go
	version=$(k8s_version)
	go=$(find_go "to build the test cluster")
	# Stamp the release, or the components report v0.0.0-master.
	local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitVersion=$version"
	go_build_env
	say "building the control plane of Kubernetes $version with $("$go" env GOVERSION) (a cold build takes a while; log: $out.log)"
	(cd "$CLUSTER_SRC" && "$go" build -ldflags "$ldflags" -o "$out/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		./cmd/etcd ./cmd/pki) >>"$out.log" 2>&1 || { tail -n 40 "$out.log" >&2; die "go build of the control plane failed; log: $out.log"; }
	say "building kwok"
	(cd "$CLUSTER_SRC/kwok" && "$go" build -ldflags "-s -w" -o "$out/" sigs.k8s.io/kwok/cmd/kwok) >>"$out.log" 2>&1 ||
		{ tail -n 40 "$out.log" >&2; die "go build of kwok failed; log: $out.log"; }
}

# ensure_binaries prints the bin directory, building it first if it is missing.
ensure_binaries() {
	local dir bin
	dir=$CACHE_DIR/cluster-$(k8s_version)-$(source_hash)
	bin=$dir/bin
	if [[ -d $bin ]]; then
		echo "$bin"
		return
	fi
	mkdir -p "$dir"
	# Two clusters (different PLUMB_CLUSTER_DIR) may share the cache: one builds, the other waits.
	exec 8>"$dir/.lock"
	flock 8
	if [[ -d $bin ]]; then
		echo "$bin"
		return
	fi
	local partial=$dir/bin.partial.$$
	rm -rf "$partial" "$partial.log"
	local start=$SECONDS
	compile "$partial" >&2
	for b in "${BINARIES[@]}"; do
		[[ -x $partial/$b ]] || die "build finished but $partial/$b is missing"
	done
	# Publish the whole set at once, so an interrupted build is never mistaken for a cache hit.
	mv "$partial.log" "$dir/build.log"
	mv "$partial" "$bin"
	say "built in $((SECONDS - start))s: $bin" >&2
	echo "$bin"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	ensure_binaries
fi
