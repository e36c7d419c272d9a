#!/usr/bin/env bash
# Build flux-oracle (Flux's post-build substitution: fluxcd/pkg/envsubst and sigs.k8s.io/yaml,
# see main.go) unless the cache already has it, and print the path of the binary. The
# differential substitution test (crates/render/tests/substitute_differential.rs) runs this.
#
# Cache: ${PLUMB_CACHE_DIR:-~/.cache/plumb}/flux-oracle-<envsubst version>-<source hash>/bin,
# where the hash covers go.mod, go.sum, main.go, this script, e2e/lib/go.sh and e2e/lib/cache.sh.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/go.sh
source "$SRC/../lib/go.sh"
# shellcheck source=../lib/cache.sh
source "$SRC/../lib/cache.sh"

say() { printf 'flux-oracle: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# build OUT_DIR: the binary into OUT_DIR.
build() {
	local out=$1 go
	go=$(find_go "to build Flux's substitution for the differential test")
	go_build_env -mod=readonly
	(cd "$SRC" && "$go" build -o "$out/flux-oracle" .) >>"$out.log" 2>&1 ||
		{ tail -n 20 "$out.log" >&2; die "go build failed; log: $out.log"; }
}

version=$(go_mod_version "$SRC/go.mod" github.com/fluxcd/pkg/envsubst)
hash=$(cd "$SRC" && sha256sum go.mod go.sum main.go build.sh ../lib/go.sh ../lib/cache.sh | sha256sum | cut -c1-12)
cached_build "$CACHE_DIR/flux-oracle-$version-$hash" bin build flux-oracle
