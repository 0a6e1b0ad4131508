# Streamer — developer and CI entry points. `make help` lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO            ?= go
GOBIN         := $(shell $(GO) env GOPATH)/bin
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT ?= $(GOBIN)/golangci-lint
FUZZTIME      ?= 30s
FUZZ          ?= FuzzDecodeFrame

.PHONY: help test tools browser dynamodb-local lint golangci-lint vet fmt-check bench bench-load fuzz clean package deploy

STAGE  ?= dev
REGION ?= us-east-1

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: browser ## Full test run: npm ci (if stale), DynamoDB Local, go vet, go test -race
	@bash scripts/test.sh

tools: ## npm ci in tools/ (skipped when node_modules matches the lockfile)
	@bash scripts/tools.sh

browser: ## Install Debian's chromium if /usr/bin/chromium is missing
	@bash scripts/browser.sh

dynamodb-local: tools ## Run DynamoDB Local in the foreground and print the env line to export
	@bash scripts/dynamodb-local.sh foreground

lint: fmt-check vet golangci-lint ## gofmt check, go vet, golangci-lint

fmt-check: ## Fail if any Go file needs gofmt
	@files="$$(find . -name '*.go' -not -path './tools/*' -not -path './.cache/*' -not -path '*/testdata/*' -print0 | xargs -0 -r gofmt -l)"; \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

vet: ## go vet ./...
	$(GO) vet ./...

golangci-lint: ## golangci-lint run (installs it with go install if missing)
	@if ! [ -x "$(GOLANGCI_LINT)" ]; then \
		echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) ..."; \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	fi
	$(GOLANGCI_LINT) config verify
	$(GOLANGCI_LINT) run ./...

package: ## Build the Lambdas into dist/<function>.zip (provided.al2023, arm64)
	@bash scripts/package.sh

deploy: tools package ## Deploy with osls: make deploy STAGE=prod REGION=eu-west-1 (needs AWS credentials)
	tools/node_modules/.bin/osls deploy --stage $(STAGE) --region $(REGION)

bench: ## Benchmarks (no tests)
	$(GO) test -run '^$$' -bench . -benchmem ./...

BENCH_LOAD_FLAGS ?=

bench-load: ## Issue 13's load table: dev stack against the bare floor, interleaved, 3 reps (18 min on a loaded machine; not part of test)
	$(GO) build -o .cache/streamer ./cmd/streamer
	@echo "nproc $$(nproc), ulimit -n $$(ulimit -n), load average $$(cut -d' ' -f1-3 /proc/loadavg), $$(date -u +%FT%TZ)"
	.cache/streamer load bench $(BENCH_LOAD_FLAGS)
	@echo "load average after: $$(cut -d' ' -f1-3 /proc/loadavg)"

fuzz: ## Fuzz FuzzDecodeFrame in the root package for 30s (FUZZ=, FUZZTIME= override)
	$(GO) test -run '^$$' -fuzz '^$(FUZZ)$$' -fuzztime $(FUZZTIME) .

clean: ## Remove tools/node_modules and .cache/
	rm -rf tools/node_modules .cache
