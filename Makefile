# plumb — entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
# The local cluster's state; PLUMB_CLUSTER_DIR moves it (e2e/cluster/README.md).
CLUSTER_DIR := $(or $(PLUMB_CLUSTER_DIR),$(CURDIR)/.cluster)
KUBECONFIG_PATH := $(CLUSTER_DIR)/kubeconfig

.PHONY: help build test unit-test lint fmt crds cluster-up cluster-down e2e bench bench-kustomize bench-source bench-render bench-drift bench-loop demo demo-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## build every crate and binary
	$(CARGO) build --workspace --all-targets

test: cluster-up ## run every test: unit, differential, and those against the real cluster
	KUBECONFIG=$(KUBECONFIG_PATH) PLUMB_TEST_KUBECONFIG=$(KUBECONFIG_PATH) $(CARGO) test --workspace --no-fail-fast

unit-test: ## run only the tests that need no cluster
	$(CARGO) test --workspace --no-fail-fast

lint: ## rustfmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

crds: ## regenerate crds/ from the Rust types
	$(CARGO) run -q -p plumb-api --bin crdgen -- --out-dir crds

cluster-up: ## start the local control plane (etcd, apiserver, controller-manager, scheduler, kwok)
	bash e2e/cluster/up.sh

cluster-down: ## stop the local control plane and remove its data
	bash e2e/cluster/down.sh

e2e: cluster-up ## the end-to-end scenarios: three controller processes, a git server, the cluster
	KUBECONFIG=$(KUBECONFIG_PATH) PLUMB_TEST_KUBECONFIG=$(KUBECONFIG_PATH) $(CARGO) test -p plumb-e2e-scenarios --no-fail-fast

bench: bench-kustomize bench-source bench-render bench-drift bench-loop ## print every benchmark figure

bench-kustomize: ## kubectl kustomize vs plumb build: a 1000-object overlay and the fixture set
	$(CARGO) build --release -p plumb
	$(CARGO) run --release -p plumb-kustomize --example bench

bench-source: ## first clone vs no-change poll vs one-commit fetch of a repository of a few thousand files
	$(CARGO) run --release -p plumb-source --example bench_fetch

bench-render: cluster-up ## Syncs rendered per second by the render controller (RENDER_SYNCS, RENDER_WORKERS)
	KUBECONFIG=$(KUBECONFIG_PATH) PLUMB_TEST_KUBECONFIG=$(KUBECONFIG_PATH) $(CARGO) test --release -p plumb-render --test render_bench -- --ignored --nocapture

bench-drift: cluster-up ## drift edit → correction latency (p50/p99 over 100 edits), API requests of a no-op reconcile
	KUBECONFIG=$(KUBECONFIG_PATH) PLUMB_TEST_KUBECONFIG=$(KUBECONFIG_PATH) $(CARGO) run --release -p plumb-sync --example bench_drift

bench-loop: cluster-up ## commit → applied with the webhook; 1000 Syncs to Ready with each controller's peak memory
	KUBECONFIG=$(KUBECONFIG_PATH) PLUMB_TEST_KUBECONFIG=$(KUBECONFIG_PATH) $(CARGO) run --release -p plumb-e2e-scenarios --example bench_loop

demo: ## the main job: a local cluster, the controllers, a sample repository, Syncs Ready
	bash e2e/demo/up.sh

demo-down: ## stop the demo's processes and the local cluster
	bash e2e/demo/down.sh

clean: ## remove build output
	$(CARGO) clean
