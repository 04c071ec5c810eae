# Every entry point of the project. `make test` is what CI runs (.ci/run);
# `make run` starts Roster locally. Both install what they need.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Caches live outside the repository so a fresh clone on a warm machine is fast.
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/roster
export ROSTER_CACHE_DIR := $(CACHE_DIR)
VENV := $(CACHE_DIR)/venv
PYTHON ?= python3
APT_PACKAGES := libclang-dev libxmlsec1-dev libxml2-dev pkg-config xmlsec1 openssl nginx chromium chromium-driver prometheus lua5.4 postgresql
CARGO ?= cargo
# The local control plane and `roster dev` are behind this feature: every
# target here builds with it, the container image (Dockerfile) without.
FEATURES := --features dev
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY := $(CACHE_DIR)/tools/cargo-deny-$(CARGO_DENY_VERSION)/bin/cargo-deny

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: deps
deps: apt-packages venv ## Install Debian packages (as root) and the Python peers.

.PHONY: apt-packages
apt-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

.PHONY: venv
venv: $(VENV)/.installed
$(VENV)/.installed: tests/peers/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/peers/requirements.txt
	cp tests/peers/requirements.txt $@

.PHONY: controlplane
controlplane: ## Build kube-apiserver, etcd and kubectl from Go modules (cached per version); prints their directory.
	@tools/controlplane/build.sh

.PHONY: crds
crds: ## Regenerate crds/ from the Rust types.
	$(CARGO) run --quiet $(FEATURES) -- crds > crds/roster.dev.yaml

.PHONY: lint
lint: $(CARGO_DENY) ## rustfmt, clippy with warnings as errors, and cargo-deny (licenses, bans, sources).
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets $(FEATURES) -- -D warnings
	$(CARGO) clippy --locked --bin roster -- -D warnings
	$(CARGO_DENY) --log-level error check licenses bans sources

# Built once per machine and version, outside the repository.
$(CARGO_DENY):
	$(CARGO) install --locked --quiet cargo-deny --version $(CARGO_DENY_VERSION) --root $(CACHE_DIR)/tools/cargo-deny-$(CARGO_DENY_VERSION)

.PHONY: deny
deny: $(CARGO_DENY) ## cargo-deny with the RustSec advisories too (fetches the advisory database from github.com).
	$(CARGO_DENY) check

.PHONY: chart
chart: ## Build helm from Go modules (cached per version), lint and render the Helm chart.
	helm=$$(tools/helm/build.sh) && HELM=$$helm tools/chart-check.sh

.PHONY: alerts
alerts: ## Check the chart's alerting rules and run their tests (promtool, from Debian's prometheus).
	promtool check rules charts/roster/files/alerts.yaml
	cd tests/alerts && promtool test rules alerts.test.yaml

.PHONY: test
test: deps ## Everything CI runs: lint, unit tests, integration tests against a real API server.
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory chart
	$(MAKE) --no-print-directory alerts
	$(CARGO) test --locked --all-targets $(FEATURES) --no-run
	@# The build leaves gigabytes of dirty pages; written back while the tests run, they can
	@# stall the test etcd's writes long enough for "etcdserver: request timed out".
	sync
	assets=$$(tools/controlplane/build.sh) && helm=$$(tools/helm/build.sh) && \
	  postgres=$$(tools/postgres/fetch.sh) && \
	  KUBEBUILDER_ASSETS=$$assets HELM=$$helm ROSTER_POSTGRES_RECENT=$$postgres PATH=$(VENV)/bin:$$PATH \
	  $(CARGO) test --locked --all-targets $(FEATURES)

.PHONY: bench
bench: deps ## Benchmarks against the local control plane; writes BENCHMARKS.md and bench-results.json.
	assets=$$(tools/controlplane/build.sh) && \
	  KUBEBUILDER_ASSETS=$$assets $(CARGO) bench --locked $(FEATURES) --bench roster

.PHONY: run
run: deps ## Run Roster: against the current cluster, or a local control plane it starts.
	assets=$$(tools/controlplane/build.sh) && \
	  KUBEBUILDER_ASSETS=$$assets $(CARGO) run --locked $(FEATURES) -- dev $(ARGS)
