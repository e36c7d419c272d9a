#!/usr/bin/env bash
# Build the real `sops` and `age` / `age-keygen` tools from their Go modules (pinned in go.mod next
# to this script) unless the cache already has them, and print the directory that holds them.
# plumb's SOPS tests call this through plumb-e2e-support (`SopsTools::get()`), which builds on
# first use (so a fresh machine and CI need nothing else); it can be run alone to warm the cache.
#
# Cache: ${PLUMB_CACHE_DIR:-~/.cache/plumb}/sops-<sops version>-age-<age version>-<source hash>/bin,
# where the hash covers go.mod, go.sum, this script, e2e/lib/go.sh and e2e/lib/cache.sh, so a
# changed pin builds anew and an unchanged one never does.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/go.sh
source "$SRC/../lib/go.sh"
# shellcheck source=../lib/cache.sh
source "$SRC/../lib/cache.sh"
BINARIES=(sops age age-keygen)

say() { printf 'sops-tools: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# module_version MODULE prints the version go.mod pins for MODULE.
module_version() {
	go_mod_version "$SRC/go.mod" "$1"
}

source_hash() {
	(cd "$SRC" && sha256sum go.mod go.sum build.sh ../lib/go.sh ../lib/cache.sh | sha256sum | cut -c1-12)
}

# compile OUT_DIR: build the three tools into OUT_DIR in one go build (shared compile).
compile() {
	local out=$1 go
	go=$(find_go "to build sops and age for the SOPS tests")
	go_build_env
	say "building sops $(module_version github.com/getsops/sops/v3) and age $(module_version filippo.io/age) with $("$go" env GOVERSION) (log: $out.log)"
	(cd "$SRC" && "$go" build -ldflags "-s -w" -o "$out/" \
		github.com/getsops/sops/v3/cmd/sops \
		filippo.io/age/cmd/age \
		filippo.io/age/cmd/age-keygen) >>"$out.log" 2>&1 ||
		{
			tail -n 40 "$out.log" >&2
			die "go build of sops/age failed; log: $out.log"
		}
}

# build OUT_DIR: compile, and check that every tool is there.
build() {
	compile "$1"
	require_built "$1" "${BINARIES[@]}"
}

cached_build "$CACHE_DIR/sops-$(module_version github.com/getsops/sops/v3)-age-$(module_version filippo.io/age)-$(source_hash)" bin build
