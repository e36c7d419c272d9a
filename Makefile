# plumb — entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
KUBECONFIG_PATH := $(CURDIR)/.cluster/kubeconfig

.PHONY: help build test unit-test lint fmt crds cluster-up cluster-down e2e bench demo demo-down clean

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

bench: ## print benchmark figures
	@echo "no benchmarks yet"

demo: ## the main job: a local cluster, the controllers, a sample repository, Syncs Ready
	bash e2e/demo/up.sh

demo-down: ## stop the demo's processes and the local cluster
	bash e2e/demo/down.sh

clean: ## remove build output
	$(CARGO) clean
