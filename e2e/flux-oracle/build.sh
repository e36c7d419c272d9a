#!/usr/bin/env bash
# Build flux-oracle (Flux's post-build substitution: fluxcd/pkg/envsubst and sigs.k8s.io/yaml,
# see main.go) unless the cache already has it, and print the path of the binary. The
# differential substitution test (crates/render/tests/substitute_differential.rs) runs this.
#
# Cache: ${PLUMB_CACHE_DIR:-~/.cache/plumb}/flux-oracle-<envsubst version>-<source hash>/bin,
# where the hash covers go.mod, go.sum, main.go, this script and e2e/lib/go.sh.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/go.sh
source "$SRC/../lib/go.sh"
CACHE_DIR=${PLUMB_CACHE_DIR:-${HOME:?HOME is not set}/.cache/plumb}

die() {
	printf 'flux-oracle: error: %s\n' "$*" >&2
	exit 1
}


version=$(go_mod_version "$SRC/go.mod" github.com/fluxcd/pkg/envsubst)
hash=$(cd "$SRC" && sha256sum go.mod go.sum main.go build.sh ../lib/go.sh | sha256sum | cut -c1-12)
dir=$CACHE_DIR/flux-oracle-$version-$hash
bin=$dir/bin/flux-oracle
if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$dir"
exec 8>"$dir/.lock"
flock 8
if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi
partial=$dir/bin.partial.$$
rm -rf "$partial"
go=$(find_go "to build Flux's substitution for the differential test")
go_build_env -mod=readonly
(cd "$SRC" && "$go" build -o "$partial/flux-oracle" .) >"$dir/build.log" 2>&1 ||
	{ tail -n 20 "$dir/build.log" >&2; die "go build failed; log: $dir/build.log"; }
# Publish at once, so an interrupted build is never mistaken for a cache hit.
mv "$partial" "$dir/bin"
echo "$bin"
