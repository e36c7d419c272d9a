#!/usr/bin/env bash
# Fetch the CustomResourceDefinitions of Flux's source-controller and kustomize-controller (the
# versions pinned in source-controller/go.mod and kustomize-controller/go.mod here) from their
# Go modules, unless the cache already has them, and print the directory holding them (every
# config/crd/bases/*.yaml of both modules). Only the modules' zips are downloaded, nothing is
# built: the `plumb import --from-cluster` test (e2e/scenarios/tests/flux_import.rs) installs
# Flux's GitRepository and Kustomization kinds from here. build.sh copies the same files next
# to the controllers it builds for the benchmark.
#
# Cache: ${PLUMB_CACHE_DIR:-~/.cache/plumb}/flux-crds-sc-<version>-kc-<version>-<source hash>,
# where the hash covers both go.mod and go.sum files, this script, e2e/lib/go.sh and
# e2e/lib/cache.sh.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/go.sh
source "$SRC/../lib/go.sh"
# shellcheck source=../lib/cache.sh
source "$SRC/../lib/cache.sh"

say() { printf 'flux-crds: %s\n' "$*" >&2; }
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
		kustomize-controller/go.mod kustomize-controller/go.sum crds.sh ../lib/go.sh ../lib/cache.sh |
		sha256sum | cut -c1-12)
}

# fetch OUT_DIR: the CRDs of both modules into OUT_DIR.
fetch() {
	local out=$1 go c version module_dir
	go=$(find_go "to download Flux's CRDs")
	# The module's checksum is checked against the go.sum pinned here.
	go_build_env -mod=readonly
	mkdir -p "$out"
	for c in "${CONTROLLERS[@]}"; do
		version=$(version_of "$c")
		[[ -n $version ]] || die "$c/go.mod pins no github.com/fluxcd/$c"
		say "downloading Flux's $c $version (its module zip, for config/crd/bases)"
		module_dir=$(cd "$SRC/$c" && "$go" mod download -json "github.com/fluxcd/$c" 2>>"$out.log" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') ||
			{ tail -n 20 "$out.log" >&2; die "go mod download of github.com/fluxcd/$c failed; log: $out.log"; }
		[[ -d $module_dir/config/crd/bases ]] ||
			{ tail -n 20 "$out.log" >&2; die "$c $version: no config/crd/bases in '${module_dir}'"; }
		cp "$module_dir"/config/crd/bases/*.yaml "$out/"
		chmod u+w "$out"/*.yaml
	done
	[[ -f $out/source.toolkit.fluxcd.io_gitrepositories.yaml &&
		-f $out/kustomize.toolkit.fluxcd.io_kustomizations.yaml ]] ||
		die "the modules hold no GitRepository or Kustomization CRD"
}

cached_build "$CACHE_DIR/flux-crds-sc-$(version_of source-controller)-kc-$(version_of kustomize-controller)-$(source_hash)" crds fetch
