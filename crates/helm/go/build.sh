#!/usr/bin/env bash
# Build the Helm binary plumb renders charts with, from the upstream Go module pinned in go.mod,
# unless the cache already has it, and print its path. The render controller's tests, `plumb
# build`'s tests, e2e/deps.sh (so `make test`, `make demo` and .ci/run) and the Dockerfile call it.
#
# Cache: ${PLUMB_CACHE_DIR:-~/.cache/plumb}/helm-<helm version>-<source hash>/bin/helm, where the
# hash covers go.mod, go.sum, this script, e2e/lib/go.sh and e2e/lib/cache.sh, so a changed pin
# builds anew and an unchanged one never does.
#
# The version ldflags matter: a Helm built without them reports itself as "v3.x" and, worse,
# believes the cluster is Kubernetes v1.20.0 (`.Capabilities.KubeVersion` in `helm template`).
# plumb always passes --kube-version anyway; the stamp makes the binary behave like a released one.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../../e2e/lib/go.sh
source "$SRC/../../../e2e/lib/go.sh"
# shellcheck source=../../../e2e/lib/cache.sh
source "$SRC/../../../e2e/lib/cache.sh"

say() { printf 'helm: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# module_version MODULE prints the version go.mod pins for MODULE.
module_version() {
	go_mod_version "$SRC/go.mod" "$1"
}

source_hash() {
	(cd "$SRC" && sha256sum go.mod go.sum build.sh ../../../e2e/lib/go.sh ../../../e2e/lib/cache.sh | sha256sum | cut -c1-12)
}

# compile OUT_DIR: build helm into OUT_DIR with the release's version stamps.
compile() {
	local out=$1 go version k8s major minor
	go=$(find_go "to build Helm")
	version=$(module_version helm.sh/helm/v3)
	[[ -n $version ]] || die "go.mod pins no helm.sh/helm/v3"
	# Helm's own Makefile derives the default Kubernetes version from client-go: v0.N.P -> 1.N.
	k8s=$(module_version k8s.io/client-go)
	[[ $k8s =~ ^v0\.([0-9]+)\. ]] || die "cannot read the k8s.io/client-go version from go.sum/go.mod (got '$k8s')"
	major=1
	minor=${BASH_REMATCH[1]}
	local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
	ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
	go_build_env -trimpath
	say "building Helm $version with $("$go" env GOVERSION) (a cold build takes a few minutes; log: $out.log)"
	(cd "$SRC" && "$go" build -ldflags "$ldflags" -o "$out/helm" helm.sh/helm/v3/cmd/helm) >>"$out.log" 2>&1 ||
		{ tail -n 40 "$out.log" >&2; die "go build of helm failed; log: $out.log"; }
}

# build OUT_DIR: compile, and check that the binary runs.
build() {
	compile "$1"
	"$1/helm" version --short >>"$1.log" 2>&1 || die "the built helm does not run; log: $1.log"
}

cached_build "$CACHE_DIR/helm-$(module_version helm.sh/helm/v3)-$(source_hash)" bin build helm
