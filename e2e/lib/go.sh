# Go helpers for the scripts that build tools from pinned Go modules and cache them under
# ${PLUMB_CACHE_DIR:-~/.cache/plumb}: e2e/cluster/build.sh, crates/helm/go/build.sh,
# e2e/sops/build.sh and e2e/flux-oracle/build.sh. Sourced, not run; the caller defines `die`.
# Each caller's cache key hashes this file too (by a relative path, so that every checkout of
# the same sources has the same key): what it sets goes into every build.
# shellcheck shell=bash

# find_go PURPOSE: print the Go to build with: $GO, else `go` on PATH, else /usr/local/go/bin/go;
# when there is none, die saying what it is needed for (PURPOSE, e.g. "to build Helm").
find_go() {
	if [[ -n ${GO:-} ]]; then
		echo "$GO"
	elif command -v go >/dev/null; then
		command -v go
	elif [[ -x /usr/local/go/bin/go ]]; then
		echo /usr/local/go/bin/go
	else
		die "Go is needed $1; install it (https://go.dev/dl) or set GO=/path/to/go"
	fi
}

# go_build_env [GOFLAG...]: the environment every build runs in: static binaries, the machine's
# own Go (never a downloaded toolchain), no VCS stamping (the sources may not be a git checkout),
# plus the given flags.
go_build_env() {
	export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false $*"
}

# go_mod_version GO_MOD MODULE: the version the go.mod file GO_MOD pins for MODULE.
go_mod_version() {
	awk -v m="$2" '$1 == m { print $2; exit }' "$1"
}
