# plumb — entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
# The local cluster's state; PLUMB_CLUSTER_DIR moves it (e2e/cluster/README.md).
CLUSTER_DIR := $(or $(PLUMB_CLUSTER_DIR),$(CURDIR)/.cluster)
KUBECONFIG_PATH := $(CLUSTER_DIR)/kubeconfig
# Test targets that need the cluster require this cargo feature (e2e/cluster/README.md).
CLUSTER_TESTS := --features cluster-tests
CLUSTER_ENV := KUBECONFIG=$(KUBECONFIG_PATH) PLUMB_TEST_KUBECONFIG=$(KUBECONFIG_PATH)

.PHONY: help deps build test unit-test lint fmt crds cluster-up cluster-down cluster-check e2e bench bench-kustomize bench-source bench-render bench-drift bench-loop bench-vs-flux bench-helm demo demo-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## install the Debian packages tests and the demo need; check Go, Rust and kubectl
	bash e2e/deps.sh

build: ## build every crate and binary
	$(CARGO) build --workspace --all-targets

test: deps ## run every test: unit, differential, and those against the real cluster
	bash e2e/cluster/up.sh
	$(CLUSTER_ENV) $(CARGO) test --workspace $(CLUSTER_TESTS) --no-fail-fast

unit-test: ## run only the tests that need no cluster (and never start one)
	bash e2e/deps.sh --no-cluster
	PLUMB_NO_CLUSTER=1 $(CARGO) test --workspace --no-fail-fast

lint: ## rustfmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(CLUSTER_TESTS) -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

crds: ## regenerate crds/ from the Rust types
	$(CARGO) run -q -p plumb-api --bin crdgen -- --out-dir crds

cluster-up: ## start the local control plane (etcd, apiserver, controller-manager, scheduler, kwok)
	bash e2e/cluster/up.sh

cluster-down: ## stop the local control plane and remove its data
	bash e2e/cluster/down.sh

cluster-check: ## is the cluster steady? every node Ready, no NotReady/disruption in the controller-manager log
	bash e2e/cluster/check.sh

e2e: deps cluster-up ## the end-to-end scenarios: three controller processes, a git server, the cluster
	$(CLUSTER_ENV) $(CARGO) test -p plumb-e2e-scenarios $(CLUSTER_TESTS) --no-fail-fast

bench: bench-kustomize bench-source bench-render bench-drift bench-loop bench-helm ## print every benchmark figure

bench-kustomize: ## kubectl kustomize vs plumb build: a 1000-object overlay and the fixture set
	$(CARGO) build --release -p plumb
	$(CARGO) run --release -p plumb-kustomize --example bench

bench-source: ## first clone vs no-change poll vs one-commit fetch of a repository of a few thousand files
	$(CARGO) run --release -p plumb-source --example bench_fetch

bench-helm: ## chart renders/s: helm template as a process vs plumb's render path (100 Syncs, cache misses and hits)
	$(CARGO) run --release -p plumb-render --example bench_chart

bench-render: cluster-up ## Syncs rendered per second by the render controller (RENDER_SYNCS, RENDER_WORKERS)
	bash e2e/cluster/check.sh
	$(CLUSTER_ENV) $(CARGO) test --release -p plumb-render $(CLUSTER_TESTS) --test render_bench -- --ignored --nocapture

bench-drift: cluster-up ## drift edit → correction latency (p50/p99 over 100 edits), API requests of a no-op reconcile
	bash e2e/cluster/check.sh
	$(CLUSTER_ENV) $(CARGO) run --release -p plumb-sync --example bench_drift

bench-loop: cluster-up ## commit → applied with the webhook; 1000 Syncs to Ready with each controller's peak memory
	bash e2e/cluster/check.sh
	$(CLUSTER_ENV) $(CARGO) run --release -p plumb-e2e-scenarios --example bench_loop

bench-vs-flux: cluster-up ## plumb vs Flux (built from its Go modules), same workload one after the other: time to Ready, memory, CPU, idle, drift (BENCH_SYNCS=100,1000; BENCH_SYSTEMS=flux,plumb,api, e.g. plumb alone)
	bash e2e/cluster/check.sh
	if [[ ",$${BENCH_SYSTEMS:-flux}," == *,flux,* ]]; then bash e2e/flux/build.sh >/dev/null; fi
	$(CARGO) build --release --quiet --bins -p plumb-source -p plumb-render -p plumb-sync
	$(CLUSTER_ENV) $(CARGO) run --release -p plumb-e2e-scenarios --example bench_vs_flux

demo: deps ## the main job: a local cluster, the controllers, a sample repository, Syncs Ready
	bash e2e/demo/up.sh

demo-down: ## stop the demo's processes and the local cluster
	bash e2e/demo/down.sh

clean: ## remove build output
	$(CARGO) clean
