#!/usr/bin/env bash
# What plumb's tests and demo need on the machine, checked (and installed) in one place; called by
# `make test`, `make unit-test`, `make demo` and .ci/run.
#
#   bash e2e/deps.sh              everything: Debian packages, Rust, kubectl, and Go (the local
#                                 cluster is built from Go modules)
#   bash e2e/deps.sh --no-cluster the same without Go (for `make unit-test`)
#
# Missing Debian packages are installed when running as root (one `apt-get update` first, never
# interactive); otherwise the script prints the exact command to run and exits 1. Toolchains are
# only checked: a missing one is named with where to get it, and the script exits 1.
set -euo pipefail

# sshd, ssh-keygen and ssh: the source controller's SSH tests run a real sshd. git: the test
# repositories and the demo. libssl-dev, pkg-config, cmake: building libgit2/libssh2 with OpenSSL.
# curl: the cluster scripts' health checks. util-linux: flock and setsid (cluster scripts).
# time: GNU time measures peak memory of `plumb build` on hostile trees (crates/plumb/tests).
# gnupg: the SOPS tests make PGP keys with the real gpg, which `sops --pgp` calls (crates/sops).
PACKAGES=(git openssl openssh-server openssh-client libssl-dev pkg-config cmake make ca-certificates curl util-linux time gnupg)

need_go=1
for arg in "$@"; do
	case $arg in
	--no-cluster) need_go=0 ;;
	*)
		echo "usage: $0 [--no-cluster]" >&2
		exit 2
		;;
	esac
done

# chromium: the `plumb ui` tests drive the page in a real headless browser (cluster tests only).
((need_go)) && PACKAGES+=(chromium)

say() { printf 'deps: %s\n' "$*"; }
fail() {
	printf 'deps: error: %s\n' "$*" >&2
	exit 1
}

# Where the toolchains usually live when the shell's PATH lacks them.
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin:$HOME/.cargo/bin"

packages() {
	command -v dpkg-query >/dev/null || {
		say "not a Debian system: make sure these (or your distribution's equivalents) are installed: ${PACKAGES[*]}"
		return
	}
	local p missing=()
	for p in "${PACKAGES[@]}"; do
		[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	local install=(apt-get install -y -qq --no-install-recommends "${missing[@]}")
	if ((EUID != 0)); then
		fail "missing Debian packages: ${missing[*]}. Install them with:
    sudo apt-get update && sudo ${install[*]}"
	fi
	say "installing missing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || fail "apt-get update failed"
	"${install[@]}" >/dev/null || fail "apt-get install of ${missing[*]} failed"
}

toolchains() {
	local problems=()
	command -v cargo >/dev/null || problems+=("cargo (Rust) is missing: install it with rustup, https://rustup.rs")
	if ! command -v kubectl >/dev/null; then
		problems+=("kubectl is missing (it renders the kustomize reference output and drives the demo): https://kubernetes.io/docs/tasks/tools/")
	elif ! kubectl kustomize --help >/dev/null 2>&1; then
		problems+=("$(command -v kubectl) has no 'kustomize' subcommand: install kubectl 1.14 or newer")
	fi
	if ((need_go)) && [[ -z ${GO:-} ]] && ! command -v go >/dev/null; then
		problems+=("go is missing (the local cluster is built from the Kubernetes Go modules): https://go.dev/dl, or set GO=/path/to/go")
	fi
	((${#problems[@]} == 0)) || fail "$(printf '%s\n' "${problems[@]}")"
}

# Helm renders charts (the render controller, `plumb build CHART`, their tests): built from its
# pinned Go module and cached under ~/.cache/plumb (crates/helm/go/build.sh), when Go is there.
helm() {
	if [[ -z ${GO:-} ]] && ! command -v go >/dev/null; then
		say "Go is missing: the Helm chart tests will fail until it is installed"
		return
	fi
	local bin
	bin=$(bash "$(dirname "${BASH_SOURCE[0]}")/../crates/helm/go/build.sh") || fail "building Helm failed (crates/helm/go/build.sh)"
	say "helm: $bin"
}

packages
toolchains
helm
say "ok"
