# vault-plugin-secrets-jwt
#
#   make build      the plugin binary, bin/vault-plugin-secrets-jwt
#   make vault      a Vault server binary, built from tools/vault and cached
#   make dev        a dev Vault on 127.0.0.1:8200 with the plugin at jwt/
#   make dev-stop   stop it
#   make test       lint, unit tests, fuzzing, end-to-end tests (what CI runs)
#   make lint       gofmt, go vet, staticcheck
#   make test-unit  unit tests with -race (every package but e2e)
#   make fuzz       every Fuzz* target for $(FUZZTIME)
#   make test-e2e   end-to-end tests: real Vault, vault CLI, Node verifier
#   make bench      issue-path vs raw-signature ratios (scripts/bench.sh)
#   make scale      issue/verify latency vs roles, keys and revocations (scripts/scale.sh)
#   make load       load harness over HTTP: jwt vs transit, floor plugin, raw signing (scripts/load.sh; LOAD_ARGS=...)
#
# Only Go, Node/npm and Debian packages are needed; see .ci/run.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build
.DELETE_ON_ERROR:

GO ?= go
VERSION ?= v0.1.0-dev

MODULE := github.com/vault-jwt/vault-plugin-secrets-jwt
PLUGIN_NAME := vault-plugin-secrets-jwt
PLUGIN_BIN := $(CURDIR)/bin/$(PLUGIN_NAME)
LDFLAGS := -X $(MODULE)/plugin.Version=$(VERSION)
# The same plugin under another version, for the upgrade test (e2e
# TestPluginUpgrade): Vault catalogs a binary only under the version it reports.
NEXT_VERSION ?= $(VERSION)-next
PLUGIN_NEXT_BIN := $(CURDIR)/bin/$(PLUGIN_NAME)-next
VERIFY_DIR := $(CURDIR)/scripts/verify

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 10s
E2E_TIMEOUT ?= 30m

# Every package but the end-to-end tests, which need Vault and Node.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v '^$(MODULE)/e2e$$')

.PHONY: all build vault dev dev-stop lint test-unit fuzz verify-deps test-e2e test bench clean help

all: build

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

## build: the plugin binary, stamped with $(VERSION); it answers -version.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)
	@got="$$($(PLUGIN_BIN) -version)"; \
	if [[ "$$got" != "$(VERSION)" ]]; then \
		echo "$(PLUGIN_BIN) -version printed '$$got', want '$(VERSION)'" >&2; exit 1; \
	fi
	@echo "built $(PLUGIN_BIN) $(VERSION)"

## vault: print the path of the cached Vault binary, building it if missing.
vault:
	@scripts/vault.sh

## dev: build everything and run a dev server with the plugin mounted at jwt/.
dev: build verify-deps
	PLUGIN_BIN="$(PLUGIN_BIN)" VERSION="$(VERSION)" scripts/dev.sh start

dev-stop:
	@scripts/dev.sh stop

## lint: gofmt, go vet and staticcheck (pinned).
lint:
	@echo "gofmt -l ."; \
	unformatted="$$(gofmt -l .)"; \
	if [[ -n "$$unformatted" ]]; then \
		echo "gofmt wants to change:" >&2; echo "$$unformatted" >&2; exit 1; \
	fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## test-unit: every package but e2e, with the race detector.
test-unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

## fuzz: each Fuzz* target for $(FUZZTIME) (scripts/fuzz.sh: one target at a time).
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(UNIT_PKGS)

## verify-deps: the outside verifiers' node_modules, exactly as locked, and PyJWT (apt's python3-jwt, if missing).
verify-deps:
	cd $(VERIFY_DIR) && npm ci --no-audit --no-fund
	scripts/verify/pydeps.sh

## test-e2e: a real Vault, the real CLI, the plugin and the outside verifiers (Node's jose and jsonwebtoken, PyJWT).
test-e2e: build verify-deps
	$(GO) build -o $(CURDIR)/bin/kmstest ./cmd/kmstest
	$(GO) build -ldflags "-X $(MODULE)/plugin.Version=$(NEXT_VERSION)" -o $(PLUGIN_NEXT_BIN) ./cmd/$(PLUGIN_NAME)
	@vault_bin="$$(scripts/vault.sh)"; \
	echo "VAULT_BIN=$$vault_bin PLUGIN_BIN=$(PLUGIN_BIN) PLUGIN_VERSION=$(VERSION) PLUGIN_NEXT_BIN=$(PLUGIN_NEXT_BIN) VERIFY_DIR=$(VERIFY_DIR)"; \
	VAULT_BIN="$$vault_bin" PLUGIN_BIN="$(PLUGIN_BIN)" PLUGIN_VERSION="$(VERSION)" PLUGIN_NEXT_BIN="$(PLUGIN_NEXT_BIN)" VERIFY_DIR="$(VERIFY_DIR)" KMSTEST_BIN="$(CURDIR)/bin/kmstest" \
		$(GO) test -count=1 -v -timeout $(E2E_TIMEOUT) ./e2e/

## test: everything CI runs, in order.
test: lint test-unit fuzz test-e2e

## bench: issue vs raw signature, as ratios (see docs/performance.md).
bench:
	scripts/bench.sh

## scale: the scale figures of docs/performance.md.
.PHONY: scale
scale:
	scripts/scale.sh

## load: the load harness against a throwaway dev Vault (see docs/performance.md).
.PHONY: load
load:
	scripts/load.sh $(LOAD_ARGS)

clean:
	rm -rf bin .dev
