# The build cache of the scripts that build tools from pinned Go modules: crates/helm/go/build.sh,
# e2e/sops/build.sh, e2e/flux/build.sh and e2e/flux-oracle/build.sh. Sourced, not run; the caller
# defines `say` and `die`. Each caller's cache key hashes this file too (by a relative path), as
# it decides what counts as a cache hit. e2e/cluster/build.sh keeps its own copy of these steps,
# so that a change here never rebuilds the control plane.
# shellcheck shell=bash

# Where built tools are kept, each in a directory named for its versions and source hash.
CACHE_DIR=${PLUMB_CACHE_DIR:-${HOME:?HOME is not set}/.cache/plumb}

# cached_build DIR NAME BUILD [FILE]: print DIR/NAME (or DIR/NAME/FILE), a directory that BUILD
# made, running `BUILD PARTIAL` first when the cache does not have it yet. BUILD fills the
# directory PARTIAL, appends its log to PARTIAL.log (kept as DIR/build.log), and dies when what it
# made is incomplete. Call it as a command of its own, not in `$(...)`, so that `set -e` holds.
cached_build() {
	local dir=$1 name=$2 build=$3 file=${4:+/$4}
	local out=$dir/$name
	if [[ -d $out ]]; then
		echo "$out$file"
		return
	fi
	mkdir -p "$dir"
	# Parallel callers (test binaries, a second checkout) may ask at once: one builds, the others
	# wait for it.
	exec 8>"$dir/.lock"
	flock 8
	if [[ -d $out ]]; then
		echo "$out$file"
		return
	fi
	local partial=$out.partial.$$ start=$SECONDS
	rm -rf "$partial" "$partial.log"
	"$build" "$partial" >&2
	# Publish at once, so an interrupted build is never mistaken for a cache hit.
	mv "$partial.log" "$dir/build.log"
	mv "$partial" "$out"
	say "built in $((SECONDS - start))s: $out"
	echo "$out$file"
}

# require_built DIR FILE...: die unless a build left every FILE in DIR, executable.
require_built() {
	local dir=$1 f
	shift
	for f in "$@"; do
		[[ -x $dir/$f ]] || die "build finished but $dir/$f is missing"
	done
}
