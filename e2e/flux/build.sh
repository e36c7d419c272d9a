#!/usr/bin/env bash
# Build Flux's source-controller and kustomize-controller from their Go modules (the versions
# pinned in source-controller/go.mod and kustomize-controller/go.mod here), unless the cache
# already has them, and print the directory holding bin/ (both binaries) and crds/ (the CRDs of
# both modules' config/crd/bases). `make bench-vs-flux` (e2e/scenarios/examples/bench_vs_flux.rs)
# runs this.
#
# Each controller is built from a wrapper module that requires the released module, names its
# main package as a `tool`, and repeats the release's own replace directives (those of a
# dependency are not applied), so the build uses exactly the release's dependency versions; only
# its `api` module comes from the proxy at the release's version instead of from ./api.
#
# Cache: ${PLUMB_CACHE_DIR:-~/.cache/plumb}/flux-sc-<version>-kc-<version>-<source hash>, where
# the hash covers both go.mod and go.sum files, this script, e2e/lib/go.sh and e2e/lib/cache.sh.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/go.sh
source "$SRC/../lib/go.sh"
# shellcheck source=../lib/cache.sh
source "$SRC/../lib/cache.sh"

say() { printf 'flux: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

CONTROLLERS=(source-controller kustomize-controller)

version_of() {
	go_mod_version "$SRC/$1/go.mod" "github.com/fluxcd/$1"
}

source_hash() {
	(cd "$SRC" && sha256sum source-controller/go.mod source-controller/go.sum \
		kustomize-controller/go.mod kustomize-controller/go.sum build.sh ../lib/go.sh ../lib/cache.sh |
		sha256sum | cut -c1-12)
}

# compile OUT_DIR: both binaries into OUT_DIR/bin, their CRDs into OUT_DIR/crds.
compile() {
	local out=$1 go c version module_dir
	go=$(find_go "to build Flux's controllers for the benchmark")
	go_build_env -mod=readonly -trimpath
	mkdir -p "$out/bin" "$out/crds"
	for c in "${CONTROLLERS[@]}"; do
		version=$(version_of "$c")
		[[ -n $version ]] || die "$c/go.mod pins no github.com/fluxcd/$c"
		say "building Flux's $c $version with $("$go" env GOVERSION) (a cold build takes several minutes; log: $out.log)"
		(cd "$SRC/$c" && "$go" build -ldflags "-s -w" -o "$out/bin/$c" "github.com/fluxcd/$c") >>"$out.log" 2>&1 ||
			{ tail -n 40 "$out.log" >&2; die "go build of $c failed; log: $out.log"; }
		module_dir=$(cd "$SRC/$c" && "$go" list -m -f '{{.Dir}}' "github.com/fluxcd/$c")
		[[ -d $module_dir/config/crd/bases ]] || die "$c $version has no config/crd/bases in $module_dir"
		cp "$module_dir"/config/crd/bases/*.yaml "$out/crds/"
	done
}

# build OUT_DIR: compile, and check that both controllers are there.
build() {
	compile "$1"
	require_built "$1/bin" "${CONTROLLERS[@]}"
}

cached_build "$CACHE_DIR/flux-sc-$(version_of source-controller)-kc-$(version_of kustomize-controller)-$(source_hash)" out build
